# Hand-written differential corpus: one expression per line (a line ending
# in " \" continues on the next one), compared with
# nix-instantiate --eval --strict (Nix 2.8). "!" = must fail, any message.
# Syntax errors are compared without bison's ", expecting ..." list.
# Known, deliberate divergences are not listed here: integer overflow
# (an error, as in Nix >= 2.25; 2.8 wraps around) and libstdc++'s
# submatch for a starred group that can match empty (match "(a*)*" "aa"
# is [ "" ] in Nix, [ "aa" ] here).
1 + 2
"${"a"}b${"c"}"
[ 1 2.5 "x" null true false ]
{ a = 1; "a b" = 2; "if" = 3; or = 4; "1x" = 5; a-b = 6; "" = 7; _x = 8; a' = 9; }
let x = { a = 1; }; in [ x x { inherit x; y = x; } ]
let l = [ 1 ]; in [ l l ]
[ (1.0 / 3) 1.0e20 1.0e-5 123456.7 0.1 100000000.0 (-1.5) ]
toString [ 1.5 1.0 (1.0 / 3) null true false "a" [] [[]] ]
builtins.toJSON { b = "\u0001é\n\t\r\"\\/"; a = null; c = [ true 1 (-1) 0.5 ]; }
builtins.fromJSON ''{"a": [1, 2.5, "x\u00e9", null, true], "b": {"c": -3}, "a": 7}''
builtins.toXML { a = [ 1 "s" true null 1.5 ]; f = x: x; g = { x, y ? 1, ... }@args: x; }
builtins.attrNames { z = 1; a = 2; m = 3; "B" = 4; }
builtins.sort (a: b: a < b) [ 5 3 9 1 3 ]
builtins.sort (a: b: a.k < b.k) [ { k = 1; v = "a"; } { k = 0; v = "b"; } { k = 1; v = "c"; } { k = 0; v = "d"; } ]
builtins.match "(a|ab)(c|bcd)(d*)" "abcd"
builtins.match "([^/]*)/(.*)" "foo/bar/baz"
builtins.match "a{2,3}" "aaa"
builtins.match "[[:alpha:]]+([0-9]+)" "abc123"
builtins.match "(.)(.)" "é"
builtins.split "a*" "baaac"
builtins.split "(a)|b" "xaybz"
builtins.split "" "ab"
builtins.split "^a" "aaa"
builtins.split "([0-9]+)" "abc123def456"
!builtins.match "\\d" "1"
!builtins.match "(" "a"
builtins.compareVersions "1.2.3" "1.2.10"
builtins.compareVersions "2.3a" "2.3.1"
builtins.compareVersions "1.0pre1" "1.0"
builtins.splitVersion "1.2.3-pre4abc.5"
builtins.parseDrvName "nix-2.8.0pre-rc1"
builtins.parseDrvName "hello"
builtins.substring 2 3 "hello world"
builtins.substring 5 (-1) "hello world"
builtins.substring 20 3 "hello"
builtins.replaceStrings [ "" ] [ "-" ] "abc"
builtins.replaceStrings [ "oo" "a" ] [ "0" "A" ] "foobar a"
builtins.concatStringsSep ", " [ "a" "b" "c" ]
builtins.hashString "md5" "hello"
builtins.hashString "sha1" "hello"
builtins.hashString "sha512" ""
builtins.stringLength "héllo"
builtins.genList (x: x * x) 6
builtins.foldl' (a: b: a * 10 + b) 0 [ 1 2 3 ]
builtins.listToAttrs [ { name = "a"; value = 1; } { name = "a"; value = 2; } { name = "b"; value = 3; } ]
builtins.mapAttrs (n: v: n + toString v) { a = 1; b = 2; }
builtins.zipAttrsWith (n: vs: vs) [ { a = 1; } { a = 2; b = 3; } ]
builtins.groupBy (x: if x > 2 then "big" else "small") [ 1 2 3 4 ]
builtins.partition (x: x > 2) [ 1 2 3 4 ]
builtins.catAttrs "a" [ { a = 1; } { b = 2; } { a = 3; } ]
builtins.intersectAttrs { a = 0; c = 0; } { a = 1; b = 2; c = 3; }
builtins.removeAttrs { a = 1; b = 2; c = 3; } [ "a" "z" ]
builtins.functionArgs ({ a, b ? 1, ... }: a)
builtins.genericClosure { startSet = [ { key = 1; } ]; operator = x: if x.key < 5 then [ { key = x.key + 1; } { key = x.key * 2; } ] else []; }
builtins.tryEval (throw "x")
builtins.tryEval (assert false; 1)
builtins.tryEval 5
builtins.typeOf [ 1 (x: x) builtins.add (builtins.add 1) {} "s" ./. null 1.5 true ]
map builtins.typeOf [ 1 (x: x) builtins.add (builtins.add 1) {} "s" ./. null 1.5 true ]
[ (builtins.isFunction builtins.map) (builtins.isAttrs {}) (builtins.isList []) (builtins.isPath ./.) ]
builtins.elemAt [ 1 2 3 ] 2
!builtins.elemAt [ 1 2 3 ] 3
!builtins.head []
builtins.all (x: x > 0) [ 1 2 ]
builtins.any (x: x > 1) [ 1 2 ]
builtins.concatMap (x: [ x x ]) [ 1 2 ]
builtins.filter (x: x != 2) [ 1 2 3 2 ]
[ (builtins.bitAnd 12 10) (builtins.bitOr 12 10) (builtins.bitXor 12 10) ]
[ (builtins.ceil 1.5) (builtins.floor (-1.5)) (builtins.ceil (-0.5)) ]
[ (5 / 2) (-5 / 2) (5 / (-2)) (5.0 / 2) (builtins.div 7 2) ]
[ (1 < 2) (2 <= 2) (3 > 4) (1.5 >= 1) ("a" < "b") ([ 1 2 ] < [ 1 3 ]) ]
[ (1 == 1.0) ({ a = 1; } == { a = 1; }) ([ 1 ] == [ 1 ]) ((x: x) == (x: x)) (null == null) ]
let f = x: x; in [ (f == f) ([ f ] == [ f ]) ]
rec { a = 1; b = a + 1; c = { d = b; }; }
let a = 1; b = a + 1; in { inherit a b; c = let a = 10; in a + b; }
with { a = 1; b = 2; }; a + b
let a = 1; in with { a = 2; }; a
with { a = 1; }; with { a = 2; }; a
{ a.b.c = 1; a.b.d = 2; a.e = 3; }
{ x = { y = 1; }; x.z = 2; }
({ a, b ? a + 1, ... }@args: [ a b (builtins.attrNames args) ]) { a = 1; c = 3; }
let f = { x ? y, y ? 1 }: x; in f {}
"a\nb\tc\\d\"e\${f}"
''
  indented
    more
  ''
"${toString 1}${toString 1.5}${toString true}${toString null}"
!"${1}"
!1 + "a"
"a" + toString 1
!{ a = 1; }.b
{ a = 1; }.b or 2
{ a = { b = 1; }; } ? a.b
!let x = x; in x
!throw "boom"
!abort "boom"
!assert 1 == 2; 1
!({ a }: a) { b = 1; }
!({ a }: a) {}
!1 / 0
!builtins.toJSON (x: x)
!(x: x) == 1 + "a"
!undefinedVariable
!let { x = 1; }
let { x = 1; body = x + 1; }
rec { __overrides = { a = 10; }; a = 1; b = a + 1; }
({ __functor = self: x: self.k + x; k = 10; }) 5
"${{ outPath = "o"; }}"
"${{ __toString = self: "ts"; }}"
builtins.toString { __toString = self: "t"; }
builtins.getEnv "DIFFTEST_SURELY_UNSET"
builtins.unsafeGetAttrPos "a" { a = 1; }
__curPos
builtins.dirOf "/a/b/c"
builtins.baseNameOf "/a/b/c/"
builtins.dirOf ./foo/bar
./foo + "/bar"
./foo + "/../bar"
./. + ./.
"${./corpus.nix}"
builtins.getContext "${./corpus.nix}"
builtins.hasContext "${./corpus.nix}"
builtins.toFile "hello.txt" "hello"
builtins.path { path = ./.; name = "td"; filter = p: t: baseNameOf p == "corpus.nix"; }
builtins.filterSource (p: t: false) ./.
builtins.pathExists ./corpus.nix
builtins.pathExists ./nonexistent
builtins.readDir ./.
builtins.placeholder "out"
builtins.fromTOML "a = 1\n[b]\nc = \"x\"\nd = [1.5, 2]\n"
builtins.seq (throw "x") 1 == 1 || true
builtins.tryEval (builtins.seq (throw "x") 1)
builtins.deepSeq [ 1 2 ] 3
!builtins.deepSeq [ (throw "deep") ] 3
builtins.length (builtins.genList (x: throw "lazy") 3)
builtins.mapAttrs (n: v: v) { a = throw "lazy"; } ? a
[ (builtins.langVersion > 5) builtins.storeDir ]
!99999999999999999999
builtins.foldl' builtins.add 0 (builtins.genList (x: x) 100000)
let fib = n: if n < 2 then n else fib (n - 1) + fib (n - 2); in fib 15
builtins.addErrorContext "ctx" 1
builtins.trace "tracing" 2
(builtins.tryEval <nonexistent-path>).success
builtins.appendContext "x" { "${builtins.storeDir}/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-foo" = { path = true; }; }
builtins.unsafeDiscardOutputDependency "x"
builtins.split "(a)(b)?" "abab a"
builtins.match "" ""
builtins.match "a|" ""
[ (builtins.match "a.c" "a\nc") (builtins.match "[a-]+" "a-a") (builtins.match "[]x]+" "]x") ]
builtins.path { path = ./../../testdata/lang; filter = path: _: baseNameOf path == "data"; recursive = true; sha256 = "1yhm3gwvg5a41yylymgblsclk95fs6jy72w0wv925mmidlhcq4sw"; name = "output"; }
builtins.path { path = ./../../testdata/lang; filter = path: _: baseNameOf path == "data"; recursive = true; sha256 = "0yhm3gwvg5a41yylymgblsclk95fs6jy72w0wv925mmidlhcq4sw"; name = "output"; }
builtins.path { path = ./corpus.nix; recursive = false; }
toString [ (1.0e308 * 10) (-1.0e308 * 10) (1.0e308 * 10 - 1.0e308 * 10) ]
[ (1.0e308 * 10) (0.0 - 1.0e308 * 10) (1.0e308 * 10 - 1.0e308 * 10) ]
# Lexer corners
[ 1. .5 01 0.5e2 1.5E-1 ]
[ http://example.org/a?b=c&d x:y ftp://x ]
let a-b = 1; a' = 2; _c = 3; in a-b + a' + _c
let or = 5; in { or = 1; }.or + or
let f = x: x; or = 2; in f or
''${"a"}''${"b"}''
''  a'''b ''$ x ''\n''\t y''
'' \
  $${x} \
   '${"q"}' \
''
"\$${"x"}"
"a \
b"
"${"a"}${""}${"b"}"
# Attribute sets
let x = { a = 1; b = 2; }; in { inherit (x) a b; c = 3; }
let a = 1; in rec { inherit a; b = a; }
{ a = { b = 1; }; a.c = 2; }.a
{ ${"a" + "b"} = 1; ${null} = 2; }
!{ ${"a"} = 1; ${"a"} = 2; }
({ a, ... }@args: args) { a = 1; b = 2; }
(args@{ a, ... }: args.b) { a = 1; b = 2; }
let s = { a = 1; }; in s.${"a"}
{ a = 1; }.${"b"} or "default"
({ a = { b = null; }; }).a.b.c or "deep default"
!{ a = 1; }.a.b
# Functions and calls
let compose = f: g: x: f (g x); in compose (x: x * 2) (x: x + 1) 5
let apply = f: f 1 2 3; in apply (a: b: c: a + b + c)
builtins.foldl' (f: x: f x) (a: b: c: [ a b c ]) [ 1 2 3 ]
!let f = { a }: a; in f 1
!(1 2)
!"s" 1
# Type errors from builtins
!builtins.length "x"
!builtins.attrNames [ ]
!builtins.head 1
!builtins.substring "a" 1 "b"
!builtins.concatStringsSep 1 [ ]
!builtins.elem 1 {}
!builtins.map 1 [ 1 ]
!builtins.genList 1 (-1)
!builtins.sort builtins.lessThan [ 1 "a" ]
!builtins.listToAttrs [ { value = 1; } ]
!builtins.toJSON builtins.add
!builtins.fromJSON "{"
!builtins.fromJSON "[1,]"
!builtins.fromTOML "a = "
!builtins.fromTOML "a = 1979-05-27"
!builtins.hashString "sha3" "x"
!builtins.getAttr "x" { }
!builtins.replaceStrings [ "a" ] [ ] "abc"
!builtins.tail [ ]
!builtins.elemAt [ ] 0
!builtins.seq (throw "in seq") 1
!builtins.toPath "relative"
!builtins.storePath /tmp
!builtins.readFile ./nonexistent-file
!builtins.readDir ./nonexistent-dir
!import ./nonexistent.nix
# Path interpolation
let foo = "foo"; in [ ./${foo} ./a-${foo}-b /${foo} ./${foo + "/bar"} ./bar/${foo} /${foo}/${"bar"} ~/${foo} ]
[ ./a/b/../c (./a + "/../b") (/. + "x") ~/x ]
builtins.typeOf ./${"x"}
./a/${./b}
