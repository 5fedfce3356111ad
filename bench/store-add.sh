#!/usr/bin/env bash
# castor store add vs nix-store --add of the same mixed tree, in one run;
# then peak RSS of castor store add of one big file, and hash throughput.
# Prints figures and ratios; asserts nothing.
#
#   bench/store-add.sh            # 1 GiB tree, 4 GiB single file
#   SIZE=256M BIG=1G bench/store-add.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1G}
BIG=${BIG:-4G}
RUNS=${RUNS:-3}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/castor-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export NIX_CONFIG=$'build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command'

go build -o "$work/castor" ./cmd/castor
go run ./bench/gentree -size "$SIZE" -seed 1 "$work/tree"
echo "tree: $(du -sh --apparent-size "$work/tree" | cut -f1), $(find "$work/tree" -type f | wc -l) files"
. bench/settle.sh

# median of a list of numbers
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# run CMD... and print "seconds maxrss_kib"
timed() { /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null; cat "$work/time"; }

nix_t=(); castor_t=(); nix_rss=(); castor_rss=()
for i in $(seq "$RUNS"); do
  # Fresh stores each run, all removed at the end: deleting tens of
  # thousands of files right before a run slows the next file creations
  # (ext4 skips recently freed inodes; this disk discards on delete).
  # Flush first: castor syncs its blobs before recording a path (syncfs
  # flushes the whole file system), Nix does not sync store contents.
  settle "$work/tree"
  read -r t m < <(timed nix-store --store "$work/nixstore$i" --add "$work/tree")
  nix_t+=("$t"); nix_rss+=("$m")
  settle "$work/tree"
  read -r t m < <(timed env CASTOR_HOME="$work/castorstore$i" "$work/castor" store add "$work/tree")
  castor_t+=("$t"); castor_rss+=("$m")
done
np=$(nix-store --store "$work/nixstore1" --add "$work/tree")
cp=$(CASTOR_HOME="$work/castorstore1" "$work/castor" store add "$work/tree")
[ "$np" = "$cp" ] || { echo "MISMATCH: nix $np, castor $cp"; exit 1; }
nt=$(printf '%s\n' "${nix_t[@]}" | median); ct=$(printf '%s\n' "${castor_t[@]}" | median)
echo "store add of $SIZE tree (median of $RUNS): nix-store --add ${nt}s (peak RSS $(printf '%s\n' "${nix_rss[@]}" | median) KiB), castor ${ct}s (peak RSS $(printf '%s\n' "${castor_rss[@]}" | median) KiB)"
awk -v n="$nt" -v c="$ct" 'BEGIN {printf "ratio nix/castor: %.2fx (target >= 2x)\n", n/c}'
echo "castor store on disk: $(du -sh "$work/castorstore1" | cut -f1) in $(find "$work/castorstore1" -type f | wc -l) files; nix store: $(du -sh "$work/nixstore1/nix/store" | cut -f1) in $(find "$work/nixstore1/nix/store" -type f | wc -l) files"
rm -rf "$work/tree" "$work"/nixstore* "$work"/castorstore*

go run ./bench/gentree -single -size "$BIG" -seed 2 "$work/big"
read -r t m < <(timed env CASTOR_HOME="$work/castorstore" "$work/castor" store add "$work/big")
echo "store add of one $BIG file: ${t}s, peak RSS $((m / 1024)) MiB (target < 100 MiB)"
rm -rf "$work/big" "$work/castorstore"

echo "hash throughput per core:"
go test -run '^$' -bench 'BLAKE3|SHA256' -cpu 1 ./store/castore/ | grep -E '^Benchmark' || true
