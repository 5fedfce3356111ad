#!/usr/bin/env bash
# Benchmark castor's evaluator against Nix 2.8 (nix-instantiate) on the
# cases in bench/eval/cases. For each case both evaluators run RUNS times
# (default 5) and the fastest run counts; start-up (evaluating `1`) is
# measured the same way, reported apart and subtracted before the ratio.
#
#   bench/eval/run.sh [case...]        RUNS=9 bench/eval/run.sh fib
#
# Prints, per case: wall seconds for each (start-up included), the ratio
# castor/nix of the times without start-up (below 1 means castor is faster)
# and the peak resident memory of each.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-5}
TMP=$(mktemp -d)
BIN=$TMP/castor
TIMES=$TMP/times
trap 'rm -rf "$TMP"' EXIT
go build -o "$BIN" ./cmd/castor
command -v nix-instantiate >/dev/null || { echo "nix-instantiate not found (apt-get install nix-bin)" >&2; exit 1; }
export NIX_REMOTE=dummy://

# best CMD...: prints "<min wall seconds> <max RSS KB of that run>"
best() {
	local best_t="" best_m="" out t m i
	for ((i = 0; i < RUNS; i++)); do
		local t0 t1
		t0=$(date +%s%N)
		/usr/bin/time -o "$TIMES" -f "%M" "$@" >/dev/null 2>&1
		t1=$(date +%s%N)
		m=$(tail -1 "$TIMES")
		t=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
		if [[ -z $best_t ]] || awk "BEGIN{exit !($t < $best_t)}"; then best_t=$t; best_m=$m; fi
	done
	echo "$best_t $best_m"
}

castor() { best "$BIN" eval --strict "$1"; }
nixi() { best nix-instantiate --readonly-mode --eval --strict "$1"; }

read -r cs cm < <(castor bench/eval/cases/startup.nix)
read -r ns nm < <(nixi bench/eval/cases/startup.nix)
printf 'start-up (evaluating 1): castor %ss %dMB, nix %ss %dMB\n\n' "$cs" $((cm / 1024)) "$ns" $((nm / 1024))
printf '%-12s %10s %10s %8s %10s %10s\n' case castor_s nix_s ratio castor_MB nix_MB
cases=("$@")
[[ ${#cases[@]} -gt 0 ]] || cases=(fib list-sort attrs strings foldl)
for c in "${cases[@]}"; do
	f=bench/eval/cases/$c.nix
	read -r ct cmem < <(castor "$f")
	read -r nt nmem < <(nixi "$f")
	ratio=$(awk -v a="$ct" -v b="$nt" -v sa="$cs" -v sb="$ns" 'BEGIN{x=a-sa; y=b-sb; if (x<0.001) x=0.001; if (y<0.001) y=0.001; printf "%.2f", x/y}')
	printf '%-12s %10s %10s %8s %10d %10d\n' "$c" "$ct" "$nt" "$ratio" $((cmem / 1024)) $((nmem / 1024))
done
