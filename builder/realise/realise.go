package realise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/derivation"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// Store is the store derivations are read from and outputs written to.
type Store struct {
	Blobs       castore.BlobService
	Directories castore.DirectoryService
	PathInfos   pathinfo.Service
}

// Options configure a Realiser.
type Options struct {
	// Executor runs the builds (fetches need none).
	Executor builder.Executor
	// Jobs is how many builds and fetches run at once (1 when < 1).
	Jobs int
	// KeepGoing keeps starting builds that do not depend on a failed one.
	KeepGoing bool
	// Build supplies the machine's part of build environments.
	Build builder.Options
	// Logs keeps each build's log (not kept when nil).
	Logs LogStore
	// Output receives the builds' logs, each line prefixed with the
	// derivation's name, and progress lines (discarded when nil).
	Output io.Writer
	// LogTail is how many log lines a failure shows (10 when zero).
	LogTail int
	// HTTPClient fetches for builtin:fetchurl (http.DefaultClient when nil).
	HTTPClient *http.Client
	// Logger receives debug lines (slog.Default() when nil).
	Logger *slog.Logger
}

// Realiser builds derivation graphs into a store.
type Realiser struct {
	st   Store
	opts Options
	src  derivation.Source
	hash *derivation.Hasher
	log  *slog.Logger
	out  sync.Mutex // serialises writes to opts.Output
}

