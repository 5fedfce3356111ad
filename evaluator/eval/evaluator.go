package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/castor-nix/castor/evaluator/evalio"
	"github.com/castor-nix/castor/evaluator/syntax"
	"github.com/castor-nix/castor/store/derivation"
)

// Options configure an Evaluator.
type Options struct {
	// Store gives access to files and the Nix store; nil means
	// evalio.NewHost() (the host file system, store paths computed but
	// not written).
	Store evalio.Store
	// SearchPath is the Nix search path in lookup order: -I entries
	// first, then NIX_PATH's. Each entry is "prefix=path" or "path".
	SearchPath []string
	// LookupEnv reads environment variables for builtins.getEnv; nil
	// means os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// TraceOutput receives builtins.trace messages ("trace: …" lines);
	// nil means os.Stderr.
	TraceOutput io.Writer
	// Logger receives debug logs; nil means slog.Default().
	Logger *slog.Logger
	// CurrentSystem is builtins.currentSystem; empty means the host's
	// (x86_64-linux, aarch64-linux, …).
	CurrentSystem string
	// MaxDepth bounds the evaluator's call depth (function calls, thunks
	// being forced); past it evaluation fails with "stack overflow"
	// instead of exhausting the Go stack. 0 means DefaultMaxDepth.
	MaxDepth int
	// Home is the home directory for ~/ paths; empty means $HOME.
	Home string
	// NixVersion and LangVersion are what builtins.nixVersion and
	// builtins.langVersion report; empty/0 mean DefaultNixVersion and
	// DefaultLangVersion.
	NixVersion  string
	LangVersion int64
}

const (
	// DefaultNixVersion is reported as builtins.nixVersion. The language
	// implemented is Nix 2.8's with later fixes; the version is that of a
	// modern Nix so that version checks in Nix code pass.
	DefaultNixVersion = "2.18.0"
	// DefaultLangVersion is builtins.langVersion of modern Nix.
	DefaultLangVersion = 6
	// DefaultMaxDepth allows 10^5-deep non-tail recursion with room to
	// spare (it takes one to three frames per level). Nix 2.8 itself
	// overflows its C stack before 10^5; modern Nix stops at a call depth
	// of 10^4 by default.
	DefaultMaxDepth = 500_000
	// StackBytes is the Go stack limit EnsureStack sets: Go's ceiling
	// (twice its 1 GB default). A frame of the evaluator's own stack takes
	// about 1 KB of Go stack in typical code, so the default depth leaves
	// a fourfold margin.
	StackBytes = 2_000_000_000
)

// EnsureStack raises the Go stack limit of the process (debug.SetMaxStack)
// to what DefaultMaxDepth needs, if it is lower. Commands that evaluate
// call it once at start-up; a library cannot assume it.
func EnsureStack() {
	prev := debug.SetMaxStack(StackBytes)
	if prev > StackBytes {
		debug.SetMaxStack(prev)
	}
}

// TuneRuntime prepares the process for evaluation: EnsureStack, and unless
// $GOGC is set, a garbage-collection target of 400% (evaluation allocates
// many small, mostly long-lived objects; collecting less often roughly
// halves the time spent in the collector for a moderate memory cost).
func TuneRuntime() {
	EnsureStack()
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(400)
	}
}

// Evaluator evaluates Nix expressions. It is not safe for concurrent use;
// values it returns belong to it and must not be passed to another
// Evaluator.
type Evaluator struct {
	ctx      context.Context
	store    evalio.Store
	fset     *syntax.FileSet
	syms     *symtab
	frames   []frame
	maxDepth int
	ticks    uint64

	baseEnv   *Env
	baseScope *scope
	builtins  Value

	searchPath []searchPathEntry
	lookupEnv  func(string) (string, bool)
	traceOut   io.Writer
	log        *slog.Logger
	home       string
	system     string

	fileCache  map[string]Value
	parseCache map[string]code
	srcToStore map[string]string
	regexCache map[string]*nixRegex
	// drvs are the derivations this evaluation made, by .drv path; hasher
	// computes their hashes modulo (see derivation.go).
	drvs    map[string]*derivation.Derivation
	hasher  *derivation.Hasher
	envPool [maxPooledEnv + 1][]*Env
	// curThunk is the thunk whose code is starting to run (see listApplyCode).
	curThunk  *Thunk
	startTime int64
}

