# Builds that fail inside their micro-VM in the ways the executor must
# report: a failing builder, one that hangs, one that fills its scratch
# space, one that panics its VM's kernel (out of memory, with the test's
# vm.panic_on_oom=1), next to one that works.
{ ... }:
let
  system = "x86_64-linux";
  sh = "${./busybox}/bin/sh";
  mk = name: script: attrs: derivation ({
    inherit name system;
    builder = sh;
    args = [ "-c" script ];
  } // attrs);
in {
  fine = mk "fine" "echo fine > $out" { };
  fails = mk "fails" ''
    i=1; while [ $i -le 20 ]; do echo "log line $i"; i=$((i+1)); done
    echo "to stderr" >&2
    exit 3
  '' { };
  hangs = mk "hangs" "echo about to hang; sleep 100000" { };
  fillsScratch = mk "fills-scratch" ''
    echo filling
    dd if=/dev/zero of=$out bs=1048576 count=512
  '' { };
  panics = mk "panics" ''
    echo eating all memory
    # Three buffers of 120 MiB, each allowed alone, fill 256 MiB together.
    for i in 1 2 3; do dd if=/dev/zero of=/dev/null bs=120M count=1 & done
    wait
    echo still alive
  '' { castorVmMemory = "256M"; };
}
