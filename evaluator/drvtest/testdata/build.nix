# A small graph that castor build and nix-build both build, in their
# sandboxes, with a static busybox as the only tool: the outputs must be
# at the same paths with the same NAR hashes.
#
# busybox is a directory holding bin/busybox and bin/sh -> busybox, which
# the test puts next to this file.
let
  system = "x86_64-linux";
  bb = ./busybox;
  sh = "${bb}/bin/sh";
  mk = name: script: attrs: derivation ({
    inherit name system;
    builder = sh;
    args = [ "-c" ("set -eu\n" + script) ];
  } // attrs);
  greeting = builtins.toFile "greeting" "hello from a text file\n";

  # Import from derivation: evaluation needs this built first.
  generated = mk "generated" ''
    printf '{ n = %s; s = "%s"; }\n' 42 "made by a build" > $out
  '' { };
  fromBuild = import generated;
in
rec {
  hello = mk "hello" ''echo hello > $out'' { };

  multi = mk "multi" ''
    mkdir $out
    echo main > $out/main
    echo lib > $lib
    printf 'dev of %s\n' $out > $dev
  '' { outputs = [ "out" "lib" "dev" ]; };

  tree = mk "tree" ''
    mkdir -p $out/bin $out/share
    printf '#!%s\necho run\n' ${sh} > $out/bin/run
    chmod +x $out/bin/run
    ln -s ../share $out/bin/share
    cat ${greeting} > $out/share/greeting
    cp -r ${./src/tree} $out/src
    ln -s ${bb}/bin/busybox $out/bin/busybox
  '' { };

  uses = mk "uses" ''
    {
      cat ${hello}
      cat ${multi.lib}
      echo "${multi.dev}"
      echo ${toString fromBuild.n} ${fromBuild.s}
      cat ${tree}/share/greeting
    } > $out
  '' { };

  fixed = mk "fixed" ''printf hello > $out'' {
    outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
  };

  # A whole derivation as input: its .drv and closure are readable.
  drvRef = mk "drv-ref" ''cat ${hello.drvPath} > $out'' { };

  passAsFile = mk "pass-as-file" ''cat $bigPath > $out'' {
    passAsFile = [ "big" ];
    big = "a lot of text\n";
  };

  devOnly = multi.dev;
}
