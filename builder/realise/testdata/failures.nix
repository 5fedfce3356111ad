# Builds that fail in the ways a realiser must report.
{ ... }:
let
  system = "x86_64-linux";
  sh = "${./busybox}/bin/sh";
  mk = name: script: attrs: derivation ({
    inherit name system;
    builder = sh;
    args = [ "-c" script ];
  } // attrs);
in rec {
  fine = mk "fine" "echo fine > $out" { };
  fails = mk "fails" ''
    i=1; while [ $i -le 20 ]; do echo "log line $i"; i=$((i+1)); done
    echo "to stderr" >&2
    exit 3
  '' { };
  dependsOnFail = mk "depends-on-fail" "cat ${fails} > $out" { };
  dependsTransitively = mk "depends-transitively" "cat ${dependsOnFail} > $out" { };
  partial = mk "partial" "echo out > $out; echo half > $dev; exit 1" { outputs = [ "out" "dev" ]; };
  missingOutput = mk "missing-output" "echo out > $out" { outputs = [ "out" "dev" ]; };
  fixedMismatch = mk "fixed-mismatch" "printf other > $out" {
    outputHashAlgo = "sha256";
    outputHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
  };
  noBuilder = derivation { name = "no-builder"; inherit system; builder = "/nonexistent/builder"; };
  independent = mk "independent" "echo ${fine} > $out" { };
}
