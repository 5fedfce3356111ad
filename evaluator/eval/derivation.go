package eval

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"strings"
	"unsafe"

	"github.com/castor-nix/castor/evaluator/evalio"
	"github.com/castor-nix/castor/evaluator/syntax"
	"github.com/castor-nix/castor/store/derivation"
	"github.com/castor-nix/castor/store/nixpath"
)

// derivationNix is builtins.derivation, the Nix code Nix 2.8 wraps around
// derivationStrict. It is parsed under the name Nix gives it, so that
// positions (unsafeGetAttrPos, error traces) read as Nix's do.
//
//go:embed builtin/derivation.nix
var derivationNix []byte

const derivationNixPath = "//builtin/derivation.nix"

// derivationCode is the code of the thunk bound to `derivation`: it
// compiles derivation.nix in the global scope the first time the
// evaluator needs it.
type derivationCode struct{}

func (derivationCode) eval(ev *Evaluator, _ *Env) Value {
	f := ev.fset.AddFile(derivationNixPath, derivationNixPath, derivationNix)
	f.NoExcerpt = true
	root, err := syntax.Parse(f, syntax.Options{BaseDir: "/", Home: ev.home})
	if err != nil {
		panic(err) // the embedded source parses; a failure is a bug
	}
	c := &compiler{ev: ev, file: f}
	return c.compile(root, ev.baseScope).eval(ev, ev.baseEnv)
}

// inDerivationNix reports whether pos is in derivation.nix.
func (ev *Evaluator) inDerivationNix(pos syntax.Pos) bool {
	p := ev.fset.Position(pos)
	return p.File != nil && p.File.Name == derivationNixPath
}

// Experimental features of Nix 2.8 that castor does not have; Nix 2.8
// refuses them the same way unless they are enabled.
const (
	errCADerivations     = "experimental Nix feature 'ca-derivations' is disabled; use '--extra-experimental-features ca-derivations' to override"
	errImpureDerivations = "experimental Nix feature 'impure-derivations' is disabled; use '--extra-experimental-features impure-derivations' to override"
)

// drvState is what derivationStrict accumulates while it walks the
// attributes.
type drvState struct {
	drv        *derivation.Derivation
	ctx        ctxBuilder
	json       []byte
	structured bool
	outputs    []string // sorted, unique
	hash       *string  // outputHash, if given
	hashAlgo   string
	recursive  bool // outputHashMode = "recursive"
	posName    syntax.Pos
}

func init() {
	def1("derivationStrict", true, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		return ev.derivationStrict(pos, a)
	})
}

// withTrace runs f with a trace line on the evaluator's stack, so that an
// error inside f reports it.
func (ev *Evaluator) withTrace(pos syntax.Pos, msg string, f func()) {
	ev.push(frame{kind: frMsg, pos: pos, p: unsafe.Pointer(&msg)})
	f()
	ev.frames = ev.frames[:len(ev.frames)-1]
}