// New returns an Evaluator. ctx bounds every evaluation it runs: when ctx
// is canceled, evaluation stops with an error wrapping ErrCanceled.
func New(ctx context.Context, opts Options) *Evaluator {
	ev := &Evaluator{
		ctx:        ctx,
		store:      opts.Store,
		fset:       syntax.NewFileSet(),
		syms:       newSymtab(),
		maxDepth:   opts.MaxDepth,
		lookupEnv:  opts.LookupEnv,
		traceOut:   opts.TraceOutput,
		log:        opts.Logger,
		home:       opts.Home,
		system:     opts.CurrentSystem,
		fileCache:  map[string]Value{},
		parseCache: map[string]code{},
		srcToStore: map[string]string{},
		drvs:       map[string]*derivation.Derivation{},
		startTime:  time.Now().Unix(),
	}
	if ev.store == nil {
		ev.store = evalio.NewHost()
	}
	if ev.maxDepth <= 0 {
		ev.maxDepth = DefaultMaxDepth
	}
	if ev.lookupEnv == nil {
		ev.lookupEnv = os.LookupEnv
	}
	if ev.traceOut == nil {
		ev.traceOut = os.Stderr
	}
	if ev.log == nil {
		ev.log = slog.Default()
	}
	if ev.home == "" {
		ev.home = os.Getenv("HOME")
	}
	if ev.system == "" {
		ev.system = hostSystem()
	}
	nixVersion := opts.NixVersion
	if nixVersion == "" {
		nixVersion = DefaultNixVersion
	}
	langVersion := opts.LangVersion
	if langVersion == 0 {
		langVersion = DefaultLangVersion
	}
	for _, e := range opts.SearchPath {
		ev.searchPath = append(ev.searchPath, parseSearchPathEntry(e))
	}
	ev.initBuiltins(nixVersion, langVersion)
	return ev
}

func hostSystem() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "riscv64": "riscv64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return arch + "-" + runtime.GOOS
}

func (ev *Evaluator) intern(s string) Sym { return ev.syms.intern(s) }

// FileSet returns the positions of all sources the evaluator has read.
func (ev *Evaluator) FileSet() *syntax.FileSet { return ev.fset }

// posAttrs is { file, line, column } for pos, as __curPos and
// unsafeGetAttrPos return it.
func (ev *Evaluator) posAttrs(p syntax.Pos) Value {
	pos := ev.fset.Position(p)
	if !pos.IsValid() {
		return Null
	}
	// Nix 2.8 reports the source text itself as the "file" of an
	// expression that did not come from a file.
	file := pos.File.Path
	if file == "" {
		file = string(pos.File.Src)
	}
	return ev.mkAttrs(
		Attr{Name: symFile, Val: Str(file)},
		Attr{Name: symLine, Val: Int(int64(pos.Line))},
		Attr{Name: symColumn, Val: Int(int64(pos.Column))},
	)
}

// mkAttrs builds a set from attributes in any order (names unique).
func (ev *Evaluator) mkAttrs(as ...Attr) Value {
	sortAttrs(as)
	return attrsValue(as)
}

func sortAttrs(as []Attr) {
	sort.Slice(as, func(i, j int) bool { return as[i].Name < as[j].Name })
}

// sortedAttrs returns the attributes of a set ordered by name, the order
// Nix shows them in.
func (ev *Evaluator) sortedAttrs(v Value) []Attr {
	as := append([]Attr(nil), v.attrs()...)
	names := ev.syms.names
	sort.Slice(as, func(i, j int) bool { return names[as[i].Name] < names[as[j].Name] })
	return as
}

