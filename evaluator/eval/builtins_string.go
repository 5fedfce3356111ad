package eval

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
	"strconv"
	"strings"

	"github.com/castor-nix/castor/evaluator/syntax"
	"github.com/nix-community/go-nix/pkg/nixbase32"
)

func newHash(ev *Evaluator, algo string, pos syntax.Pos) hash.Hash {
	switch algo {
	case "md5":
		return md5.New()
	case "sha1":
		return sha1.New()
	case "sha256":
		return sha256.New()
	case "sha512":
		return sha512.New()
	}
	ev.throw(ErrEval, pos, "unknown hash type '%s'", algo)
	return nil
}

// baseNameOf is Nix's baseNameOf: the last component, ignoring one
// trailing slash.
func baseNameOf(p string) string {
	if p == "" {
		return ""
	}
	last := len(p) - 1
	if p[last] == '/' && last > 0 {
		last--
	}
	i := strings.LastIndexByte(p[:last+1], '/')
	return p[i+1 : last+1]
}

// dirOf is Nix's dirOf.
func dirOf(p string) string {
	i := strings.LastIndexByte(p, '/')
	switch {
	case i < 0:
		return "."
	case i == 0:
		return "/"
	}
	return p[:i]
}

func init() {
	def1("toString", true, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		var ctx ctxBuilder
		s := ev.coerceToString(pos, a, &ctx, true, false, true)
		return StrCtx(s, ctx.result())
	})
	def1("stringLength", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		var ctx ctxBuilder
		return Int(int64(len(ev.coerceToString(pos, a, &ctx, false, true, true))))
	})
	def3("substring", false, func(ev *Evaluator, pos syntax.Pos, a, b, c Value) Value {
		// Nix 2.8 reads start and length into C ints.
		start := int32(ev.forceInt(a, pos))
		length := int32(ev.forceInt(b, pos))
		var ctx ctxBuilder
		s := ev.coerceToString(pos, c, &ctx, false, true, true)
		if start < 0 {
			ev.throw(ErrEval, pos, "negative start position in 'substring'")
		}
		if int(start) >= len(s) {
			return StrCtx("", ctx.result())
		}
		end := len(s)
		if length >= 0 && int(start)+int(length) < end {
			end = int(start) + int(length)
		}
		return StrCtx(s[start:end], ctx.result())
	})
	def2("concatStringsSep", false, func(ev *Evaluator, pos syntax.Pos, sep, l Value) Value {
		var ctx ctxBuilder
		sv := ev.forceString(sep, pos)
		ctx.add(sv.ctx())
		list := ev.forceList(l, pos)
		var b strings.Builder
		for i, e := range list.list() {
			if i > 0 {
				b.WriteString(sv.str())
			}
			b.WriteString(ev.coerceToString(pos, e, &ctx, false, true, true))
		}
		return StrCtx(b.String(), ctx.result())
	})
	def3("replaceStrings", false, func(ev *Evaluator, pos syntax.Pos, fromV, toV, sV Value) Value {
		fl := ev.forceList(fromV, pos)
		tl := ev.forceList(toV, pos)
		if fl.n != tl.n {
			ev.throw(ErrEval, pos, "'from' and 'to' arguments to 'replaceStrings' have different lengths")
		}
		from := make([]string, fl.n)
		for i, e := range fl.list() {
			from[i] = ev.forceString(e, pos).str()
		}
		to := make([]Value, tl.n)
		for i, e := range tl.list() {
			to[i] = ev.forceString(e, pos)
		}
		used := make([]bool, len(to))
		var ctx ctxBuilder
		sv := ev.forceString(sV, pos)
		ctx.add(sv.ctx())
		s := sv.str()
		var b strings.Builder
		for p := 0; p <= len(s); {
			found := false
			for i, f := range from {
				if strings.HasPrefix(s[p:], f) {
					found = true
					b.WriteString(to[i].str())
					if f == "" {
						if p < len(s) {
							b.WriteByte(s[p])
						}
						p++
					} else {
						p += len(f)
					}
					if !used[i] {
						ctx.add(to[i].ctx())
						used[i] = true
					}
					break
				}
			}
			if !found {
				if p < len(s) {
					b.WriteByte(s[p])
				}
				p++
			}
		}
		return StrCtx(b.String(), ctx.result())
	})
	def1("baseNameOf", true, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		var ctx ctxBuilder
		s := ev.coerceToString(pos, a, &ctx, false, false, true)
		return StrCtx(baseNameOf(s), ctx.result())
	})
	def1("dirOf", true, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		a = ev.force(a)
		var ctx ctxBuilder
		s := ev.coerceToString(pos, a, &ctx, false, false, true)
		if a.k == kPath {
			return Path(dirOf(s))
		}
		return StrCtx(dirOf(s), ctx.result())
	})
	def1("toPath", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		var ctx ctxBuilder
		p := ev.coerceToPath(pos, a, &ctx)
		return StrCtx(syntax.CanonPath(p), ctx.result())
	})
	def2("hashString", false, func(ev *Evaluator, pos syntax.Pos, algo, s Value) Value {
		h := newHash(ev, ev.forceStringNoCtx(algo, pos), pos)
		h.Write([]byte(ev.forceString(s, pos).str()))
		return Str(hex.EncodeToString(h.Sum(nil)))
	})
	def2("match", false, func(ev *Evaluator, pos syntax.Pos, reV, sV Value) Value {
		re := ev.forceStringNoCtx(reV, pos)
		r, err := ev.compileRegex(re)
		if err != nil {
			ev.throw(ErrEval, pos, "invalid regular expression '%s'", re)
		}
		s := ev.forceString(sV, pos).str()
		subs, matched, ok := r.matchFull(s)
		if !ok {
			return Null
		}
		out := make([]Value, len(subs))
		for i := range subs {
			if matched[i] {
				out[i] = Str(subs[i])
			} else {
				out[i] = Null
			}
		}
		return listValue(out)
	})
	def2("split", false, func(ev *Evaluator, pos syntax.Pos, reV, sV Value) Value {
		re := ev.forceStringNoCtx(reV, pos)
		r, err := ev.compileRegex(re)
		if err != nil {
			ev.throw(ErrEval, pos, "invalid regular expression '%s'", re)
		}
		sv := ev.forceString(sV, pos)
		s := sv.str()
		ms := r.findAll(s)
		if len(ms) == 0 {
			return listValue([]Value{sv})
		}
		out := make([]Value, 0, 2*len(ms)+1)
		prev := 0
		for _, m := range ms {
			out = append(out, Str(s[prev:m[0]]))
			groups := make([]Value, r.ncap)
			for g := 0; g < r.ncap; g++ {
				if m[2*g+2] < 0 {
					groups[g] = Null
				} else {
					groups[g] = Str(s[m[2*g+2]:m[2*g+3]])
				}
			}
			out = append(out, listValue(groups))
			prev = m[1]
		}
		out = append(out, Str(s[prev:]))
		return listValue(out)
	})
	def2("compareVersions", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value {
		return Int(int64(compareVersions(ev.forceStringNoCtx(a, pos), ev.forceStringNoCtx(b, pos))))
	})
	def1("splitVersion", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		v := ev.forceStringNoCtx(a, pos)
		var comps []string
		for p := 0; p < len(v); {
			c := nextComponent(v, &p)
			if c == "" {
				break
			}
			comps = append(comps, c)
		}
		return strList(comps)
	})
	def1("parseDrvName", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		s := ev.forceStringNoCtx(a, pos)
		name, version := s, ""
		for i := 0; i < len(s); i++ {
			if s[i] == '-' && i+1 < len(s) && !isAlpha(s[i+1]) {
				name, version = s[:i], s[i+1:]
				break
			}
		}
		return ev.mkAttrs(Attr{Name: symName, Val: Str(name)}, Attr{Name: symVersion, Val: Str(version)})
	})
	def1("toJSON", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		var ctx ctxBuilder
		b := ev.appendJSON(nil, a, true, pos, &ctx)
		return StrCtx(string(b), ctx.result())
	})
	def1("fromJSON", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		return ev.fromJSON(ev.forceStringNoCtx(a, pos), pos)
	})
	def1("toXML", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		var ctx ctxBuilder
		var b stringsBuilder
		ev.writeXML(&b, a, true, false, &ctx)
		return StrCtx(string(b), ctx.result())
	})
	def1("placeholder", true, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		sum := sha256.Sum256([]byte("nix-output:" + ev.forceStringNoCtx(a, pos)))
		return Str("/" + nixbase32.EncodeToString(sum[:]))
	})

	// String contexts.
	def1("unsafeDiscardStringContext", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		var ctx ctxBuilder
		return Str(ev.coerceToString(pos, a, &ctx, false, true, true))
	})
	def1("unsafeDiscardOutputDependency", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		var ctx ctxBuilder
		s := ev.coerceToString(pos, a, &ctx, false, true, true)
		var out []string
		for _, e := range ctx.result() {
			out = append(out, strings.TrimPrefix(e, "="))
		}
		return StrCtx(s, newContext(out...))
	})
	def1("hasContext", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		return Bool(len(ev.forceString(a, pos).ctx()) > 0)
	})
	def1("getContext", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		s := ev.forceString(a, pos)
		type info struct {
			path, all bool
			outputs   []Value
		}
		infos := map[string]*info{}
		var order []string
		for _, e := range s.ctx() {
			var key, output string
			isPath, isAll := false, false
			switch {
			case strings.HasPrefix(e, "="):
				key, isAll = e[1:], true
			case strings.HasPrefix(e, "!"):
				i := strings.IndexByte(e[1:], '!')
				output, key = e[1:i+1], e[i+2:]
			default:
				key, isPath = e, true
			}
			in := infos[key]
			if in == nil {
				in = &info{}
				infos[key] = in
				order = append(order, key)
			}
			in.path = in.path || isPath
			in.all = in.all || isAll
			if output != "" {
				in.outputs = append(in.outputs, Str(output))
			}
		}
		out := make([]Attr, 0, len(order))
		for _, k := range order {
			in := infos[k]
			var as []Attr
			if in.path {
				as = append(as, Attr{Name: symPath, Val: True})
			}
			if in.all {
				as = append(as, Attr{Name: symAllOutputs, Val: True})
			}
			if len(in.outputs) > 0 {
				as = append(as, Attr{Name: symOutputs, Val: listValue(in.outputs)})
			}
			out = append(out, Attr{Name: ev.intern(k), Val: ev.mkAttrs(as...)})
		}
		sortAttrs(out)
		return attrsValue(out)
	})
	def2("appendContext", false, func(ev *Evaluator, pos syntax.Pos, a, b Value) Value {
		sv := ev.forceString(a, pos)
		var elems []string
		elems = append(elems, sv.ctx()...)
		storeDir := ev.store.StoreDir() + "/"
		for _, at := range ev.forceAttrs(b, pos).attrs() {
			name := ev.syms.name(at.Name)
			if !strings.HasPrefix(name, storeDir) || strings.Contains(name[len(storeDir):], "/") {
				ev.throw(ErrEval, at.Pos, "Context key '%s' is not a store path", name)
			}
			info := ev.forceAttrs(at.Val, at.Pos)
			if p := lookupAttr(info.attrs(), symPath); p != nil && ev.forceBool(p.Val, p.Pos) {
				elems = append(elems, name)
			}
			if p := lookupAttr(info.attrs(), symAllOutputs); p != nil && ev.forceBool(p.Val, p.Pos) {
				if !strings.HasSuffix(name, ".drv") {
					ev.throw(ErrEval, at.Pos, "Tried to add all-outputs context of %s, which is not a derivation, to a string", name)
				}
				elems = append(elems, "="+name)
			}
			if p := lookupAttr(info.attrs(), symOutputs); p != nil {
				outs := ev.forceList(p.Val, p.Pos)
				if outs.n > 0 && !strings.HasSuffix(name, ".drv") {
					ev.throw(ErrEval, at.Pos, "Tried to add derivation output context of %s, which is not a derivation, to a string", name)
				}
				for _, o := range outs.list() {
					elems = append(elems, "!"+ev.forceStringNoCtx(o, p.Pos)+"!"+name)
				}
			}
		}
		return StrCtx(sv.str(), newContext(elems...))
	})
}