// derivationStrict is Nix 2.8's prim_derivationStrict: it turns the
// attributes into a derivation (environment, arguments, inputs from the
// string contexts, outputs), computes its output paths, writes the .drv
// through the store and returns { drvPath; <output> = path; … } with the
// contexts that make later derivations depend on it.
func (ev *Evaluator) derivationStrict(pos syntax.Pos, a Value) Value {
	args := ev.forceAttrs(a, pos)
	nameAttr := lookupAttr(args.attrs(), symName)
	if nameAttr == nil {
		ev.missingFor(pos, "derivationStrict", symName)
	}
	st := &drvState{posName: nameAttr.Pos, outputs: []string{"out"}}
	var drvName string
	ev.withTrace(st.posName, "while evaluating the derivation attribute 'name'", func() {
		drvName = ev.forceStringNoCtx(nameAttr.Val, pos)
	})
	if at := lookupAttr(args.attrs(), ev.intern("__structuredAttrs")); at != nil {
		st.structured = ev.forceBool(at.Val, pos)
	}
	ignoreNulls := false
	if at := lookupAttr(args.attrs(), symIgnoreNulls); at != nil {
		ignoreNulls = ev.forceBool(at.Val, pos)
	}
	st.drv = &derivation.Derivation{
		Name:             drvName,
		Outputs:          map[string]derivation.Output{},
		InputDerivations: map[string][]string{},
		Env:              map[string]string{},
	}
	if st.structured {
		st.json = append(st.json, '{')
	}
	for _, at := range ev.sortedAttrs(args) {
		if at.Name == symIgnoreNulls {
			continue
		}
		key := ev.syms.name(at.Name)
		ev.withTrace(st.posName, "while evaluating the attribute '"+key+"' of the derivation '"+drvName+"'", func() {
			if ignoreNulls && ev.force(at.Val).k == kNull {
				return
			}
			ev.drvAttr(st, pos, key, at)
		})
	}
	d := st.drv
	if st.structured {
		d.Env["__json"] = string(append(st.json, '}'))
	}
	ev.drvInputs(st)

	if d.Builder == "" {
		ev.throw(ErrEval, st.posName, "required attribute 'builder' missing")
	}
	if d.System == "" {
		ev.throw(ErrEval, st.posName, "required attribute 'system' missing")
	}
	if strings.HasSuffix(drvName, ".drv") {
		ev.throw(ErrEval, st.posName, "derivation names are not allowed to end in '.drv'")
	}

	if st.hash != nil {
		if len(st.outputs) != 1 || st.outputs[0] != "out" {
			ev.throw(ErrEval, st.posName, "multiple outputs are not supported in fixed-output derivations")
		}
		h, err := ev.newHashAllowEmpty(*st.hash, st.hashAlgo)
		if err != nil {
			ev.throw(ErrEval, syntax.NoPos, "%s", err.Error())
		}
		prefix := ""
		if st.recursive {
			prefix = "r:"
		}
		d.Outputs["out"] = derivation.Output{HashAlgo: prefix + h.algo, Hash: hex.EncodeToString(h.digest)}
		if p := evalio.NameProblem(drvName); p != "" {
			ev.throw(ErrEval, syntax.NoPos, "%s", (&evalio.NameError{Base: fixedOutputBase(h, st.recursive, drvName), Reason: p}).Error())
		}
	} else {
		// Deferred outputs: the hash modulo masks their paths and the
		// variables named after them.
		for _, o := range st.outputs {
			d.Outputs[o] = derivation.Output{}
			d.Env[o] = ""
		}
		ev.checkOutputNames(d)
	}
	if err := ev.drvHasher().FillOutputPaths(ev.ctx, d); err != nil {
		ev.storeError(err, syntax.NoPos, "computing the output paths of '%s'", drvName)
	}

	// Write the .drv: a text file referring to its inputs.
	aterm := d.Bytes()
	refs := append(slices.Clone(d.InputSources), slices.Sorted(maps.Keys(d.InputDerivations))...)
	slices.Sort(refs)
	ev.checkName(evalio.CheckTextName(drvName+".drv", sha256.Sum256(aterm), refs))
	drvPath, err := ev.store.AddText(ev.ctx, drvName+".drv", string(aterm), refs)
	if err != nil {
		ev.storeError(err, syntax.NoPos, "writing the derivation '%s'", drvName)
	}
	ev.drvs[drvPath] = d
	ev.log.Debug("instantiated derivation", "name", drvName, "drv", drvPath)

	out := make([]Attr, 0, 1+len(d.Outputs))
	out = append(out, Attr{Name: symDrvPath, Val: StrCtx(drvPath, Context{"=" + drvPath})})
	for _, o := range d.OutputNames() {
		out = append(out, Attr{Name: ev.intern(o), Val: StrCtx(d.Outputs[o].Path, Context{"!" + o + "!" + drvPath})})
	}
	return ev.mkAttrs(out...)
}