// Expr is a parsed and compiled expression.
type Expr struct {
	c    code
	file *syntax.File
	root syntax.Node
}

// AST returns the expression's syntax tree.
func (e *Expr) AST() syntax.Node { return e.root }

// Scope is a set of extra variables an expression is compiled against (for
// the REPL, and for scopedImport). The zero Scope is empty.
type Scope struct {
	names []string
	vals  []Value
}

// With returns a new Scope with name bound to v (replacing an earlier
// binding of name); s itself is unchanged.
func (s Scope) With(name string, v Value) Scope {
	out := Scope{}
	for i, n := range s.names {
		if n != name {
			out.names = append(out.names, n)
			out.vals = append(out.vals, s.vals[i])
		}
	}
	out.names = append(out.names, name)
	out.vals = append(out.vals, v)
	return out
}

// Names returns the scope's variable names, sorted.
func (s Scope) Names() []string {
	n := append([]string(nil), s.names...)
	sort.Strings(n)
	return n
}

// ParseString parses and compiles src. name is how positions print
// ("«string»" for -E expressions, "«stdin»"); baseDir resolves relative
// paths.
func (ev *Evaluator) ParseString(src, name, baseDir string, sc Scope) (e *Expr, err error) {
	defer ev.recoverTo(&err)
	f := ev.fset.AddFile(name, "", []byte(src))
	return ev.parse(f, baseDir, sc), nil
}

// ParseFile parses and compiles the file at path (a directory means its
// default.nix).
func (ev *Evaluator) ParseFile(path string) (e *Expr, err error) {
	defer ev.recoverTo(&err)
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	resolved := ev.resolveExprPath(abs, syntax.NoPos)
	src := ev.readFile(resolved, syntax.NoPos)
	f := ev.fset.AddFile(resolved, resolved, src)
	return ev.parse(f, filepath.Dir(resolved), Scope{}), nil
}

func (ev *Evaluator) parse(f *syntax.File, baseDir string, sc Scope) *Expr {
	root, perr := syntax.Parse(f, syntax.Options{BaseDir: baseDir, Home: ev.home})
	if perr != nil {
		se := perr.(*syntax.Error)
		panic(&Error{Kind: ErrParse, Msg: se.Msg, Pos: se.Pos, fset: ev.fset})
	}
	s := ev.baseScope
	var env *Env = ev.baseEnv
	if len(sc.names) > 0 {
		s = &scope{up: ev.baseScope, names: make(map[string]int, len(sc.names))}
		env = newEnv(ev.baseEnv, len(sc.names))
		for i, n := range sc.names {
			s.names[n] = i
			env.vals[i] = sc.vals[i]
		}
	}
	c := &compiler{ev: ev, file: f}
	compiled := c.compile(root, s)
	if env != ev.baseEnv {
		compiled = &inEnvCode{env: env, body: compiled}
	}
	return &Expr{c: compiled, file: f, root: root}
}

// inEnvCode evaluates its body in a fixed environment (a REPL scope).
type inEnvCode struct {
	env  *Env
	body code
}

func (c *inEnvCode) eval(ev *Evaluator, _ *Env) Value { return c.body.eval(ev, c.env) }

// Eval evaluates e to weak head normal form.
func (ev *Evaluator) Eval(e *Expr) (v Value, err error) {
	defer ev.recoverTo(&err)
	return e.c.eval(ev, ev.baseEnv), nil
}

// Force evaluates v to weak head normal form.
func (ev *Evaluator) Force(v Value) (out Value, err error) {
	defer ev.recoverTo(&err)
	return ev.force(v), nil
}

// ForceDeep evaluates v completely (as --strict does).
func (ev *Evaluator) ForceDeep(v Value) (err error) {
	defer ev.recoverTo(&err)
	ev.forceDeep(v)
	return nil
}

