# Derivations Nix 2.8 refuses; castor must refuse them with the same
# message. Each attribute is evaluated on its own (its drvPath forced).
let
  system = "x86_64-linux";
  mk = attrs: derivation ({ inherit system; builder = "/bin/sh"; } // attrs);
  a = mk { name = "a"; };
in
{
  noName = derivation { inherit system; builder = "/bin/sh"; };
  nameNotString = derivation { name = 1; inherit system; builder = "/bin/sh"; };
  nameWithContext = mk { name = "${a}"; };
  noBuilder = derivation { name = "x"; inherit system; };
  noSystem = derivation { name = "x"; builder = "/bin/sh"; };
  emptyBuilder = mk { name = "x"; builder = ""; };
  drvName = mk { name = "x.drv"; };
  badChar = mk { name = "x y"; };
  emptyName = mk { name = ""; };
  tooLong = mk { name = builtins.concatStringsSep "" (builtins.genList (i: "x") 212); };
  drvTooLong = mk { name = builtins.concatStringsSep "" (builtins.genList (i: "x") 208); };
  badOutputName = mk { name = "x"; outputs = [ "out" "a,b" ]; };
  # Not an error: the list becomes the string "out a b", three outputs.
  spaceOutputName = (mk { name = "x"; outputs = [ "out" "a b" ]; }).drvPath;
  setInEnv = mk { name = "x"; foo = { }; };
  functionInEnv = mk { name = "x"; foo = x: x; };
  badArgs = mk { name = "x"; args = "-c"; };
  badArg = mk { name = "x"; args = [ { } ]; };
  emptyOutputs = derivationStrict { name = "x"; inherit system; builder = "/bin/sh"; outputs = [ ]; };
  emptyOutputsString = derivationStrict { name = "x"; inherit system; builder = "/bin/sh"; outputs = " "; };
  dupOutputs = mk { name = "x"; outputs = [ "out" "out" ]; };
  drvOutput = mk { name = "x"; outputs = [ "drv" ]; };
  badHashMode = mk { name = "x"; outputHashMode = "text"; outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="; };
  noHashType = mk { name = "x"; outputHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; };
  hashTypeMismatch = mk { name = "x"; outputHashAlgo = "sha512"; outputHash = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; };
  hashWrongLength = mk { name = "x"; outputHashAlgo = "sha256"; outputHash = "abc"; };
  hashBadHex = mk { name = "x"; outputHashAlgo = "sha256"; outputHash = "zzf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; };
  hashBadBase32 = mk { name = "x"; outputHashAlgo = "sha256"; outputHash = "e94qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic"; };
  hashBadSRI = mk { name = "x"; outputHash = "sha256-LPJNul+wow4m6Dsq"; };
  emptyHashNoType = mk { name = "x"; outputHash = ""; };
  multipleFixed = mk { name = "x"; outputs = [ "out" "dev" ]; outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="; };
  fixedNotOut = mk { name = "x"; outputs = [ "dev" ]; outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="; };
  contentAddressed = mk { name = "x"; __contentAddressed = true; };
  impure = mk { name = "x"; __impure = true; };
  ignoreNullsNotBool = mk { name = "x"; __ignoreNulls = "yes"; };
  structuredNotBool = mk { name = "x"; __structuredAttrs = 1; };
  structuredFunction = mk { name = "x"; __structuredAttrs = true; f = x: x; };
  structuredSystemContext = derivation { name = "x"; __structuredAttrs = true; system = "${a}"; builder = "/bin/sh"; };
  structuredOutputsNotList = mk { name = "x"; __structuredAttrs = true; outputs = "out"; };
  structuredHashContext = mk { name = "x"; __structuredAttrs = true; outputHash = "${a}"; };
  toFileDrv = builtins.toFile "x" "${a}";
  toFileDrvPath = builtins.toFile "x" a.drvPath;
  throwInAttr = mk { name = "x"; foo = throw "boom"; };
  deepThrow = mk { name = "x"; foo = [ 1 (throw "deep") ]; };
  pathMissing = builtins.path { path = ./nonexistent; };
  pathHashMismatch = builtins.path { path = ./src/hello.txt; sha256 = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; };
  pathFlatHashMismatch = builtins.path { path = ./src/hello.txt; recursive = false; sha256 = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; };
  pathEmptyHash = builtins.path { path = ./src/hello.txt; sha256 = ""; };
  pathBadHash = builtins.path { path = ./src/hello.txt; sha256 = "abc"; };
  pathOtherHash = builtins.path { path = ./src/hello.txt; sha256 = "sha1:aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"; };
  pathBadArg = builtins.path { path = ./src; foo = 1; };
  pathNoPath = builtins.path { name = "x"; };
  pathBadName = builtins.path { path = ./src; name = "a b"; };
  pathFlatDir = builtins.path { path = ./src; recursive = false; };
  filterNotBool = builtins.filterSource (p: t: 1) ./src;
  filterThrows = builtins.filterSource (p: t: throw "no") ./src;
  filterNotFunction = builtins.filterSource 1 ./src;
  literalMissing = "${./nonexistent}";
  literalDrv = "${./src/x.drv}";
}
