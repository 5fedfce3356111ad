package eval

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"github.com/castor-nix/castor/evaluator/evalio"
	"github.com/castor-nix/castor/evaluator/syntax"
)

// searchPathEntry is one element of the Nix search path.
type searchPathEntry struct {
	prefix string
	path   string
}

func parseSearchPathEntry(s string) searchPathEntry {
	if i := strings.IndexByte(s, '='); i >= 0 {
		return searchPathEntry{prefix: s[:i], path: s[i+1:]}
	}
	return searchPathEntry{path: s}
}

// ioError reports a failed file or store operation at pos.
func (ev *Evaluator) ioError(pos syntax.Pos, err error, format string, args ...any) {
	e := &Error{Kind: ErrIO, Pos: pos, Cause: err, fset: ev.fset}
	msg := format
	if len(args) > 0 {
		msg = sprintf(format, args...)
	}
	var pe *fs.PathError
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		// C's strerror, as Nix prints it: Go's texts are the same but
		// start in lower case.
		s := errno.Error()
		e.Msg = msg + ": " + strings.ToUpper(s[:1]) + s[1:]
	case errors.As(err, &pe):
		e.Msg = msg + ": " + pe.Err.Error()
	default:
		e.Msg = msg + ": " + err.Error()
	}
	panic(e)
}

func (ev *Evaluator) readFile(path string, pos syntax.Pos) []byte {
	if b, ok := corepkgsFile(path); ok {
		return b
	}
	b, err := ev.store.ReadFile(ev.ctx, path)
	if err != nil {
		ev.ioError(pos, err, "opening file '%s'", path)
	}
	return b
}

// resolveExprPath follows symlinks at path and turns a directory into its
// default.nix, as Nix's resolveExprPath does.
func (ev *Evaluator) resolveExprPath(path string, pos syntax.Pos) string {
	if _, ok := corepkgsFile(path); ok {
		return path
	}
	for i := 0; ; i++ {
		if i >= 1024 {
			ev.throw(ErrEval, pos, "too many symbolic links encountered while traversing the path '%s'", path)
		}
		fi, err := ev.store.Lstat(ev.ctx, path)
		if err != nil {
			ev.ioError(pos, err, "getting status of '%s'", path)
		}
		switch fi.Type {
		case evalio.TypeSymlink:
			target, err := ev.store.ReadLink(ev.ctx, path)
			if err != nil {
				ev.ioError(pos, err, "reading symbolic link '%s'", path)
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(path), target)
			}
			path = syntax.CanonPath(target)
			continue
		case evalio.TypeDirectory:
			return syntax.CanonPath(path + "/default.nix")
		}
		return path
	}
}

// evalFile is import: parse and evaluate a file once, caching the value.
func (ev *Evaluator) evalFile(path string, pos syntax.Pos) Value {
	if v, ok := ev.fileCache[path]; ok {
		return v
	}
	resolved := ev.resolveExprPath(path, pos)
	if v, ok := ev.fileCache[resolved]; ok {
		return v
	}
	c, ok := ev.parseCache[resolved]
	if !ok {
		c = ev.parseFileCode(resolved, pos, ev.baseScope)
		ev.parseCache[resolved] = c
	}
	msg := "while evaluating the file '" + resolved + "':"
	ev.push(frame{kind: frMsg, p: unsafe.Pointer(&msg)})
	v := c.eval(ev, ev.baseEnv)
	ev.frames = ev.frames[:len(ev.frames)-1]
	ev.fileCache[resolved] = v
	if path != resolved {
		ev.fileCache[path] = v
	}
	return v
}

func (ev *Evaluator) parseFileCode(resolved string, pos syntax.Pos, s *scope) code {
	src := ev.readFile(resolved, pos)
	f := ev.fset.AddFile(resolved, resolved, src)
	root, perr := syntax.Parse(f, syntax.Options{BaseDir: filepath.Dir(resolved), Home: ev.home})
	if perr != nil {
		se := perr.(*syntax.Error)
		panic(&Error{Kind: ErrParse, Msg: se.Msg, Pos: se.Pos, fset: ev.fset})
	}
	c := &compiler{ev: ev, file: f}
	return c.compile(root, s)
}