// New returns a Realiser over st.
func New(st Store, opts Options) *Realiser {
	if opts.Jobs < 1 {
		opts.Jobs = 1
	}
	if opts.Output == nil {
		opts.Output = io.Discard
	}
	if opts.LogTail <= 0 {
		opts.LogTail = 10
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	src := derivation.NewCache(&derivation.Store{PathInfos: st.PathInfos, Blobs: st.Blobs})
	return &Realiser{st: st, opts: opts, src: src, hash: derivation.NewHasher(src), log: opts.Logger}
}

// Result is what one realised derivation produced.
type Result struct {
	DrvPath string
	// Outputs by output name.
	Outputs map[string]nixpath.StorePath
	// Built is false when the outputs were already valid.
	Built bool
}

// BuildError is a derivation whose build failed.
type BuildError struct {
	DrvPath string
	Err     error
	// LogTail are the last lines of the build's log.
	LogTail []string
}

func (e *BuildError) Error() string {
	var b strings.Builder
	var exit *builder.ExitError
	if errors.As(e.Err, &exit) {
		if exit.Signal != "" {
			fmt.Fprintf(&b, "builder for '%s' failed due to signal %s", e.DrvPath, exit.Signal)
		} else {
			fmt.Fprintf(&b, "builder for '%s' failed with exit code %d", e.DrvPath, exit.Code)
		}
	} else if errors.Is(e.Err, builder.ErrHashMismatch) {
		// Says which derivation already, as Nix's message does.
		b.WriteString(e.Err.Error())
	} else {
		fmt.Fprintf(&b, "building '%s': %s", e.DrvPath, strings.TrimPrefix(e.Err.Error(), e.DrvPath+": "))
	}
	if len(e.LogTail) > 0 {
		fmt.Fprintf(&b, ";\n       last %d log lines:\n", len(e.LogTail))
		for _, l := range e.LogTail {
			b.WriteString("       > " + l + "\n")
		}
		fmt.Fprintf(&b, "       For full logs, run 'castor log %s'.", e.DrvPath)
	}
	return b.String()
}

func (e *BuildError) Unwrap() error { return e.Err }

// ErrDependencyFailed: a derivation was not built because one it needs
// failed.
var ErrDependencyFailed = errors.New("dependency failed")

// node is a derivation of the graph.
type node struct {
	drvPath string
	sp      nixpath.StorePath
	drv     *derivation.Derivation
	outputs map[string]nixpath.StorePath
	// build is set when some output is missing.
	build bool
	// deps are the input derivations that must be built first.
	deps       []*node
	dependents []*node
	waiting    int // deps not yet built
	err        error
	done       bool
}

// Realise makes the outputs of drvPaths (absolute .drv store paths in the
// store) valid, building what is missing, and returns their output paths
// in the order given. The error joins every failure (BuildErrors and
// dependency failures); results for the roots that succeeded are returned
// alongside it.
func (r *Realiser) Realise(ctx context.Context, drvPaths []string) ([]Result, error) {
	nodes := map[string]*node{}
	var roots []*node
	for _, p := range drvPaths {
		n, err := r.load(ctx, p, nodes)
		if err != nil {
			return nil, err
		}
		roots = append(roots, n)
	}
	var todo []*node
	for _, p := range slices.Sorted(maps.Keys(nodes)) {
		if n := nodes[p]; n.build {
			todo = append(todo, n)
		}
	}
	errs := r.run(ctx, todo)
	var results []Result
	for _, n := range roots {
		if n.err != nil {
			continue
		}
		results = append(results, Result{DrvPath: n.drvPath, Outputs: n.outputs, Built: n.build})
	}
	return results, errors.Join(errs...)
}

// load reads drvPath and, if it must be built, the input derivations whose
// outputs it uses and that are not valid, recursively.
func (r *Realiser) load(ctx context.Context, drvPath string, nodes map[string]*node) (*node, error) {
	if n, ok := nodes[drvPath]; ok {
		return n, nil
	}
	drv, err := r.src.Derivation(ctx, drvPath)
	if err != nil {
		return nil, err
	}
	if err := r.hash.CheckOutputPaths(ctx, drv); err != nil {
		return nil, err
	}
	sp, _ := nixpath.ParseAbsolute(drvPath)
	n := &node{drvPath: drvPath, sp: sp, drv: drv, outputs: map[string]nixpath.StorePath{}}
	nodes[drvPath] = n
	for name, o := range drv.Outputs {
		p, err := nixpath.ParseAbsolute(o.Path)
		if err != nil {
			return nil, err
		}
		n.outputs[name] = p
		ok, err := r.valid(ctx, p)
		if err != nil {
			return nil, err
		}
		if !ok {
			n.build = true
		}
	}
	if !n.build {
		return n, nil
	}
	for _, in := range slices.Sorted(maps.Keys(drv.InputDerivations)) {
		child, err := r.load(ctx, in, nodes)
		if err != nil {
			return nil, fmt.Errorf("%s: input %w", drvPath, err)
		}
		if !child.build {
			continue
		}
		// Only the outputs used matter; a child may be partly valid.
		need := false
		for _, o := range drv.InputDerivations[in] {
			if ok, err := r.valid(ctx, child.outputs[o]); err != nil {
				return nil, err
			} else if !ok {
				need = true
			}
		}
		if need {
			n.deps = append(n.deps, child)
			child.dependents = append(child.dependents, n)
		}
	}
	n.waiting = len(n.deps)
	return n, nil
}

// valid reports whether p is registered in the store.
func (r *Realiser) valid(ctx context.Context, p nixpath.StorePath) (bool, error) {
	info, err := r.st.PathInfos.Get(ctx, p.Digest)
	if errors.Is(err, pathinfo.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return info.StorePath == p, nil
}

type finished struct {
	n   *node
	err error
}

// run schedules todo in dependency order.
func (r *Realiser) run(ctx context.Context, todo []*node) []error {
	var ready []*node
	for _, n := range todo {
		if n.waiting == 0 {
			ready = append(ready, n)
		}
	}
	left := len(todo)
	running := 0
	done := 0
	stop := false
	var errs []error
	fin := make(chan finished)
	for left > 0 || running > 0 {
		for !stop && running < r.opts.Jobs && len(ready) > 0 {
			n := ready[0]
			ready = ready[1:]
			running++
			left--
			r.progress(done, running, left, "building", n.drvPath)
			go func() {
				fin <- finished{n, r.buildOne(ctx, n)}
			}()
		}
		if running == 0 {
			// Nothing can run: what is left waits on failures.
			break
		}
		f := <-fin
		running--
		f.n.done = true
		if f.err != nil {
			f.n.err = f.err
			errs = append(errs, f.err)
			r.progress(done, running, left, "failed", f.n.drvPath)
			if !r.opts.KeepGoing || ctx.Err() != nil {
				stop = true
			}
			// Dependents can never be built.
			var fail func(*node)
			fail = func(m *node) {
				for _, d := range m.dependents {
					if d.err == nil {
						d.err = fmt.Errorf("%w: cannot build '%s': '%s' failed", ErrDependencyFailed, d.drvPath, f.n.drvPath)
						errs = append(errs, d.err)
						left--
						fail(d)
					}
				}
			}
			fail(f.n)
			ready = slices.DeleteFunc(ready, func(m *node) bool { return m.err != nil })
			continue
		}
		done++
		r.progress(done, running, left, "built", f.n.drvPath)
		for _, d := range f.n.dependents {
			d.waiting--
			if d.waiting == 0 && d.err == nil {
				ready = append(ready, d)
			}
		}
	}
	if stop {
		for _, n := range todo {
			if n.err == nil && !n.done {
				n.err = fmt.Errorf("not built: %s (stopped after a failure)", n.drvPath)
			}
		}
	}
	return errs
}

func (r *Realiser) progress(done, running, left int, what, drvPath string) {
	r.out.Lock()
	defer r.out.Unlock()
	fmt.Fprintf(r.opts.Output, "[%d done, %d running, %d left] %s '%s'\n", done, running, left, what, drvPath)
}

// buildOne builds or fetches one derivation and registers its outputs.
func (r *Realiser) buildOne(ctx context.Context, n *node) error {
	prefix := &prefixWriter{mu: &r.out, out: r.opts.Output, prefix: n.drv.Name}
	tail := &tailWriter{n: r.opts.LogTail}
	writers := []io.Writer{prefix, tail}
	var logFile io.WriteCloser
	if r.opts.Logs != nil {
		f, err := r.opts.Logs.Create(n.drvPath)
		if err != nil {
			r.log.Warn("build log not kept", "drv", n.drvPath, "err", err)
		} else {
			logFile = f
			writers = append(writers, f)
		}
	}
	logw := io.MultiWriter(writers...)
	err := r.buildAndIngest(ctx, n, logw)
	prefix.Flush()
	if logFile != nil {
		if cerr := logFile.Close(); cerr != nil {
			r.log.Warn("build log not kept", "drv", n.drvPath, "err", cerr)
		}
	}
	if err != nil {
		return &BuildError{DrvPath: n.drvPath, Err: err, LogTail: tail.Tail()}
	}
	return nil
}

func (r *Realiser) buildAndIngest(ctx context.Context, n *node, logw io.Writer) error {
	var (
		b    *builder.Build
		outs builder.Outputs
		err  error
	)
	if n.drv.IsBuiltin() {
		b, outs, err = r.builtin(ctx, n, logw)
	} else {
		if r.opts.Executor == nil {
			return fmt.Errorf("%w: no executor to build with", builder.ErrUnsupported)
		}
		var inputs []nixpath.StorePath
		inputs, err = builder.InputPaths(ctx, n.drv, r.src)
		if err != nil {
			return err
		}
		var closure []*pathinfo.PathInfo
		closure, err = builder.Closure(ctx, r.st.PathInfos, inputs)
		if err != nil {
			return err
		}
		b, err = builder.FromDerivation(n.drv, closure, r.opts.Build)
		if err != nil {
			return err
		}
		outs, err = r.opts.Executor.Run(ctx, b, logw)
	}
	if err != nil {
		return err
	}
	defer outs.Close()
	var specs []builder.OutputSpec
	for _, name := range n.drv.OutputNames() {
		spec := builder.OutputSpec{Name: name, Path: n.outputs[name]}
		if o := n.drv.Outputs[name]; o.Kind() == derivation.Fixed {
			ca, err := o.ContentAddress()
			if err != nil {
				return err
			}
			spec.CA = &ca
		}
		specs = append(specs, spec)
	}
	t0 := time.Now()
	_, err = builder.Ingest(ctx, builder.Store{Blobs: r.st.Blobs, Directories: r.st.Directories, PathInfos: r.st.PathInfos},
		b, outs, specs, builder.IngestOptions{Deriver: &n.sp, What: n.drvPath})
	r.log.Debug("outputs ingested", "drv", n.drvPath, "took", time.Since(t0), "err", err)
	return err
}
