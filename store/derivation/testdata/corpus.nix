# Derivations covering what the derivation package must reproduce
# byte-exactly: nix-instantiate writes each one, the test parses, rewrites
# and recomputes paths. Nothing here is built.
let
  system = "x86_64-linux";
  hello = ./src/hello.txt;
  tree = ./src/tree;
  text = builtins.toFile "text.txt" "plain text\n";
  textRef = builtins.toFile "text-ref.txt" "refers to ${text}\n";
  mk = attrs: derivation ({ inherit system; builder = "/bin/sh"; } // attrs);
in rec {
  escapes = mk {
    name = "escapes";
    args = [ "-c" "echo \"quoted\" \\ backslash\ttab\nnewline\rcr > $out" "" ];
    "we\"ird key" = "value with \"quotes\"";
    unicode = "héllo wörld ✓";
    empty = "";
  };
  multi = mk {
    name = "multi";
    outputs = [ "out" "dev" "bin" "lib" ];
    args = [ "-c" "true" ];
  };
  chain1 = mk { name = "chain1"; args = [ "-c" "true" ]; src = hello; };
  chain2 = mk { name = "chain2"; args = [ "-c" "true" ]; prev = chain1; dev = multi.dev; };
  chain3 = mk { name = "chain3"; args = [ "-c" "true" ]; prev = chain2; all = [ multi.bin multi.lib multi ]; };
  flatSha256 = mk {
    name = "flat-sha256";
    args = [ "-c" "printf hello > $out" ];
    outputHashMode = "flat";
    outputHashAlgo = "sha256";
    outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";
  };
  flatSha1 = mk {
    name = "flat-sha1";
    args = [ "-c" "printf hello > $out" ];
    outputHashAlgo = "sha1";
    outputHash = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";
  };
  flatSha512 = mk {
    name = "flat-sha512";
    args = [ "-c" "printf hello > $out" ];
    outputHashAlgo = "sha512";
    outputHash = "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043";
  };
  recSha256 = mk {
    name = "rec-sha256";
    args = [ "-c" "mkdir $out" ];
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
    outputHash = "1jm6pd2p5sdkw2hlbvz0s34qy9qy7d55ilhs2g9ks3n7i8hcl0ph";
  };
  recSha1 = mk {
    name = "rec-sha1";
    args = [ "-c" "mkdir $out" ];
    outputHashMode = "recursive";
    outputHash = "sha1-qvTGHdzF6KLavt4PO0gs2a6pQ00=";
  };
  # Two fixed-output derivations with the same name and hash but different
  # builders have the same hash modulo: Nix merges them in the ATerm it
  # hashes for their dependents.
  mirrorA = mk { name = "mirrored"; args = [ "-c" "a" ]; outputHashAlgo = "sha256"; outputHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; };
  mirrorB = mk { name = "mirrored"; args = [ "-c" "b" ]; outputHashAlgo = "sha256"; outputHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; };
  usesMirrors = mk { name = "uses-mirrors"; args = [ "-c" "true" ]; a = mirrorA; b = mirrorB; };
  fixedWithInputs = mk {
    name = "fixed-with-inputs";
    args = [ "-c" "true" ];
    dep = chain1;
    outputHashAlgo = "sha256";
    outputHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
  };
  structured = mk {
    name = "structured";
    __structuredAttrs = true;
    outputs = [ "out" "doc" ];
    list = [ 1 2.5 true null "s" { nested = hello; } ];
    dep = flatSha256;
    prev = chain3;
  };
  structuredFixed = mk {
    name = "structured-fixed";
    __structuredAttrs = true;
    outputHashMode = "recursive";
    outputHashAlgo = "sha256";
    outputHash = "1jm6pd2p5sdkw2hlbvz0s34qy9qy7d55ilhs2g9ks3n7i8hcl0ph";
  };
  passAsFile = mk {
    name = "pass-as-file";
    passAsFile = [ "big" "other" ];
    big = "a long text referring to ${textRef}";
    other = "x";
    plain = "y";
  };
  sources = mk {
    name = "sources";
    args = [ "-c" "true" ];
    file = hello;
    dir = tree;
    inherit text textRef;
    renamed = builtins.path { path = ./src/tree; name = "renamed-tree"; };
  };
  withBuilderSource = derivation {
    name = "builder-source";
    inherit system;
    builder = tree + "/run.sh";
    args = [ ];
  };
  fetch = import <nix/fetchurl.nix> {
    url = "http://127.0.0.1:1/hello.txt";
    sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
  };
  usesFetch = mk { name = "uses-fetch"; args = [ "-c" "true" ]; f = fetch; };
}