// realisePath is Nix's realisePath: coerce to an absolute path and make
// the store paths of its context valid (import from derivation).
func (ev *Evaluator) realisePath(v Value, pos syntax.Pos) string {
	var ctx ctxBuilder
	p := ev.coerceToPath(pos, v, &ctx)
	if c := ctx.result(); len(c) > 0 {
		if err := ev.store.Realise(ev.ctx, derivedPaths(c)); err != nil {
			msg := "while realising the context of path '" + p + "'"
			ev.withTrace(pos, msg, func() { ev.storeError(err, syntax.NoPos, "realising") })
		}
	}
	return p
}

// derivedPaths are the paths a context asks to be valid: plain paths and
// whole derivations ("=") as they are, the outputs ("!out!") they name.
func derivedPaths(c Context) []evalio.DerivedPath {
	var out []evalio.DerivedPath
	for _, e := range c {
		switch {
		case strings.HasPrefix(e, "="):
			out = append(out, evalio.DerivedPath{Path: e[1:]})
		case strings.HasPrefix(e, "!"):
			if i := strings.IndexByte(e[1:], '!'); i >= 0 {
				out = append(out, evalio.DerivedPath{Path: e[i+2:], Output: e[1 : i+1]})
				continue
			}
			out = append(out, evalio.DerivedPath{Path: e})
		default:
			out = append(out, evalio.DerivedPath{Path: e})
		}
	}
	return out
}

// copyPathToStore adds a source path to the store (once per evaluation)
// and returns its store path: what a path becomes in a string.
func (ev *Evaluator) copyPathToStore(pos syntax.Pos, path string) string {
	if strings.HasSuffix(path, ".drv") {
		ev.throw(ErrEval, syntax.NoPos, "file names are not allowed to end in '.drv'")
	}
	if sp, ok := ev.srcToStore[path]; ok {
		return sp
	}
	sp, err := ev.store.AddPath(ev.ctx, evalio.AddPathRequest{Path: path, Name: baseNameOf(path), Recursive: true})
	if err != nil {
		// Nix reports these without a position.
		ev.addPathError(err, path)
	}
	ev.srcToStore[path] = sp
	return sp
}

// addPathError raises an error from Store.AddPath as Nix words it.
func (ev *Evaluator) addPathError(err error, path string) {
	var e *Error
	if errors.As(err, &e) {
		panic(e) // from a filter
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		panic(err)
	}
	if errors.Is(err, evalio.ErrHashMismatch) {
		ev.throw(ErrEval, syntax.NoPos, "store path mismatch in (possibly filtered) path added from '%s'", path)
	}
	panic(&Error{Kind: ErrIO, Msg: nixIOMessage(err), Cause: err, fset: ev.fset})
}