// recoverTo turns a panic raised during evaluation into an error: Nix
// errors as they are, other Go panics as internal errors with the
// position evaluation had reached. It also unwinds the evaluator's frame
// stack, completing the error's trace.
func (ev *Evaluator) recoverTo(errp *error) {
	r := recover()
	if r == nil {
		return
	}
	*errp = ev.recovered(r, 0)
}

// recovered converts a recovered panic into an *Error and unwinds frames
// above mark.
func (ev *Evaluator) recovered(r any, mark int) *Error {
	var e *Error
	switch x := r.(type) {
	case *Error:
		e = x
	case error:
		if errors.Is(x, context.Canceled) || errors.Is(x, context.DeadlineExceeded) {
			e = &Error{Kind: ErrCanceled, Msg: "evaluation canceled: " + x.Error(), Cause: x, Pos: ev.currentPos(), fset: ev.fset}
		} else {
			e = &Error{Kind: ErrInternal, Msg: "internal error: " + x.Error(), Cause: x, Pos: ev.currentPos(), fset: ev.fset}
			ev.log.Error("internal evaluator error", "err", x, "stack", string(debug.Stack()))
		}
	default:
		e = &Error{Kind: ErrInternal, Msg: fmt.Sprintf("internal error: %v", x), Pos: ev.currentPos(), fset: ev.fset}
		ev.log.Error("internal evaluator error", "panic", x, "stack", string(debug.Stack()))
	}
	ev.unwind(e, mark)
	return e
}

// unwind pops the frames above mark: blackholed thunks become pending
// again (so forcing them later retries, as in Nix), and calls and
// selections are recorded in the error's trace.
func (ev *Evaluator) unwind(e *Error, mark int) {
	for i := len(ev.frames) - 1; i >= mark; i-- {
		f := ev.frames[i]
		switch f.kind {
		case frThunk:
			t := (*Thunk)(f.p)
			if t.code != nil && t.val.k == kBlackhole {
				t.val.k = kInvalid
			}
		case frCall:
			if e != nil && len(e.Trace) < maxTrace {
				lam := (*lambdaCode)(f.p)
				what := "anonymous lambda"
				if lam.name != "" {
					what = "'" + lam.name + "'"
				}
				e.Trace = append(e.Trace, Trace{Pos: lam.pos, Msg: "while evaluating " + what, Call: true},
					Trace{Pos: f.pos, Msg: "from call site", Call: true})
			}
		case frSelect:
			// Nix leaves out selections of attributes defined in
			// derivation.nix (strict.drvPath…).
			if e != nil && len(e.Trace) < maxTrace && !ev.inDerivationNix((*selFrame)(f.p).attrPos) {
				sf := (*selFrame)(f.p)
				e.Trace = append(e.Trace, Trace{Pos: sf.attrPos, Msg: "while evaluating the attribute '" + ev.showAttrPath(sf) + "'"})
			}
		case frAttr:
			if e != nil && len(e.Trace) < maxTrace {
				a := (*Attr)(f.p)
				e.Trace = append(e.Trace, Trace{Pos: a.Pos, Msg: "while evaluating the attribute '" + ev.syms.name(a.Name) + "'"})
			}
		case frMsg:
			if e != nil && len(e.Trace) < maxTrace {
				e.Trace = append(e.Trace, Trace{Pos: f.pos, Msg: *(*string)(f.p)})
			}
		}
	}
	ev.frames = ev.frames[:mark]
}

// maxTrace bounds the trace of one error (deep recursions would otherwise
// produce millions of lines).
const maxTrace = 2000

func (ev *Evaluator) showAttrPath(sf *selFrame) string {
	var parts []string
	for i := 0; i < sf.n && i < len(sf.c.path); i++ {
		k := &sf.c.path[i]
		if k.dyn != nil {
			parts = append(parts, "\"${...}\"")
		} else {
			parts = append(parts, ev.syms.name(k.name))
		}
	}
	return strings.Join(parts, ".")
}
