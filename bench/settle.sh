# Sourced by the benchmark scripts. settle PATH: write back and drop the
# page cache (as root), then read PATH back in, so that the tools compared
# read their input from memory and start with the same free memory.
# Without it, each run's gigabyte of new files filled the page cache and
# later runs paid for reclaiming it (system time swung 3x between runs).
settle() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 3 >/proc/sys/vm/drop_caches; fi
  tar cf - "$1" 2>/dev/null | cat >/dev/null
}
