# Derivations whose builders record what they were given: the environment
# (env -0) and every file Nix put in the build directory. Built by Nix 2.8
# in its sandbox, they show what FromDerivation must produce.
let
  system = "x86_64-linux";
  dump = ''
    mkdir -p "$d/files"
    env -0 > "$d/env"
    for f in /build/.attr*; do
      if [ -e "$f" ]; then cp "$f" "$d/files/"; fi
    done
  '';
  text = builtins.toFile "ref.txt" "referenced";
in {
  plain = derivation {
    name = "env-plain";
    inherit system;
    builder = "/bin/sh";
    args = [ "-c" ("d=$out\n" + dump) ];
    passAsFile = [ "big" "withRef" "missing" ];
    big = "a value\nwith newlines\tand \"quotes\" and ünïcödé";
    withRef = "see ${text}";
    plain = "x";
    "odd key" = "value";
    HOME = "/overridden-home";
    TMPDIR = "/not-kept";
    NIX_BUILD_CORES = "99";
    TERM = "dumb";
    bigPath = "set by the derivation";
    empty = "";
  };
  structured = derivation {
    name = "env-structured";
    inherit system;
    builder = "/bin/sh";
    __structuredAttrs = true;
    outputs = [ "out" "doc" ];
    args = [ "-c" ''
      out=$(sed -n 's/.*"out":"\([^"]*\)".*/\1/p' /build/.attrs.json)
      doc=$(sed -n 's/.*"doc":"\([^"]*\)".*/\1/p' /build/.attrs.json)
      mkdir "$doc"
      d=$out
      ${dump}
    '' ];
    int = 42;
    negative = -7;
    big = 5000000000;
    float = 1.5;
    floatInt = 2.0;
    tiny = 0.000001;
    huge = 1.0e20;
    yes = true;
    no = false;
    nothing = null;
    str = "it's \"quoted\"\n\ttabbed \\ back $x `y`";
    list = [ 1 "two" true null 4.5 ];
    plainList = [ 1 2 3 ];
    emptyList = [ ];
    set = { a = "b"; "c d" = 1; e = false; };
    nestedSet = { a = { b = 1; }; };
    emptySet = { };
    "not-a-var" = "skipped in .attrs.sh";
    ctrl = builtins.fromJSON "\"bell\\u0007\"";
    ref = text;
    passAsFile = [ "ignored" ];
    ignored = "in structured mode";
  };
  fixed = derivation {
    name = "env-fixed";
    inherit system;
    builder = "/bin/sh";
    args = [ "-c" ''
      d=/build/tmp
      ${dump}
      cd /build/tmp && tar cf "$out" env files
    '' ];
    impureEnvVars = [ "CASTOR_TEST_IMPURE" "CASTOR_TEST_UNSET" ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    # Deliberately wrong: Nix registers the output under its real hash and
    # reports the mismatch, which is how the test finds it.
    outputHash = "0000000000000000000000000000000000000000000000000000000000000000";
  };
}
