package difftest

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// typ is the type of a generated expression.
type typ int

const (
	tInt typ = iota
	tBool
	tString
	tFloat
	tList // list of ints
	tStrList
	tAttrs // set of ints under names from attrNames
	tNull
	tFun // int -> int
	tNested
	numTypes
)

var attrNames = []string{"a", "b", "c", "x", "y", "foo", "bar", "a-b", "\"if\"", "\"1x\"", "\"\"", "\"a b\"", "_z", "or"}

// Generator produces random well-typed Nix expressions whose evaluation
// stays within what both evaluators agree on: small integers (no overflow,
// which Nix 2.8 wraps and castor reports), no division by zero, list
// indices in range. Variables are bound by let and lambdas and used only
// where their type fits.
type Generator struct {
	r     *rand.Rand
	scope []binding
	fresh int
}

type binding struct {
	name string
	t    typ
}

// NewGenerator returns a generator seeded with seed (same seed, same
// expressions).
func NewGenerator(seed uint64) *Generator {
	return &Generator{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Expr returns a random expression of a random type, at most depth deep.
func (g *Generator) Expr(depth int) string {
	g.scope = nil
	g.fresh = 0
	return g.gen(typ(g.r.IntN(int(numTypes)-1)), depth)
}

func (g *Generator) pick(n int) int { return g.r.IntN(n) }

func (g *Generator) name() string {
	g.fresh++
	return "v" + strconv.Itoa(g.fresh)
}

// varOf returns a bound variable of type t, if any.
func (g *Generator) varOf(t typ) (string, bool) {
	var c []string
	for _, b := range g.scope {
		if b.t == t {
			c = append(c, b.name)
		}
	}
	if len(c) == 0 {
		return "", false
	}
	return c[g.pick(len(c))], true
}

func (g *Generator) with(b binding, f func() string) string {
	g.scope = append(g.scope, b)
	s := f()
	g.scope = g.scope[:len(g.scope)-1]
	return s
}

func (g *Generator) smallInt() string {
	n := g.pick(41) - 20
	if n < 0 {
		return "(" + strconv.Itoa(n) + ")"
	}
	return strconv.Itoa(n)
}

var strLits = []string{`""`, `"a"`, `"foo"`, `"Hello, World"`, `"x\ny"`, `"tab\there"`, `"q\"uote"`, `"back\\slash"`,
	`"\${not}"`, `"$"`, `"é ü"`, `"1.2.3"`, `"abc-1.0pre2"`, `"a.b-c"`, `''  indented
    string''`, `''a''${"x"}''`}

var floatLits = []string{"0.5", "1.0", "2.25", "(-3.5)", "0.1", "100.0", "1.5e3", ".25", "123456.789", "1.0e-3"}

// gen returns an expression of type t.
func (g *Generator) gen(t typ, depth int) string {
	if depth <= 0 || g.pick(6) == 0 {
		return g.leaf(t)
	}
	d := depth - 1
	// Generic forms, valid at any type.
	switch g.pick(13) {
	case 5:
		w := withNames[g.pick(len(withNames))]
		return "(with { " + w + " = " + g.gen(tInt, d) + "; zz = 0; }; " + g.with(binding{w, tInt}, func() string { return g.gen(t, d) }) + ")"
	case 6:
		p, q := g.name(), g.name()
		body := g.with(binding{p, tInt}, func() string {
			return g.with(binding{q, tInt}, func() string { return g.gen(t, d) })
		})
		arg := "{ " + p + " = " + g.gen(tInt, d) + "; }"
		if g.pick(2) == 0 {
			arg = "{ " + p + " = " + g.gen(tInt, d) + "; " + q + " = " + g.gen(tInt, d) + "; extra = 1; }"
		}
		return "(({ " + p + ", " + q + " ? " + g.gen(tInt, d) + ", ... }@args: " + body + ") " + arg + ")"
	case 7:
		n := g.name()
		return "(let s = rec { " + n + " = " + g.gen(tInt, d) + "; w = " + n + "; }; in " +
			g.with(binding{"s.w", tInt}, func() string { return g.gen(t, d) }) + ")"
	case 0:
		return fmt.Sprintf("(if %s then %s else %s)", g.gen(tBool, d), g.gen(t, d), g.gen(t, d))
	case 1:
		n := g.name()
		bt := typ(g.pick(int(tNull)))
		val := g.gen(bt, d)
		return "(let " + n + " = " + val + "; in " + g.with(binding{n, bt}, func() string { return g.gen(t, d) }) + ")"
	case 2:
		n := g.name()
		bt := typ(g.pick(int(tNull)))
		arg := g.gen(bt, d)
		return "((" + n + ": " + g.with(binding{n, bt}, func() string { return g.gen(t, d) }) + ") " + arg + ")"
	case 3:
		return fmt.Sprintf("({ %s = %s; z = %s; }.%s)", "r", g.gen(t, d), g.gen(tInt, d), "r")
	case 4:
		return fmt.Sprintf("(builtins.seq %s %s)", g.gen(tInt, d), g.gen(t, d))
	}
	switch t {
	case tInt:
		switch g.pick(14) {
		case 0:
			return fmt.Sprintf("(%s + %s)", g.gen(tInt, d), g.gen(tInt, d))
		case 1:
			return fmt.Sprintf("(%s - %s)", g.gen(tInt, d), g.gen(tInt, d))
		case 2:
			return fmt.Sprintf("(%s * %s)", g.gen(tInt, d), g.smallInt())
		case 3:
			return fmt.Sprintf("(%s / %d)", g.gen(tInt, d), g.pick(9)+1)
		case 4:
			return fmt.Sprintf("(builtins.length %s)", g.gen(tList, d))
		case 5:
			return fmt.Sprintf("(builtins.stringLength %s)", g.gen(tString, d))
		case 6:
			return fmt.Sprintf("(builtins.foldl' (acc: e: acc + e) %s %s)", g.gen(tInt, d), g.gen(tList, d))
		case 7:
			return fmt.Sprintf("(builtins.head ([ %s ] ++ %s))", g.gen(tInt, d), g.gen(tList, d))
		case 8:
			return fmt.Sprintf("(%s.a or %s)", g.gen(tAttrs, d), g.gen(tInt, d))
		case 9:
			return fmt.Sprintf("(builtins.bitXor %s %s)", g.gen(tInt, d), g.gen(tInt, d))
		case 10:
			return fmt.Sprintf("(%s %s)", g.gen(tFun, d), g.gen(tInt, d))
		case 11:
			return fmt.Sprintf("(builtins.compareVersions %s %s)", g.gen(tString, d), g.gen(tString, d))
		case 12:
			return fmt.Sprintf("(builtins.floor %s)", floatLits[g.pick(len(floatLits))])
		default:
			return fmt.Sprintf("(builtins.length (builtins.attrNames %s))", g.gen(tAttrs, d))
		}
	case tBool:
		switch g.pick(12) {
		case 0:
			return fmt.Sprintf("(%s < %s)", g.gen(tInt, d), g.gen(tInt, d))
		case 1:
			return fmt.Sprintf("(%s == %s)", g.gen(typ(g.pick(int(tNull)+1)), d), g.gen(typ(g.pick(int(tNull)+1)), d))
		case 2:
			return fmt.Sprintf("(%s && %s)", g.gen(tBool, d), g.gen(tBool, d))
		case 3:
			return fmt.Sprintf("(%s || %s)", g.gen(tBool, d), g.gen(tBool, d))
		case 4:
			return fmt.Sprintf("(!%s)", g.gen(tBool, d))
		case 5:
			return fmt.Sprintf("(%s -> %s)", g.gen(tBool, d), g.gen(tBool, d))
		case 6:
			return fmt.Sprintf("(%s ? %s)", g.gen(tAttrs, d), attrNames[g.pick(len(attrNames))])
		case 7:
			return fmt.Sprintf("(builtins.elem %s %s)", g.gen(tInt, d), g.gen(tList, d))
		case 8:
			return fmt.Sprintf("(%s <= %s)", g.gen(tString, d), g.gen(tString, d))
		case 9:
			return fmt.Sprintf("(builtins.isString %s)", g.gen(typ(g.pick(int(tNull)+1)), d))
		case 10:
			return fmt.Sprintf("(builtins.all (e: e > %s) %s)", g.smallInt(), g.gen(tList, d))
		default:
			return fmt.Sprintf("(%s >= %s)", g.gen(tFloat, d), g.gen(tInt, d))
		}
	case tString:
		switch g.pick(13) {
		case 0:
			return fmt.Sprintf("(%s + %s)", g.gen(tString, d), g.gen(tString, d))
		case 1:
			return fmt.Sprintf(`"<${%s}>"`, g.gen(tString, d))
		case 2:
			return fmt.Sprintf("(toString %s)", g.gen(typ(g.pick(int(tNull)+1)), d))
		case 3:
			return fmt.Sprintf("(builtins.substring %d %d %s)", g.pick(5), g.pick(8)-1, g.gen(tString, d))
		case 4:
			return fmt.Sprintf("(builtins.concatStringsSep %s %s)", g.gen(tString, d), g.gen(tStrList, d))
		case 5:
			return fmt.Sprintf(`(builtins.replaceStrings [ "a" "o" "" ] [ "A" %s "-" ] %s)`, g.gen(tString, d), g.gen(tString, d))
		case 6:
			return fmt.Sprintf("(builtins.toJSON %s)", g.gen(typ(g.pick(int(tNull)+1)), d))
		case 7:
			return fmt.Sprintf("(builtins.typeOf %s)", g.gen(typ(g.pick(int(numTypes))), d))
		case 8:
			return fmt.Sprintf(`(builtins.hashString "sha256" %s)`, g.gen(tString, d))
		case 9:
			return fmt.Sprintf("''\n  line ${%s}\n    more\n''", g.gen(tString, d))
		case 10:
			return fmt.Sprintf("(builtins.elemAt (builtins.splitVersion %s ++ [ \"z\" ]) 0)", g.gen(tString, d))
		case 11:
			return fmt.Sprintf("(builtins.unsafeDiscardStringContext %s)", g.gen(tString, d))
		default:
			return fmt.Sprintf("(builtins.toXML %s)", g.gen(typ(g.pick(int(tNull)+1)), d))
		}
	case tFloat:
		switch g.pick(5) {
		case 0:
			return fmt.Sprintf("(%s + %s)", g.gen(tFloat, d), g.gen(tInt, d))
		case 1:
			return fmt.Sprintf("(%s * %s)", g.gen(tFloat, d), g.gen(tFloat, d))
		case 2:
			return fmt.Sprintf("(%s / %s)", g.gen(tInt, d), floatLits[g.pick(5)])
		case 3:
			return fmt.Sprintf("(%s - %s)", g.gen(tFloat, d), g.gen(tFloat, d))
		default:
			return fmt.Sprintf("(builtins.fromJSON (builtins.toJSON %s))", g.gen(tFloat, d))
		}
	case tList:
		switch g.pick(9) {
		case 0:
			return fmt.Sprintf("(%s ++ %s)", g.gen(tList, d), g.gen(tList, d))
		case 1:
			n := g.name()
			return fmt.Sprintf("(map (%s: %s) %s)", n, g.with(binding{n, tInt}, func() string { return g.gen(tInt, d) }), g.gen(tList, d))
		case 2:
			return fmt.Sprintf("(builtins.filter (e: e > %s) %s)", g.smallInt(), g.gen(tList, d))
		case 3:
			return fmt.Sprintf("(builtins.genList (i: i * %s) %d)", g.smallInt(), g.pick(6))
		case 4:
			return fmt.Sprintf("(builtins.sort builtins.lessThan %s)", g.gen(tList, d))
		case 5:
			return fmt.Sprintf("(builtins.sort (a: b: a > b) %s)", g.gen(tList, d))
		case 6:
			return fmt.Sprintf("(builtins.attrValues %s)", g.gen(tAttrs, d))
		case 7:
			return fmt.Sprintf("(builtins.concatLists [ %s %s ])", g.gen(tList, d), g.gen(tList, d))
		default:
			return fmt.Sprintf("(builtins.tail ([ %s ] ++ %s))", g.gen(tInt, d), g.gen(tList, d))
		}
	case tStrList:
		switch g.pick(5) {
		case 0:
			return fmt.Sprintf("(builtins.attrNames %s)", g.gen(tAttrs, d))
		case 1:
			return fmt.Sprintf("(map toString %s)", g.gen(tList, d))
		case 2:
			return fmt.Sprintf("(builtins.splitVersion %s)", g.gen(tString, d))
		case 3:
			return fmt.Sprintf("(builtins.filter builtins.isString (builtins.split %s %s))", regexes[g.pick(len(regexes))], g.gen(tString, d))
		default:
			return fmt.Sprintf("(%s ++ %s)", g.gen(tStrList, d), g.gen(tStrList, d))
		}
	case tAttrs:
		switch g.pick(8) {
		case 0:
			return fmt.Sprintf("(%s // %s)", g.gen(tAttrs, d), g.gen(tAttrs, d))
		case 1:
			n := g.name()
			return fmt.Sprintf("(builtins.mapAttrs (name: %s: %s) %s)", n, g.with(binding{n, tInt}, func() string { return g.gen(tInt, d) }), g.gen(tAttrs, d))
		case 2:
			return fmt.Sprintf("(builtins.removeAttrs %s [ \"a\" \"x\" ])", g.gen(tAttrs, d))
		case 3:
			return fmt.Sprintf("(builtins.listToAttrs (map (e: { name = toString e; value = e; }) %s))", g.gen(tList, d))
		case 4:
			return fmt.Sprintf("(builtins.intersectAttrs %s %s)", g.gen(tAttrs, d), g.gen(tAttrs, d))
		case 5:
			return fmt.Sprintf("(rec { a = %s; b = a + 1; })", g.gen(tInt, d))
		case 6:
			return fmt.Sprintf("({ %s = %s; } // { ${%s} = %s; })", attrNames[g.pick(len(attrNames))], g.gen(tInt, d), g.gen(tString, d), g.gen(tInt, d))
		default:
			return g.attrsLit(d)
		}
	case tFun:
		n := g.name()
		return fmt.Sprintf("(%s: %s)", n, g.with(binding{n, tInt}, func() string { return g.gen(tInt, d) }))
	case tNested:
		switch g.pick(4) {
		case 0:
			var parts []string
			for i := g.pick(4); i > 0; i-- {
				parts = append(parts, g.gen(typ(g.pick(int(numTypes))), d))
			}
			return "[ " + strings.Join(parts, " ") + " ]"
		case 1:
			var b strings.Builder
			b.WriteString("{ ")
			seen := map[string]bool{}
			for i := g.pick(4); i > 0; i-- {
				n := attrNames[g.pick(len(attrNames))]
				if seen[n] {
					continue
				}
				seen[n] = true
				b.WriteString(n + " = " + g.gen(typ(g.pick(int(numTypes))), d) + "; ")
			}
			b.WriteString("}")
			return b.String()
		case 2:
			return fmt.Sprintf("(let m = builtins.match %s %s; in if m == null then [ ] else m)", matchRegexes[g.pick(len(matchRegexes))], g.gen(tString, d))
		default:
			return fmt.Sprintf("{ inherit (%s) %s; l = %s; }", g.attrsLit(d), "a", g.gen(tNested, d))
		}
	}
	return g.leaf(t)
}

var withNames = []string{"a", "b", "x"}

var matchRegexes = []string{`"(a|b)+([0-9]*)"`, `"([^ ]*) (.*)"`, `"(.)(.*)"`, `"[[:alpha:]]*"`, `"(.*)\\.(.*)"`, `"x?(y)?"`}

var regexes = []string{`"a"`, `"(o)"`, `"[0-9]+"`, `"\\."`, `"(a|b)*"`, `"[^a-z]"`, `" "`, `"x*"`}

func (g *Generator) attrsLit(d int) string {
	var b strings.Builder
	b.WriteString("{ ")
	seen := map[string]bool{}
	for i := g.pick(4); i > 0; i-- {
		n := attrNames[g.pick(len(attrNames))]
		if seen[n] {
			continue
		}
		seen[n] = true
		b.WriteString(n + " = " + g.gen(tInt, d) + "; ")
	}
	b.WriteString("}")
	return b.String()
}

func (g *Generator) leaf(t typ) string {
	if v, ok := g.varOf(t); ok && g.pick(2) == 0 {
		return v
	}
	switch t {
	case tInt:
		return g.smallInt()
	case tBool:
		return []string{"true", "false"}[g.pick(2)]
	case tString:
		return strLits[g.pick(len(strLits))]
	case tFloat:
		return floatLits[g.pick(len(floatLits))]
	case tList:
		var parts []string
		for i := g.pick(4); i > 0; i-- {
			parts = append(parts, g.smallInt())
		}
		return "[ " + strings.Join(parts, " ") + " ]"
	case tStrList:
		var parts []string
		for i := g.pick(3); i > 0; i-- {
			parts = append(parts, strLits[g.pick(len(strLits))])
		}
		return "[ " + strings.Join(parts, " ") + " ]"
	case tAttrs:
		return g.attrsLit(0)
	case tNull:
		return "null"
	case tFun:
		return []string{"(x: x)", "(x: x + 1)", "(x: 2 * x)", "(builtins.add 3)", "(builtins.sub 1)"}[g.pick(5)]
	case tNested:
		return []string{"[ ]", "{ }", "[ [ ] { } null ]", `{ a = [ 1 "x" ]; "b c" = { d = null; }; }`}[g.pick(4)]
	}
	return "null"
}
