#!/usr/bin/env bash
# Benchmark castor's evaluator against Nix 2.8 (nix-instantiate) on the
# cases in bench/eval/cases. For each case both evaluators run RUNS times
# (default 5) and the fastest run counts; start-up (evaluating `1`) is
# measured the same way, reported apart and subtracted before the ratio.
#
#   bench/eval/run.sh [case...]        RUNS=9 bench/eval/run.sh fib
#
# Prints, per case: CPU seconds (user+sys; steadier than wall time on a
# shared machine) and wall seconds for each, start-up included; the ratio
# castor/nix of the CPU times without start-up (below 1 means castor is
# faster); and the peak resident memory of each.
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

# best CMD...: prints "<cpu s> <wall s> <RSS KB>" of the run with the least
# CPU time.
best() {
	local best_c="" best_w="" best_m="" c w m i t0 t1 line
	for ((i = 0; i < RUNS; i++)); do
		t0=$(date +%s%N)
		/usr/bin/time -o "$TIMES" -f "%U %S %M" "$@" >/dev/null 2>&1
		t1=$(date +%s%N)
		line=$(tail -1 "$TIMES")
		c=$(awk '{printf "%.2f", $1 + $2}' <<<"$line")
		m=$(awk '{print $3}' <<<"$line")
		w=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", (b-a)/1e9}')
		if [[ -z $best_c ]] || awk "BEGIN{exit !($c < $best_c)}"; then best_c=$c; best_w=$w; best_m=$m; fi
	done
	echo "$best_c $best_w $best_m"
}

castor() { best "$BIN" eval --strict "$1"; }
nixi() { best nix-instantiate --readonly-mode --eval --strict "$1"; }

read -r cs cw cm < <(castor bench/eval/cases/startup.nix)
read -r ns nw nm < <(nixi bench/eval/cases/startup.nix)
printf 'start-up (evaluating 1): castor %ss CPU %ss wall %dMB; nix %ss CPU %ss wall %dMB\n\n' "$cs" "$cw" $((cm / 1024)) "$ns" "$nw" $((nm / 1024))
printf '%-10s %9s %9s %9s %9s %7s %9s %9s\n' case castor_cpu nix_cpu castor_wall nix_wall ratio castor_MB nix_MB
cases=("$@")
[[ ${#cases[@]} -gt 0 ]] || cases=(fib list-sort attrs strings foldl)
for c in "${cases[@]}"; do
	f=bench/eval/cases/$c.nix
	read -r ct cw cmem < <(castor "$f")
	read -r nt nw nmem < <(nixi "$f")
	ratio=$(awk -v a="$ct" -v b="$nt" -v sa="$cs" -v sb="$ns" 'BEGIN{x=a-sa; y=b-sb; if (x<0.01) x=0.01; if (y<0.01) y=0.01; printf "%.2f", x/y}')
	printf '%-10s %9s %9s %9s %9s %7s %9d %9d\n' "$c" "$ct" "$nt" "$cw" "$nw" "$ratio" $((cmem / 1024)) $((nmem / 1024))
done