// drvAttr handles one attribute of derivationStrict's argument.
func (ev *Evaluator) drvAttr(st *drvState, pos syntax.Pos, key string, at Attr) {
	d := st.drv
	switch key {
	case "__contentAddressed":
		if ev.forceBool(at.Val, pos) {
			ev.throw(ErrEval, syntax.NoPos, errCADerivations)
		}
		return
	case "__impure":
		if ev.forceBool(at.Val, pos) {
			ev.throw(ErrEval, syntax.NoPos, errImpureDerivations)
		}
		return
	case "args":
		for _, e := range ev.forceList(at.Val, pos).list() {
			d.Args = append(d.Args, ev.coerceToString(st.posName, e, &st.ctx, true, true, true))
		}
		return
	}
	if !st.structured {
		s := ev.coerceToString(at.Pos, at.Val, &st.ctx, true, true, true)
		d.Env[key] = s
		switch key {
		case "builder":
			d.Builder = s
		case "system":
			d.System = s
		case "outputHash":
			st.hash = &s
		case "outputHashAlgo":
			st.hashAlgo = s
		case "outputHashMode":
			ev.drvHashMode(st, s)
		case "outputs":
			ev.drvOutputs(st, tokenize(s, " \t\n\r"))
		}
		return
	}
	if key == "__structuredAttrs" {
		return
	}
	if len(st.json) > 1 {
		st.json = append(st.json, ',')
	}
	st.json = appendJSONString(st.json, key)
	st.json = append(st.json, ':')
	st.json = ev.appendJSON(st.json, at.Val, true, pos, &st.ctx)
	switch key {
	case "builder":
		v := ev.forceString(at.Val, st.posName)
		st.ctx.add(v.ctx())
		d.Builder = v.str()
	case "system":
		d.System = ev.forceStringNoCtx(at.Val, st.posName)
	case "outputHash":
		s := ev.forceStringNoCtx(at.Val, st.posName)
		st.hash = &s
	case "outputHashAlgo":
		st.hashAlgo = ev.forceStringNoCtx(at.Val, st.posName)
	case "outputHashMode":
		ev.drvHashMode(st, ev.forceStringNoCtx(at.Val, st.posName))
	case "outputs":
		var names []string
		for _, e := range ev.forceList(at.Val, st.posName).list() {
			names = append(names, ev.forceStringNoCtx(e, st.posName))
		}
		ev.drvOutputs(st, names)
	}
}

func (ev *Evaluator) drvHashMode(st *drvState, s string) {
	switch s {
	case "recursive":
		st.recursive = true
	case "flat":
		st.recursive = false
	default:
		ev.throw(ErrEval, st.posName, "invalid value '%s' for 'outputHashMode' attribute", s)
	}
}

func (ev *Evaluator) drvOutputs(st *drvState, names []string) {
	var outs []string
	for _, n := range names {
		if slices.Contains(outs, n) {
			ev.throw(ErrEval, st.posName, "duplicate derivation output '%s'", n)
		}
		// An output called drv would clash with the drvPath attribute.
		if n == "drv" {
			ev.throw(ErrEval, st.posName, "invalid derivation output name 'drv'")
		}
		outs = append(outs, n)
	}
	if len(outs) == 0 {
		ev.throw(ErrEval, st.posName, "derivation cannot have an empty set of outputs")
	}
	slices.Sort(outs)
	st.outputs = outs
}

// tokenize splits s at runs of the separator bytes, as Nix's
// tokenizeString does (only those bytes, not all Unicode spaces).
func tokenize(s, seps string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r < 0x80 && strings.ContainsRune(seps, r) })
}

// drvInputs turns the context of the derivation's strings into its
// inputs: "=drv" brings the drv's whole closure (every path as a source,
// every derivation in it with all its outputs), "!out!drv" one output of
// a derivation, a plain path itself.
func (ev *Evaluator) drvInputs(st *drvState) {
	d := st.drv
	srcs := map[string]bool{}
	addOutputs := func(drvPath string, outs ...string) {
		cur := d.InputDerivations[drvPath]
		for _, o := range outs {
			if !slices.Contains(cur, o) {
				cur = append(cur, o)
			}
		}
		slices.Sort(cur)
		d.InputDerivations[drvPath] = cur
	}
	for _, e := range st.ctx.result() {
		switch e[0] {
		case '=':
			for _, p := range ev.storeClosure(e[1:]) {
				srcs[p] = true
				if strings.HasSuffix(p, ".drv") {
					addOutputs(p, ev.readDerivation(p).OutputNames()...)
				}
			}
		case '!':
			i := strings.IndexByte(e[1:], '!')
			if i < 0 {
				ev.throw(ErrEval, syntax.NoPos, "invalid string context element '%s'", e)
			}
			drvPath := e[i+2:]
			ev.parseStorePath(drvPath)
			addOutputs(drvPath, e[1:i+1])
		default:
			ev.parseStorePath(e)
			srcs[e] = true
		}
	}
	d.InputSources = slices.Sorted(maps.Keys(srcs))
}

