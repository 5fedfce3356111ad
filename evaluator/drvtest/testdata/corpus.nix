# Derivations castor must instantiate exactly as Nix 2.8 does: the same
# .drv paths with the same bytes, the same output paths, the same sources
# in the store. Nothing here is built.
let
  system = "x86_64-linux";
  mk = attrs: derivation ({ inherit system; builder = "/bin/sh"; } // attrs);

  hello = ./src/hello.txt;
  tree = ./src/tree;
  text = builtins.toFile "text.txt" "plain\n";
  textRef = builtins.toFile "text-ref.txt" "refers to ${text} and ${tree}\n";
  filtered = builtins.path { path = ./src/tree; name = "filtered"; filter = p: t: baseNameOf p != "sub"; };
  noLinks = builtins.filterSource (p: t: t != "symlink") ./src/tree;
  typesSeen = builtins.filterSource (p: t: builtins.trace "${baseNameOf p} ${t}" true) ./src/tree;
  flatSrc = builtins.path { path = ./src/hello.txt; recursive = false; name = "flat-src"; };
  hashedSrc = builtins.path { path = ./src/tree; name = "hashed"; sha256 = "sha256-/DcHO6QLeQz3iByOh+23PogFy5Y1qql0RNczFtKVH8c="; };
  hashedFlat = builtins.path { path = ./src/hello.txt; recursive = false; sha256 = "853ff93762a06ddbf722c4ebe9ddd66d8f63ddaea97f521c3ecc20da7c976020"; };
  fromTextRef = builtins.path { path = textRef; name = "from-text-ref"; };
  belowSource = builtins.path { path = "${tree}/sub"; name = "below-source"; };
  filteredFromStore = builtins.path { path = "${tree}"; name = "filtered-from-store"; filter = p: t: t != "directory"; };
  filterContext = builtins.filterSource (p: t: true) "${./src}";

  a = mk { name = "a"; args = [ "-c" "echo a > $out" ]; };
  multi = mk { name = "multi"; outputs = [ "out" "dev" "lib" ]; };
  chain1 = mk { name = "chain1"; src = hello; };
  chain2 = mk { name = "chain2"; prev = chain1; };
  chain3 = mk { name = "chain3"; prev = chain2; dev = multi.dev; };

  fixed = name: attrs: mk ({ inherit name; args = [ "-c" "printf hello > $out" ]; } // attrs);
in rec {
  inherit a multi chain1 chain2 chain3;
  multiDev = multi.dev;
  multiLib = multi.lib;

  withArgs = mk {
    name = "with-args";
    args = [ "-c" 1 2.5 true false null hello tree "${a}" [ "x" [ "y" ] [ ] "z" ] multi.dev text ];
  };
  envTypes = mk {
    name = "env-types";
    i = 42; neg = -3; f = 1.5; big = 1.0e20; t = true; f2 = false; n = null;
    l = [ 1 "a" null [ ] [ 2 3 ] true false 0.1 ];
    p = hello; d = a; s = "str"; empty = "";
  };
  ignoreNulls = mk { name = "ignore-nulls"; __ignoreNulls = true; n = null; keep = "k"; also = null; };
  nullsKept = mk { name = "nulls-kept"; __ignoreNulls = false; n = null; };
  deps = mk { name = "deps"; inherit a; dev = multi.dev; lib = "${multi.lib}/lib"; all = multi.all; };
  drvPathDep = mk { name = "drvpath-dep"; d = a.drvPath; };
  drvPathDeep = mk { name = "drvpath-deep"; d = deps.drvPath; s = sources.drvPath; };
  discardOutput = mk { name = "discard-output"; d = builtins.unsafeDiscardOutputDependency deps.drvPath; };
  discardAll = mk { name = "discard-all"; d = builtins.unsafeDiscardStringContext "${a} ${multi.dev}"; };
  sources = mk {
    name = "sources";
    inherit hello tree text textRef filtered noLinks typesSeen flatSrc hashedSrc hashedFlat fromTextRef belowSource filteredFromStore filterContext;
  };
  builderPath = derivation { name = "builder-path"; inherit system; builder = ./src/tree/exec.sh; };
  builderDrv = derivation { name = "builder-drv"; inherit system; builder = "${a}/bin/sh"; args = [ "${multi.dev}" ]; };
  nameDots = mk { name = "a.b-1.0_x+y?=z"; };
  longName = mk { name = builtins.concatStringsSep "" (builtins.genList (i: "x") 200); };
  unicode = mk {
    name = "unicode";
    s = "héllo wörld ✓";
    "we\"ird key" = "q\"uote\\back\nnl\ttab\rcr";
    "with space" = "";
  };
  notCA = mk { name = "not-ca"; __contentAddressed = false; __impure = false; };
  exportGraph = mk { name = "export-graph"; exportReferencesGraph = [ "graph" a "deps" multi.dev ]; };
  outputsDefault = mk { name = "outputs-default"; outputs = [ "out" ]; };
  outputsOrder = mk { name = "outputs-order"; outputs = [ "lib" "out" "bin" ]; };
  outputsOrderOut = outputsOrder.out;
  strictRaw = derivationStrict { name = "strict-raw"; inherit system; builder = "/bin/sh"; outputs = "out  bin\tdev\n"; };

  fixedHex = fixed "fixed-hex" { outputHashAlgo = "sha256"; outputHash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"; };
  fixedBase32 = fixed "fixed-base32" { outputHashAlgo = "sha256"; outputHash = "094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic"; };
  fixedBase64 = fixed "fixed-base64" { outputHashAlgo = "sha256"; outputHash = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="; };
  fixedSRI = fixed "fixed-sri" { outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="; };
  fixedSRINoPad = fixed "fixed-sri-nopad" { outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ"; };
  fixedPrefixed = fixed "fixed-prefixed" { outputHash = "sha256:094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic"; };
  fixedUnknownAlgo = fixed "fixed-unknown-algo" { outputHashAlgo = "whatever"; outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="; };
  fixedSha1 = fixed "fixed-sha1" { outputHashAlgo = "sha1"; outputHash = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"; };
  fixedSha512 = fixed "fixed-sha512" { outputHash = "sha512-m3HSJL1i83hdltRq0+o9czGb+8KJDKra4t/3JRlnPKcjI8PZm6XBHXx6zG4UuMXaDEZjR1wuXDre9G9zvN7AQw=="; };
  fixedMd5 = fixed "fixed-md5" { outputHashAlgo = "md5"; outputHash = "5d41402abc4b2a76b9719d911017c592"; };
  fixedFlatMode = fixed "fixed-flat-mode" { outputHashMode = "flat"; outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="; };
  fixedRec = fixed "fixed-rec" { outputHashMode = "recursive"; outputHashAlgo = "sha256"; outputHash = "sha256-/DcHO6QLeQz3iByOh+23PogFy5Y1qql0RNczFtKVH8c="; };
  fixedRecSha1 = fixed "fixed-rec-sha1" { outputHashMode = "recursive"; outputHash = "sha1-YNvXbY6QKqqrjbbtVcSBNoBuk7g="; };
  fixedEmpty = fixed "fixed-empty" { outputHashAlgo = "sha256"; outputHash = ""; };
  fixedWithDeps = fixed "fixed-with-deps" { dep = a; src = hello; outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="; };
  # Same name and hash, different builders: one hash modulo, so the
  # dependent's input derivations merge in what Nix hashes.
  mirrorA = fixed "mirrored" { args = [ "a" ]; outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="; };
  mirrorB = fixed "mirrored" { args = [ "b" ]; outputHash = "sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="; };
  usesMirrors = mk { name = "uses-mirrors"; x = mirrorA; y = mirrorB; };
  usesFixed = mk { name = "uses-fixed"; x = fixedRec; y = fixedSha1; };

  structured = mk {
    name = "structured";
    __structuredAttrs = true;
    outputs = [ "out" "doc" ];
    list = [ 1 2.5 true false null "s" [ ] { } { nested = hello; d = a; } ];
    f = 0.1; big = 12345678901; neg = -1; n = null;
    "we\"ird" = "a\nb\u0001c\\";
    p = tree;
    dep = multi.dev;
    drv = a.drvPath;
    args = [ "x" "${text}" ];
    withToString = { __toString = self: "to-string"; };
    outPathSet = { outPath = "${hello}"; other = 1; };
    unicode = "✓";
  };
  structuredBuilder = derivation {
    name = "structured-builder";
    inherit system;
    __structuredAttrs = true;
    builder = "${a}/bin/sh";
  };
  structuredNulls = mk { name = "structured-nulls"; __structuredAttrs = true; __ignoreNulls = true; n = null; keep = [ null ]; };
  structuredFixed = mk {
    name = "structured-fixed";
    __structuredAttrs = true;
    outputHashMode = "recursive";
    outputHash = "sha256-/DcHO6QLeQz3iByOh+23PogFy5Y1qql0RNczFtKVH8c=";
  };
  structuredOff = mk { name = "structured-off"; __structuredAttrs = false; x = "y"; };
  passAsFile = mk { name = "pass-as-file"; passAsFile = [ "big" "other" ]; big = "lots of text"; other = a; };

  contexts = mk {
    name = "contexts";
    sub = builtins.substring 0 20 "${a}";
    subEmpty = builtins.substring 0 0 "${a}";
    repl = builtins.replaceStrings [ "a" ] [ "${multi.lib}" ] "${a} and a";
    joined = builtins.concatStringsSep "${multi.lib}" [ "${a}" "${multi.dev}" ];
    json = builtins.toJSON { x = a; y = [ multi.lib ]; p = hello; s = "${text}"; };
    xml = builtins.toXML { x = a; p = "${hello}"; };
    base = baseNameOf "${a}";
    dir = dirOf "${multi.dev}";
    plus = "prefix-" + a.outPath + "-suffix";
    interpDrv = "${a.drvPath}";
    listStr = toString [ a multi.dev hello ];
    split = builtins.split "/" "${a}";
    match = builtins.match "(.*)/.*" "${textRef}";
    appended = builtins.appendContext "x" { "${builtins.unsafeDiscardStringContext chain1.drvPath}" = { outputs = [ "out" ]; }; };
    appendedAll = builtins.appendContext "y" { "${builtins.unsafeDiscardStringContext chain2.drvPath}" = { allOutputs = true; path = true; }; };
    appendedPath = builtins.appendContext "z" { "${builtins.unsafeDiscardStringContext text}" = { path = true; }; };
    roundTrip = let s = "${a}${multi.dev}${text}${chain1.drvPath}"; in
      builtins.appendContext (builtins.unsafeDiscardStringContext s) (builtins.getContext s);
    ctxNames = builtins.attrNames (builtins.getContext "${a}${multi.dev}${text}");
    placeholder = builtins.placeholder "out";
    placeholderDev = "${builtins.placeholder "dev"}/lib";
    readBack = builtins.readFile textRef;
    hashed = builtins.hashString "sha256" "${a}";
    fromAttr = (builtins.getAttr "dev" multi).outPath;
    mapped = map (x: "${x}") [ a multi.lib ];
    concatMapped = builtins.concatMap (x: [ "${x}" ]) [ chain1 ];
    ifThen = if builtins.hasContext "${a}" then "${multi.lib}" else "";
    nested = "${"${"${a}"}"}";
    storeDir = builtins.storeDir;
    pathToString = toString ./src/hello.txt;
    pathInterp = "${./src/hello.txt}";
    pathPlus = "${./src}" + "/hello.txt";
    pathConcat = ./src + "/hello.txt";
    storePathStr = builtins.toString "${tree}";
    replUnused = builtins.replaceStrings [ "zzz" ] [ "${multi.lib}" ] "abc";
    replFrom = builtins.replaceStrings [ "${chain1}" ] [ "x" ] "${chain1}/bin";
    toPath = builtins.toPath "${a}/bin";
    toStringSet = toString { __toString = self: "${self.x}!"; x = chain2; };
    outPathSet = "${{ outPath = "${chain3}"; }}";
    concatLists = builtins.concatStringsSep "" (builtins.concatLists [ [ "${a}" ] [ ] ]);
    attrNamesCtx = builtins.concatStringsSep "," (builtins.attrNames { "${builtins.unsafeDiscardStringContext a}" = 1; });
    elemAt = builtins.elemAt [ "${multi.dev}" ] 0;
    fromToJSON = (builtins.fromJSON (builtins.unsafeDiscardStringContext (builtins.toJSON { x = a; }))).x;
    ext = "${tree}/a";
  };
  fetch = import <nix/fetchurl.nix> {
    url = "http://example.org/hello.txt";
    sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
  };
  fetchExec = import <nix/fetchurl.nix> {
    url = "http://example.org/tool";
    executable = true;
    hash = "sha256-/DcHO6QLeQz3iByOh+23PogFy5Y1qql0RNczFtKVH8c=";
  };
  usesFetch = mk { name = "uses-fetch"; f = fetch; g = fetchExec; };
  listOfDrvs = mk { name = "list-of-drvs"; all = [ a chain1 multi multiDev ]; };
}