// nixIOMessage words a failed file operation as Nix's SysError does: what
// was being done and C's strerror.
func nixIOMessage(err error) string {
	var ne *evalio.NameError
	if errors.As(err, &ne) {
		return ne.Error()
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	reason := pe.Err.Error()
	var errno syscall.Errno
	if errors.As(pe.Err, &errno) {
		reason = errno.Error()
	}
	if reason != "" {
		reason = strings.ToUpper(reason[:1]) + reason[1:]
	}
	switch pe.Op {
	case "lstat", "stat", "fstatat":
		return "getting status of '" + pe.Path + "': " + reason
	case "open", "openat":
		return "opening file '" + pe.Path + "': " + reason
	case "read":
		return "reading from file: " + reason
	case "readlink", "readlinkat":
		return "reading symbolic link '" + pe.Path + "': " + reason
	case "opendir", "readdirent":
		return "opening directory '" + pe.Path + "': " + reason
	}
	return err.Error()
}

func (ev *Evaluator) pathExists(path string) bool {
	if _, ok := corepkgsFile(path); ok {
		return true
	}
	_, err := ev.store.Lstat(ev.ctx, path)
	return err == nil
}

// findFile looks up a <path> in a search path (Nix's findFile).
func (ev *Evaluator) findFile(entries []searchPathEntry, name string, pos syntax.Pos) string {
	for _, e := range entries {
		var suffix string
		if e.prefix == "" {
			suffix = "/" + name
		} else {
			if !strings.HasPrefix(name, e.prefix) || len(name) > len(e.prefix) && name[len(e.prefix)] != '/' {
				continue
			}
			if len(name) > len(e.prefix) {
				suffix = "/" + name[len(e.prefix)+1:]
			}
		}
		root := e.path
		if strings.Contains(root, "://") {
			ev.log.Warn("Nix search path entry is a URL; fetching is not supported, ignoring", "entry", root)
			continue
		}
		if !filepath.IsAbs(root) {
			abs, err := filepath.Abs(root)
			if err != nil {
				continue
			}
			root = abs
		}
		if !ev.pathExists(root) {
			continue
		}
		res := root + suffix
		if ev.pathExists(res) {
			return syntax.CanonPath(res)
		}
	}
	if strings.HasPrefix(name, "nix/") {
		return corepkgsPrefix + name[4:]
	}
	ev.throw(ErrThrown, pos, "file '%s' was not found in the Nix search path (add it using $NIX_PATH or -I)", name)
	return ""
}

func init() {
	def1("import", true, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		p := ev.realisePath(a, pos)
		return ev.evalFile(p, pos)
	})
	def2("scopedImport", true, func(ev *Evaluator, pos syntax.Pos, scopeV, a Value) Value {
		sv := ev.forceAttrs(scopeV, pos)
		p := ev.realisePath(a, pos)
		resolved := ev.resolveExprPath(p, pos)
		as := sv.attrs()
		s := &scope{up: ev.baseScope, names: make(map[string]int, len(as))}
		env := newEnv(ev.baseEnv, len(as))
		for i, at := range as {
			s.names[ev.syms.name(at.Name)] = i
			env.vals[i] = at.Val
		}
		c := ev.parseFileCode(resolved, pos, s)
		return c.eval(ev, env)
	})
	def1("readFile", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		p := ev.realisePath(a, pos)
		b := ev.readFile(p, pos)
		for _, c := range b {
			if c == 0 {
				ev.throw(ErrEval, pos, "the contents of the file '%s' cannot be represented as a Nix string", p)
			}
		}
		return Str(string(b))
	})
	def1("readDir", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		p := ev.realisePath(a, pos)
		ents, err := ev.store.ReadDir(ev.ctx, p)
		if err != nil {
			ev.ioError(pos, err, "opening directory '%s'", p)
		}
		out := make([]Attr, len(ents))
		for i, e := range ents {
			out[i] = Attr{Name: ev.intern(e.Name), Val: Str(e.Type.String())}
		}
		sortAttrs(out)
		return attrsValue(out)
	})
	def1("pathExists", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		p := ev.realisePath(a, pos)
		return Bool(ev.pathExists(p))
	})
	def2("hashFile", false, func(ev *Evaluator, pos syntax.Pos, algo, a Value) Value {
		h := newHash(ev, ev.forceStringNoCtx(algo, pos), pos)
		p := ev.realisePath(a, pos)
		h.Write(ev.readFile(p, pos))
		return Str(hexString(h.Sum(nil)))
	})
	def2("findFile", false, func(ev *Evaluator, pos syntax.Pos, sp, name Value) Value {
		l := ev.forceList(sp, pos)
		var entries []searchPathEntry
		for _, e := range l.list() {
			es := ev.forceAttrs(e, pos)
			var prefix string
			if p := lookupAttr(es.attrs(), symPrefix); p != nil {
				prefix = ev.forceStringNoCtx(p.Val, pos)
			}
			pa := ev.getAttrFor(es, "findFile", symPath, pos)
			var ctx ctxBuilder
			path := ev.coerceToString(pos, pa, &ctx, false, false, true)
			if c := ctx.result(); len(c) > 0 {
				if err := ev.store.Realise(ev.ctx, derivedPaths(c)); err != nil {
					var nv *evalio.NotValidError
					if errors.As(err, &nv) {
						ev.throw(ErrEval, pos, "cannot find '%s', since path '%s' is not valid", path, nv.Path)
					}
					ev.storeError(err, pos, "cannot find '%s'", path)
				}
			}
			entries = append(entries, searchPathEntry{prefix: prefix, path: path})
		}
		return Path(ev.findFile(entries, ev.forceStringNoCtx(name, pos), pos))
	})
	def2("toFile", false, func(ev *Evaluator, pos syntax.Pos, nameV, textV Value) Value {
		name := ev.forceStringNoCtx(nameV, pos)
		tv := ev.forceString(textV, pos)
		var refs []string
		for _, e := range tv.ctx() {
			if !strings.HasPrefix(e, "/") {
				ev.throw(ErrEval, pos, "in 'toFile': the file named '%s' must not contain a reference to a derivation but contains (%s)", name, e)
			}
			refs = append(refs, e)
		}
		sp, err := ev.store.AddText(ev.ctx, name, tv.str(), refs)
		if err != nil {
			ev.ioError(pos, err, "in 'toFile'")
		}
		return StrCtx(sp, Context{sp})
	})
	def2("filterSource", false, func(ev *Evaluator, pos syntax.Pos, f, a Value) Value {
		var ctx ctxBuilder
		p := ev.coerceToPath(pos, a, &ctx)
		f = ev.force(f)
		switch f.k {
		case kLambda, kPrimop, kPrimopApp:
		default:
			ev.throw(ErrType, pos, "first argument in call to 'filterSource' is not a function but %s", showType(f))
		}
		return ev.addPath(pos, p, baseNameOf(p), f, true, nil, ctx.result())
	})
	def1("path", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		args := ev.forceAttrs(a, pos)
		var path, name string
		var expected []byte
		var filter Value
		var ctx ctxBuilder
		recursive := true
		for _, at := range args.attrs() {
			switch at.Name {
			case symPath:
				path = ev.coerceToPath(at.Pos, at.Val, &ctx)
			case symName:
				name = ev.forceStringNoCtx(at.Val, at.Pos)
			case symFilter:
				filter = ev.force(at.Val)
			case symRecursive:
				recursive = ev.forceBool(at.Val, at.Pos)
			case symSha256:
				h, err := ev.newHashAllowEmpty(ev.forceStringNoCtx(at.Val, at.Pos), "sha256")
				if err != nil {
					ev.throw(ErrEval, syntax.NoPos, "%s", err.Error())
				}
				expected = h.digest
			default:
				ev.throw(ErrEval, at.Pos, "unsupported argument '%s' to 'addPath'", ev.syms.name(at.Name))
			}
		}
		if path == "" {
			ev.throw(ErrEval, pos, "'path' required")
		}
		if name == "" {
			name = baseNameOf(path)
		}
		return ev.addPath(pos, path, name, filter, recursive, expected, ctx.result())
	})
	def1("storePath", false, func(ev *Evaluator, pos syntax.Pos, a Value) Value {
		var ctx ctxBuilder
		p := ev.coerceToPath(pos, a, &ctx)
		dir := ev.store.StoreDir() + "/"
		if !strings.HasPrefix(p, dir) {
			ev.throw(ErrEval, pos, "path '%s' is not in the Nix store", p)
		}
		base, _, _ := strings.Cut(p[len(dir):], "/")
		sp := dir + base
		if err := ev.store.Realise(ev.ctx, []evalio.DerivedPath{{Path: sp}}); err != nil {
			ev.storeError(err, pos, "path '%s' is not valid", sp)
		}
		return StrCtx(p, ctx.result().union(Context{sp}))
	})
}

// addPath is filterSource and builtins.path (Nix's addPath): the paths
// in the context are made valid first; failures are reported "while
// adding path".
func (ev *Evaluator) addPath(pos syntax.Pos, path, name string, filter Value, recursive bool, expected []byte, ctx Context) Value {
	req := evalio.AddPathRequest{Path: path, Name: name, Recursive: recursive, KeepReferences: true, ExpectedSHA256: expected}
	if filter.k != kInvalid {
		req.Filter = func(p string, t evalio.FileType) bool {
			r := ev.call2(filter, Str(p), Str(t.String()), pos)
			return ev.forceBool(r, pos)
		}
	}
	var sp string
	ev.withTrace(pos, "while adding path '"+path+"'", func() {
		if len(ctx) > 0 {
			if err := ev.store.Realise(ev.ctx, derivedPaths(ctx)); err != nil {
				ev.storeError(err, syntax.NoPos, "realising")
			}
		}
		var err error
		sp, err = ev.store.AddPath(ev.ctx, req)
		if err != nil {
			ev.addPathError(err, path)
		}
	})
	return StrCtx(sp, Context{sp})
}
