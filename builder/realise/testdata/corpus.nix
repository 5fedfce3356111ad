# The oracle corpus: derivations whose builders are static busybox
# scripts, built by Nix 2.8 (sandbox on) and by castor; the outputs must be
# at the same paths with the same NAR hashes and references.
#
# busybox is a directory holding bin/busybox (static) and bin/sh -> busybox,
# made by the test next to this file. fileURL and httpURL serve
# "hello fetch\n".
{ fileURL, httpURL }:
let
  system = "x86_64-linux";
  bb = ./busybox;
  sh = "${bb}/bin/sh";
  mk = name: script: attrs: derivation ({
    inherit name system;
    builder = sh;
    args = [ "-c" ("set -eu\n" + script) ];
  } // attrs);
  text = builtins.toFile "text.txt" "plain text\n";
  textRef = builtins.toFile "text-ref.txt" "refers to ${text}\n";
in rec {
  hello = mk "hello" ''echo hello > $out'' { };

  tree = mk "tree" ''
    mkdir -p $out/bin $out/share/doc $out/empty
    printf '#!%s\necho run\n' ${sh} > $out/bin/run
    chmod +x $out/bin/run
    echo docs > $out/share/doc/README
    : > $out/share/empty-file
    ln -s ../share/doc/README $out/bin/readme
    ln -s ${bb}/bin/busybox $out/bin/busybox
    ln -s /nonexistent/target $out/dangling
    echo "self: $out" > $out/self
    seq 1 100000 > $out/share/numbers
    printf 'no newline at end' > $out/share/partial
  '' { };

  multi = mk "multi" ''
    mkdir $out $lib
    echo "library" > $lib/lib.txt
    printf 'see %s\n' $out > $dev
    echo "bin uses $lib" > $bin
    echo "main" > $out/main
  '' { outputs = [ "out" "dev" "bin" "lib" ]; };

  usesDev = mk "uses-dev" ''cat ${multi.dev} > $out; echo "and ${multi.bin}" >> $out'' { };

  chain1 = mk "chain1" ''echo one > $out'' { };
  chain2 = mk "chain2" ''{ cat ${chain1}; echo two; echo "prev ${chain1}"; } > $out'' { };
  chain3 = mk "chain3" ''mkdir $out; cat ${chain2} > $out/all; ln -s ${chain2} $out/prev'' { };

  flatSha256 = mk "flat-sha256" ''printf hello > $out'' {
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
  };
  flatSha512 = mk "flat-sha512" ''printf hello > $out'' {
    outputHashAlgo = "sha512";
    outputHash = "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043";
  };
  recSha256 = mk "rec-sha256" ''mkdir $out $out/d; echo fixed > $out/file; ln -s file $out/link'' {
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
    outputHash = "sha256-lCma7IsAhqN8jTxhtZIKiAnyIs8090xiyYqcDbq5wT8=";
  };
  recSha1 = mk "rec-sha1" ''mkdir $out $out/d; echo fixed > $out/file; ln -s file $out/link'' {
    outputHashMode = "recursive";
    outputHash = "sha1-mmr4ugcEVog6QGlzgoVrqnZSy3E=";
  };
  usesFixed = mk "uses-fixed" ''cat ${flatSha256} ${recSha256}/file > $out'' { };

  structured = mk "structured" ''
    out=$(sed -n 's/.*"out":"\([^"]*\)".*/\1/p' /build/.attrs.json)
    doc=$(sed -n 's/.*"doc":"\([^"]*\)".*/\1/p' /build/.attrs.json)
    mkdir $out
    cp /build/.attrs.json /build/.attrs.sh $out/
    echo "documentation" > $doc
  '' {
    __structuredAttrs = true;
    outputs = [ "out" "doc" ];
    number = 42;
    float = 2.5;
    list = [ "a" 1 true null ];
    set = { key = "value"; dep = hello; };
    str = "quotes \" and 'single' and \\ and\nnewline";
  };

  passAsFile = mk "pass-as-file" ''cp $bigPath $out; echo "$small" >> $out'' {
    passAsFile = [ "big" ];
    big = "a big value referring to ${textRef}\n";
    small = "small";
  };

  sources = mk "sources" ''
    mkdir $out
    cp ${./src/file.txt} $out/file.txt
    cp -r ${./src/dir} $out/dir
    cat ${textRef} > $out/text
    ln -s ${textRef} $out/text-link
  '' { };

  binSh = derivation {
    name = "bin-sh";
    inherit system;
    builder = "/bin/sh";
    args = [ "-c" "echo 'built with /bin/sh' > $out" ];
  };

  symlinkOut = mk "symlink-out" ''ln -s ${hello} $out'' { };

  fetchFile = import <nix/fetchurl.nix> {
    url = fileURL;
    sha256 = "07ag5a48hnpywi7fjshx303047m9sg3kzvxmxc49p9zkzdq56wsc";
  };
  fetchHTTP = import <nix/fetchurl.nix> {
    url = httpURL;
    sha256 = "sha256-THNTcPvzp5sI67XvP8fTqR4CBhgdaulO5P5aiIgqTx0=";
    name = "from-http";
  };
  fetchExecutable = import <nix/fetchurl.nix> {
    url = httpURL;
    sha256 = "sha256-TGYXiZzGnL+QmqC8+iUpI1msIpADDlSUSG5fOcewBHY=";
    executable = true;
    name = "executable";
  };
  usesFetch = mk "uses-fetch" ''cat ${fetchFile} ${fetchHTTP} > $out; ls -l ${fetchExecutable} | cut -c1-10 >> $out'' { };

  all = mk "all" ''
    mkdir $out
    for p in ${hello} ${tree} ${usesDev} ${chain3} ${usesFixed} ${structured} ${passAsFile} ${sources} ${binSh} ${symlinkOut} ${usesFetch} ${recSha1} ${flatSha512}; do
      echo $p >> $out/deps
    done
  '' { };
}
