# Derivation values as the language sees them, printed with --strict by
# castor eval and nix-instantiate --eval (read-only mode, nothing written).
let
  system = "x86_64-linux";
  mk = attrs: derivation ({ inherit system; builder = "/bin/sh"; } // attrs);
  a = mk { name = "a"; };
  m = mk { name = "m"; outputs = [ "out" "dev" ]; extra = 1; };
  s = derivationStrict { name = "s"; inherit system; builder = "/bin/sh"; outputs = [ "x" "y" ]; };
in
{
  whole = a;
  multi = m;
  attrNames = builtins.attrNames m;
  devNames = builtins.attrNames m.dev;
  outputNames = map (o: o.outputName) m.all;
  sameDrvPath = m.drvPath == m.dev.drvPath;
  typeOf = builtins.typeOf derivation;
  isFunction = builtins.isFunction builtins.derivation;
  strict = s;
  strictContexts = builtins.mapAttrs (n: v: builtins.getContext v) s;
  contexts = builtins.getContext "${a}${m.dev}${m.drvPath}${builtins.toFile "t" "x"}";
  noOutputDep = builtins.getContext (builtins.unsafeDiscardOutputDependency m.drvPath);
  hasContext = [ (builtins.hasContext a.outPath) (builtins.hasContext (builtins.unsafeDiscardStringContext a.outPath)) ];
  posOutPath = builtins.unsafeGetAttrPos "outPath" a;
  posType = builtins.unsafeGetAttrPos "type" a;
  posAll = builtins.unsafeGetAttrPos "all" m;
  posDrvPath = builtins.unsafeGetAttrPos "drvPath" a;
  posOutputName = builtins.unsafeGetAttrPos "outputName" m.dev;
  posExtra = builtins.unsafeGetAttrPos "extra" m;
  posName = builtins.unsafeGetAttrPos "name" a;
  eqSame = a == mk { name = "a"; };
  eqOther = a == mk { name = "b"; };
  eqOverride = m == m // { extra = 2; };
  placeholders = map builtins.placeholder [ "out" "dev" "" ];
  toJSON = builtins.toJSON { inherit a; d = m.dev; l = [ m ]; };
  toXML = builtins.toXML m.dev;
  toStringDrv = toString m.dev;
  interp = "${m}";
  drvAttrs = m.drvAttrs;
  emptyHash = (mk { name = "e"; outputHash = ""; outputHashAlgo = "sha1"; }).outPath;
  fixedPaths = map (h: (mk { name = "f"; outputHash = h; outputHashMode = "recursive"; }).outPath) [
    "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="
    "sha1:aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"
    "md5:5d41402abc4b2a76b9719d911017c592"
  ];
  fetchurl = (import <nix/fetchurl.nix> { url = "https://example.org/x.tar.gz"; sha256 = "0000000000000000000000000000000000000000000000000000"; unpack = true; }).drvPath;
}
