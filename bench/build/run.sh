#!/usr/bin/env bash
# A chain of N trivial derivations (default 50, each reading the previous
# output) realised by castor's namespace sandbox and by Nix 2.8 with its
# sandbox on, in the same run, each from a fresh store; median of RUNS.
# Checks that both produce the same final output path and NAR hash, prints
# the times and the ratio. Needs root, /dev/fuse, nix-bin and busybox-static.
#
#   bench/build/run.sh
#   N=100 RUNS=5 bench/build/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-50}
RUNS=${RUNS:-3}
JOBS=${JOBS:-1}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/castor-bench-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
export NIX_CONFIG=$'build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command'
busybox=$(command -v busybox || echo /bin/busybox)

go build -o "$work/castor" ./cmd/castor
mkdir -p "$work/expr/busybox/bin"
cp "$busybox" "$work/expr/busybox/bin/busybox"
ln -s busybox "$work/expr/busybox/bin/sh"
cat > "$work/expr/chain.nix" <<NIX
let
  sh = "\${./busybox}/bin/sh";
  step = i: prev: derivation {
    name = "chain-\${toString i}";
    system = "x86_64-linux";
    builder = sh;
    args = [ "-c" "{ cat \${prev}; echo \${toString i}; } > \$out" ];
  };
  first = derivation { name = "chain-0"; system = "x86_64-linux"; builder = sh; args = [ "-c" "echo 0 > \$out" ]; };
  go = i: prev: if i > $N - 1 then prev else go (i + 1) (step i prev);
in go 1 first
NIX

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN {printf "%.3f\n", e-s}'; }

nix_t=(); castor_t=()
for i in $(seq "$RUNS"); do
  rm -rf "$work/nix" "$work/castor-store"
  drv=$(nix-instantiate --store "$work/nix" "$work/expr/chain.nix" 2>/dev/null)
  nix-store --store "$work/nix" --export $(nix-store --store "$work/nix" -qR "$drv") |
    "$work/castor" --store "$work/castor-store" store import-export >/dev/null
  # Alternate who goes first, so neither always finds a warmer cache.
  if [ $((i % 2)) = 1 ]; then
    castor_t+=("$(seconds "$work/castor" --store "$work/castor-store" realise -q -j "$JOBS" "$drv")")
    nix_t+=("$(seconds nix-store --store "$work/nix" --realise "$drv" -j "$JOBS" --option sandbox true --option sandbox-paths "/bin/sh=$busybox")")
  else
    nix_t+=("$(seconds nix-store --store "$work/nix" --realise "$drv" -j "$JOBS" --option sandbox true --option sandbox-paths "/bin/sh=$busybox")")
    castor_t+=("$(seconds "$work/castor" --store "$work/castor-store" realise -q -j "$JOBS" "$drv")")
  fi
done

out=$(nix-store --store "$work/nix" -q --outputs "$drv")
nix_hash=$(nix-store --store "$work/nix" -q --hash "$out")
castor_out=$("$work/castor" --store "$work/castor-store" realise -q "$drv")
castor_hash=$("$work/castor" --store "$work/castor-store" store path-info "$castor_out" | sed -n 's/^NarHash: //p')
[ "$out" = "$castor_out" ] && [ "$nix_hash" = "$castor_hash" ] ||
  { echo "MISMATCH: nix $out $nix_hash, castor $castor_out $castor_hash"; exit 1; }

nt=$(printf '%s\n' "${nix_t[@]}" | median); ct=$(printf '%s\n' "${castor_t[@]}" | median)
echo "chain of $N trivial derivations, -j $JOBS (median of $RUNS; runs: nix ${nix_t[*]}, castor ${castor_t[*]})"
echo "nix-store --realise (sandbox): ${nt}s  castor realise: ${ct}s"
awk -v n="$nt" -v c="$ct" -v N="$N" 'BEGIN {printf "per derivation: nix %.1f ms, castor %.1f ms; ratio nix/castor: %.2fx\n", 1000*n/N, 1000*c/N, n/c}'