func (ev *Evaluator) parseStorePath(p string) {
	if _, err := nixpath.ParseAbsolute(p); err != nil {
		ev.throw(ErrEval, syntax.NoPos, "path '%s' is not a valid store path: %v", p, err)
	}
}

// storeClosure is Nix's computeFSClosure: p and everything it refers to,
// directly or not, sorted.
func (ev *Evaluator) storeClosure(p string) []string {
	seen := map[string]bool{p: true}
	queue := []string{p}
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		refs, err := ev.store.References(ev.ctx, x)
		if err != nil {
			ev.storeError(err, syntax.NoPos, "querying the references of '%s'", x)
		}
		for _, r := range refs {
			if !seen[r] {
				seen[r] = true
				queue = append(queue, r)
			}
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// readDerivation returns the derivation at drvPath: one this evaluation
// made, or one read from the store.
func (ev *Evaluator) readDerivation(drvPath string) *derivation.Derivation {
	d, err := drvSource{ev}.Derivation(ev.ctx, drvPath)
	if err != nil {
		ev.storeError(err, syntax.NoPos, "reading the derivation '%s'", drvPath)
	}
	return d
}

// drvSource gives the Hasher the derivations this evaluation made (which
// a store-less evaluation never writes), and reads others from the store.
type drvSource struct{ ev *Evaluator }

var _ derivation.Source = drvSource{}

func (s drvSource) Derivation(ctx context.Context, drvPath string) (*derivation.Derivation, error) {
	if d, ok := s.ev.drvs[drvPath]; ok {
		return d, nil
	}
	b, err := s.ev.store.ReadFile(ctx, drvPath)
	if err != nil {
		return nil, err
	}
	return derivation.Load(drvPath, b)
}

func (ev *Evaluator) drvHasher() *derivation.Hasher {
	if ev.hasher == nil {
		ev.hasher = derivation.NewHasher(drvSource{ev})
	}
	return ev.hasher
}

// storeError raises an error from the store or the derivation code:
// cancellation as such, the store's own words (which are Nix's) for
// paths that are not valid, and otherwise what was being done and why.
func (ev *Evaluator) storeError(err error, pos syntax.Pos, what string, args ...any) {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		panic(err)
	}
	var e *Error
	if errors.As(err, &e) {
		panic(e)
	}
	if errors.Is(err, evalio.ErrNotValid) {
		panic(&Error{Kind: ErrEval, Msg: err.Error(), Pos: pos, Cause: err, fset: ev.fset})
	}
	panic(&Error{Kind: ErrEval, Msg: sprintf(what, args...) + ": " + err.Error(), Pos: pos, Cause: err, fset: ev.fset})
}

// Store path names are checked here, with Nix's messages (which quote the
// whole base name, hash included), before the store computes the paths.

// checkOutputNames checks the names of an input-addressed derivation's
// output paths.
func (ev *Evaluator) checkOutputNames(d *derivation.Derivation) {
	for _, o := range d.OutputNames() {
		name := derivation.OutputPathName(d.Name, o)
		p := evalio.NameProblem(name)
		if p == "" {
			continue
		}
		hashes, err := ev.drvHasher().HashModulo(ev.ctx, d, true)
		if err != nil {
			ev.storeError(err, syntax.NoPos, "hashing the derivation '%s'", d.Name)
		}
		ev.throw(ErrEval, syntax.NoPos, "%s", (&evalio.NameError{Base: evalio.StoreBase("output:"+o, hashes[o], name), Reason: p}).Error())
	}
}

// checkName raises a *evalio.NameError as an evaluation error.
func (ev *Evaluator) checkName(err error) {
	if err != nil {
		ev.throw(ErrEval, syntax.NoPos, "%s", err.Error())
	}
}

// fixedOutputBase is the base name of a fixed output path, for messages.
func fixedOutputBase(h nixHash, recursive bool, name string) string {
	var d [sha256.Size]byte
	if recursive && h.algo == "sha256" {
		copy(d[:], h.digest)
		return evalio.StoreBase("source", d, name)
	}
	r := ""
	if recursive {
		r = "r:"
	}
	return evalio.StoreBase("output:out", sha256.Sum256([]byte("fixed:out:"+r+h.algo+":"+hex.EncodeToString(h.digest)+":")), name)
}
