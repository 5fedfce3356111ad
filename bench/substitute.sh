#!/usr/bin/env bash
# Fetching from binary caches: `castor store copy --from` vs `nix copy
# --from` of the same closure from the same cache served over loopback
# HTTP, in each compression; then the time from first access to first byte
# of a file in a large path through `castor mount --substituter`.
# Prints figures and ratios; asserts nothing. Needs root (mount namespace).
#
#   bench/substitute.sh                 # 300 MiB closure, none xz zstd
#   COMPRESSIONS="xz-mt" bench/substitute.sh   # xz written with parallel-compression=true
#   SIZE=64M COMPRESSIONS="zstd" bench/substitute.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-300M}
BIG=${BIG:-100M}
COMPRESSIONS=${COMPRESSIONS:-none xz zstd}
RUNS=${RUNS:-3}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/castor-bench-subst.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
export NIX_CONFIG=$'build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command'

go build -o "$work/castor" ./cmd/castor
go build -o "$work/cacheserve" ./bench/cacheserve
# The closure: a mixed tree plus one path holding a single big file.
go run ./bench/gentree -size "$SIZE" -seed 3 "$work/tree"
mkdir "$work/big" && go run ./bench/gentree -single -size "$BIG" -seed 4 "$work/big/blob"
src="$work/nixsrc"
tree=$(nix-store --store "$src" --add "$work/tree")
big=$(nix-store --store "$src" --add "$work/big")
rm -rf "$work/tree" "$work/big"
nix-store --generate-binary-cache-key bench-1 "$work/sk" "$work/pk"
pk=$(cat "$work/pk")

. bench/settle.sh
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { /usr/bin/time -f '%e' -o "$work/t" "$@" >/dev/null 2>"$work/err" || { cat "$work/err"; exit 1; }; cat "$work/t"; }

for comp in $COMPRESSIONS; do
  cache="$work/cache-$comp"
  # xz-mt: xz in blocks (parallel-compression), which can be decoded on
  # several cores.
  params="compression=${comp%-mt}"
  [ "$comp" = xz-mt ] && params="$params&parallel-compression=true"
  nix copy --store "$src" --to "file://$cache?$params&secret-key=$work/sk" "$tree" "$big" 2>/dev/null
  "$work/cacheserve" "$cache" >"$work/url" & pids+=($!)
  for _ in $(seq 50); do [ -s "$work/url" ] && break; sleep 0.1; done
  url=$(cat "$work/url")
  size=$(du -sh "$cache" | cut -f1)
  nts=(); cts=()
  for i in $(seq "$RUNS"); do
    # Fresh stores each run, removed after the runs: deleting many files
    # right before a run slows the next file creations (ext4 skips
    # recently freed inodes; this disk discards on delete).
    settle "$cache"
    nts+=("$(secs nix copy --from "$url" --option trusted-public-keys "$pk" --to "$work/nixdst$i" "$tree" "$big")")
    settle "$cache"
    cts+=("$(secs env CASTOR_HOME="$work/castordst$i" "$work/castor" store copy --from "nix+$url?trusted-public-keys=$pk" "$tree" "$big")")
  done
  rm -rf "$work"/nixdst* "$work"/castordst*
  nt=$(printf '%s\n' "${nts[@]}" | median); ct=$(printf '%s\n' "${cts[@]}" | median)
  awk -v c="$comp" -v s="$size" -v n="$nt" -v k="$ct" 'BEGIN {printf "copy --from, %-5s (cache %s, median of '"$RUNS"'): nix %.2fs, castor %.2fs, ratio nix/castor %.2fx (target >= 2x)\n", c, s, n, k, n/k}'
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
done

# First byte of a file in a $BIG path, from an empty store through the mount.
comp=${COMPRESSIONS##* }
"$work/cacheserve" "$work/cache-$comp" >"$work/url2" & pids+=($!)
for _ in $(seq 50); do [ -s "$work/url2" ] && break; sleep 0.1; done
url=$(cat "$work/url2")
rm -rf "$work/mnthome"
unshare --mount --propagation private bash -c '
  set -e
  [ -d /nix/store ] || { mkdir -p /nix && mount -t tmpfs tmpfs /nix && mkdir /nix/store; }
  CASTOR_HOME="$1/mnthome" "$1/castor" mount --substituter "nix+$2?trusted-public-keys=$3" /nix/store 2>"$1/mount.log" &
  for _ in $(seq 100); do grep -q "mounted, ready" "$1/mount.log" 2>/dev/null && break; sleep 0.05; done
  start=$(date +%s.%N)
  head -c1 "$4/blob" >/dev/null
  first=$(date +%s.%N)
  cat "$4/blob" >/dev/null
  all=$(date +%s.%N)
  head -c1 "$4/blob" >/dev/null
  again=$(date +%s.%N)
  awk -v a="$start" -v b="$first" -v c="$all" -v d="$again" -v z="$5" -v comp="$6" \
    "BEGIN {printf \"mount --substituter (%s): first byte of a %s file %.3fs after first access, whole file %.3fs, a second access %.4fs\n\", comp, z, b-a, c-a, d-c}"
  echo
  kill %1; wait
' _ "$work" "$url" "$pk" "$big" "$BIG" "$comp"