func isAlpha(c byte) bool     { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigitByte(c byte) bool { return c >= '0' && c <= '9' }

// nextComponent returns the next version component of v from *p: a run of
// digits or a run of other characters, skipping '.' and '-' separators.
func nextComponent(v string, p *int) string {
	i := *p
	for i < len(v) && (v[i] == '.' || v[i] == '-') {
		i++
	}
	if i >= len(v) {
		*p = i
		return ""
	}
	s := i
	if isDigitByte(v[i]) {
		for i < len(v) && isDigitByte(v[i]) {
			i++
		}
	} else {
		for i < len(v) && !isDigitByte(v[i]) && v[i] != '.' && v[i] != '-' {
			i++
		}
	}
	*p = i
	return v[s:i]
}

func componentInt(c string) (int, bool) {
	if c == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(c, 10, 32)
	return int(n), err == nil
}

func componentsLT(c1, c2 string) bool {
	n1, ok1 := componentInt(c1)
	n2, ok2 := componentInt(c2)
	switch {
	case ok1 && ok2:
		return n1 < n2
	case c1 == "" && ok2:
		return true
	case c1 == "pre" && c2 != "pre":
		return true
	case c2 == "pre":
		return false
	case ok2:
		return true
	case ok1:
		return false
	}
	return c1 < c2
}

// compareVersions is Nix's version comparison.
func compareVersions(v1, v2 string) int {
	p1, p2 := 0, 0
	for p1 < len(v1) || p2 < len(v2) {
		c1 := nextComponent(v1, &p1)
		c2 := nextComponent(v2, &p2)
		if componentsLT(c1, c2) {
			return -1
		}
		if componentsLT(c2, c1) {
			return 1
		}
	}
	return 0
}

func hexString(b []byte) string { return hex.EncodeToString(b) }
