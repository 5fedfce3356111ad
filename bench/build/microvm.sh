#!/usr/bin/env bash
# Per-build overhead of the micro-VM executor against the namespace
# sandbox, in the same run: one trivial derivation (median of RUNS, each
# from a fresh store), and a chain of N trivial derivations (default 20,
# each reading the previous output; -j 1, so every VM boots in turn).
# Both executors must give the same output path and NAR hash. Micro-VMs
# run under QEMU (TCG where there is no KVM). Needs root, /dev/fuse,
# nix-bin, busybox-static, qemu-system-x86 and linux-image-cloud-amd64.
#
#   bench/build/microvm.sh
#   N=20 RUNS=5 bench/build/microvm.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-20}
RUNS=${RUNS:-3}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/castor-bench-microvm.XXXXXX")
trap 'rm -rf "$work"' EXIT
export NIX_CONFIG=$'build-users-group =\nsandbox = false\nsubstituters =\nexperimental-features = nix-command'
busybox=$(command -v busybox || echo /bin/busybox)

go build -o "$work/castor" ./cmd/castor
mkdir -p "$work/expr/busybox/bin"
cp "$busybox" "$work/expr/busybox/bin/busybox"
ln -s busybox "$work/expr/busybox/bin/sh"
cat > "$work/expr/trivial.nix" <<NIX
derivation { name = "trivial"; system = "x86_64-linux"; builder = "\${./busybox}/bin/sh"; args = [ "-c" "echo hello > \$out" ]; }
NIX
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
seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; exit 1; }; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN {printf "%.3f\n", e-s}'; }

# A fresh castor store holding the derivation's closure; prints the .drv.
prepare() { # expr store
  rm -rf "$work/nix" "$2"
  local drv
  drv=$(nix-instantiate --store "$work/nix" "$1" 2>/dev/null)
  nix-store --store "$work/nix" --export $(nix-store --store "$work/nix" -qR "$drv") |
    "$work/castor" --store "$2" store import-export >/dev/null
  echo "$drv"
}

# Warm-up: the guest agent and the VM image are built and cached once.
drv=$(prepare "$work/expr/trivial.nix" "$work/warm")
"$work/castor" --store "$work/warm" realise -q --builder microvm "$drv" >/dev/null

for what in trivial chain; do
  sb_t=(); vm_t=()
  for i in $(seq "$RUNS"); do
    drv=$(prepare "$work/expr/$what.nix" "$work/sb")
    prepare "$work/expr/$what.nix" "$work/vm" >/dev/null
    if [ $((i % 2)) = 1 ]; then
      sb_t+=("$(seconds "$work/castor" --store "$work/sb" realise -q --builder sandbox "$drv")")
      vm_t+=("$(seconds "$work/castor" --store "$work/vm" realise -q --builder microvm "$drv")")
    else
      vm_t+=("$(seconds "$work/castor" --store "$work/vm" realise -q --builder microvm "$drv")")
      sb_t+=("$(seconds "$work/castor" --store "$work/sb" realise -q --builder sandbox "$drv")")
    fi
  done
  sb_out=$("$work/castor" --store "$work/sb" realise -q --builder sandbox "$drv")
  vm_out=$("$work/castor" --store "$work/vm" realise -q --builder microvm "$drv")
  sb_hash=$("$work/castor" --store "$work/sb" store path-info "$sb_out" | sed -n 's/^NarHash: //p')
  vm_hash=$("$work/castor" --store "$work/vm" store path-info "$vm_out" | sed -n 's/^NarHash: //p')
  [ "$sb_out" = "$vm_out" ] && [ "$sb_hash" = "$vm_hash" ] ||
    { echo "MISMATCH: sandbox $sb_out $sb_hash, micro-VM $vm_out $vm_hash"; exit 1; }
  n=1; [ "$what" = chain ] && n=$N
  st=$(printf '%s\n' "${sb_t[@]}" | median); vt=$(printf '%s\n' "${vm_t[@]}" | median)
  echo "$what ($n derivation(s), median of $RUNS; runs: sandbox ${sb_t[*]}, micro-VM ${vm_t[*]})"
  awk -v s="$st" -v v="$vt" -v n="$n" 'BEGIN {printf "  sandbox %.2fs (%.0f ms/build)  micro-VM %.2fs (%.0f ms/build)  micro-VM overhead per build: %.0f ms\n", s, 1000*s/n, v, 1000*v/n, 1000*(v-s)/n}'
done
