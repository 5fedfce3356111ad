package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/derivation"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// Where a derivation's build happens, as Nix's sandbox lays it out.
const (
	BuildDir  = "build"     // NIX_BUILD_TOP, relative to the root
	StoreDir  = "nix/store" // the store, relative to the root
	HomeDir   = "/homeless-shelter"
	PathUnset = "/path-not-set"
)

// Options are the parts of a derivation's environment that come from the
// machine rather than the derivation.
type Options struct {
	// Cores is NIX_BUILD_CORES (runtime.NumCPU() when zero, as Nix's
	// default).
	Cores int
	// LookupEnv supplies the values of a fixed-output derivation's
	// impureEnvVars (os.LookupEnv when nil); unset ones are empty, as in
	// Nix.
	LookupEnv func(string) (string, bool)
	// SandboxPaths are host paths every build sees read-only (Nix's
	// sandbox-paths, apart from /bin/sh, which is always provided).
	SandboxPaths []string
}

// FromDerivation writes a derivation out as a Build, as Nix 2.8 runs it in
// its sandbox. inputs is the closure of the derivation's input sources and
// of the outputs of its input derivations that it uses (see Closure).
// Built-in builders, floating or impure outputs and exportReferencesGraph
// are errors wrapping ErrUnsupported.
func FromDerivation(drv *derivation.Derivation, inputs []*pathinfo.PathInfo, opt Options) (*Build, error) {
	kind, err := drv.Kind()
	if err != nil {
		return nil, err
	}
	if kind != derivation.InputAddressed && kind != derivation.Fixed {
		return nil, fmt.Errorf("%w: %s: %s derivations", ErrUnsupported, drv.Name, kind)
	}
	if drv.IsBuiltin() {
		return nil, fmt.Errorf("%w: %s: builder %s is built in, not a program", ErrUnsupported, drv.Name, drv.Builder)
	}
	fixed := kind == derivation.Fixed
	b := &Build{
		InputsDir:    StoreDir,
		Command:      append([]string{drv.Builder}, drv.Args...),
		WorkingDir:   BuildDir,
		ScratchPaths: []string{BuildDir, StoreDir},
		Constraints: Constraints{
			System:                 drv.System,
			NetworkAccess:          fixed,
			ProvideBinSh:           true,
			AvailableReadOnlyPaths: slices.Clone(opt.SandboxPaths),
		},
	}
	needles := map[string]bool{}
	for _, name := range drv.OutputNames() {
		sp, err := nixpath.ParseAbsolute(drv.Outputs[name].Path)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: output %s: %v", ErrInvalid, drv.Name, name, err)
		}
		b.Outputs = append(b.Outputs, StoreDir+"/"+sp.String())
		needles[sp.HashPart()] = true
	}
	slices.Sort(b.Outputs)
	for _, info := range inputs {
		b.Inputs = append(b.Inputs, castore.NamedNode{Name: info.StorePath.String(), Node: info.Node})
		needles[info.StorePath.HashPart()] = true
	}
	slices.SortFunc(b.Inputs, func(x, y castore.NamedNode) int { return strings.Compare(x.Name, y.Name) })
	b.Inputs = slices.CompactFunc(b.Inputs, func(x, y castore.NamedNode) bool { return x.Name == y.Name })
	b.RefscanNeedles = slices.Sorted(maps.Keys(needles))

	attrs, structured, err := drv.StructuredAttrs()
	if err != nil {
		return nil, err
	}
	if v, ok := drv.Env["__noChroot"]; ok && v == "1" || structured && attrs["__noChroot"] == true {
		return nil, fmt.Errorf("%w: %s: __noChroot is set, which a sandbox does not allow", ErrUnsupported, drv.Name)
	}

	// Nix fills its map in this order; later entries win.
	env := map[string]string{}
	cores := opt.Cores
	if cores <= 0 {
		cores = runtime.NumCPU()
	}
	env["PATH"] = PathUnset
	env["HOME"] = HomeDir
	env["NIX_STORE"] = nixpath.StoreDir
	env["NIX_BUILD_CORES"] = strconv.Itoa(cores)
	if !structured {
		if _, ok := drv.Env["exportReferencesGraph"]; ok {
			return nil, fmt.Errorf("%w: %s: exportReferencesGraph", ErrUnsupported, drv.Name)
		}
		passAsFile := map[string]bool{}
		for _, n := range strings.Fields(drv.Env["passAsFile"]) {
			passAsFile[n] = true
		}
		for _, k := range slices.Sorted(maps.Keys(drv.Env)) {
			if !passAsFile[k] {
				env[k] = drv.Env[k]
				continue
			}
			h := sha256.Sum256([]byte(k))
			fn := ".attr-" + nixbase32.EncodeToString(h[:])
			b.AdditionalFiles = append(b.AdditionalFiles, AdditionalFile{Path: BuildDir + "/" + fn, Contents: []byte(drv.Env[k])})
			env[k+"Path"] = "/" + BuildDir + "/" + fn
		}
	}
	top := "/" + BuildDir
	for _, k := range []string{"NIX_BUILD_TOP", "TMPDIR", "TEMPDIR", "TMP", "TEMP", "PWD"} {
		env[k] = top
	}
	if fixed {
		env["NIX_OUTPUT_CHECKED"] = "1"
		lookup := opt.LookupEnv
		if lookup == nil {
			lookup = os.LookupEnv
		}
		impure, err := stringsAttr(drv, attrs, structured, "impureEnvVars")
		if err != nil {
			return nil, err
		}
		for _, k := range impure {
			v, _ := lookup(k)
			env[k] = v
		}
	}
	env["NIX_LOG_FD"] = "2"
	env["TERM"] = "xterm-256color"
	if structured {
		if _, ok := attrs["exportReferencesGraph"]; ok {
			return nil, fmt.Errorf("%w: %s: exportReferencesGraph", ErrUnsupported, drv.Name)
		}
		// Re-read with numbers kept as written.
		attrs, err = decodeAttrs(drv.Env["__json"])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: structured attributes: %v", ErrInvalid, drv.Name, err)
		}
		outs := map[string]any{}
		for name, o := range drv.Outputs {
			outs[name] = o.Path
		}
		attrs["outputs"] = outs
		var js bytes.Buffer
		dumpJSON(&js, attrs)
		b.AdditionalFiles = append(b.AdditionalFiles,
			AdditionalFile{Path: BuildDir + "/.attrs.sh", Contents: attrsShell(attrs)},
			AdditionalFile{Path: BuildDir + "/.attrs.json", Contents: js.Bytes()},
		)
		// Nix 2.8 points these at the host's build directory, a path that
		// does not exist in the sandbox; later versions fixed that, and so
		// does castor.
		env["NIX_ATTRS_SH_FILE"] = top + "/.attrs.sh"
		env["NIX_ATTRS_JSON_FILE"] = top + "/.attrs.json"
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		b.Env = append(b.Env, EnvVar{Key: k, Value: env[k]})
	}
	slices.SortFunc(b.AdditionalFiles, func(x, y AdditionalFile) int { return strings.Compare(x.Path, y.Path) })
	if err := b.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", drv.Name, err)
	}
	return b, nil
}

// stringsAttr reads a list-of-strings attribute as Nix's
// ParsedDerivation::getStringsAttr does: whitespace-separated from the
// environment, or a JSON list of strings from structured attributes.
func stringsAttr(drv *derivation.Derivation, attrs map[string]any, structured bool, name string) ([]string, error) {
	if !structured {
		return strings.Fields(drv.Env[name]), nil
	}
	v, ok := attrs[name]
	if !ok {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %s: attribute %s must be a list of strings", ErrInvalid, drv.Name, name)
	}
	var out []string
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("%w: %s: attribute %s must be a list of strings", ErrInvalid, drv.Name, name)
		}
		out = append(out, s)
	}
	return out, nil
}

// Closure returns the PathInfos of roots and of everything they refer to,
// transitively, sorted by store path. A missing path is an error wrapping
// pathinfo.ErrNotFound.
func Closure(ctx context.Context, infos pathinfo.Getter, roots []nixpath.StorePath) ([]*pathinfo.PathInfo, error) {
	seen := map[nixpath.StorePath]*pathinfo.PathInfo{}
	queue := slices.Clone(roots)
	for len(queue) > 0 {
		sp := queue[0]
		queue = queue[1:]
		if _, ok := seen[sp]; ok {
			continue
		}
		info, err := infos.Get(ctx, sp.Digest)
		if err == nil && info.StorePath != sp {
			err = fmt.Errorf("%s: %w", sp.Absolute(), pathinfo.ErrNotFound)
		}
		if err != nil {
			if errors.Is(err, pathinfo.ErrNotFound) {
				return nil, fmt.Errorf("%s is not in the store: %w", sp.Absolute(), err)
			}
			return nil, err
		}
		seen[sp] = info
		queue = append(queue, info.References...)
	}
	out := make([]*pathinfo.PathInfo, 0, len(seen))
	for _, info := range seen {
		out = append(out, info)
	}
	slices.SortFunc(out, func(x, y *pathinfo.PathInfo) int { return x.StorePath.Compare(y.StorePath) })
	return out, nil
}

// InputPaths returns the store paths a derivation's build reads directly:
// its input sources and the outputs it uses of its input derivations
// (looked up through src).
func InputPaths(ctx context.Context, drv *derivation.Derivation, src derivation.Source) ([]nixpath.StorePath, error) {
	var out []nixpath.StorePath
	for _, p := range drv.InputSources {
		sp, err := nixpath.ParseAbsolute(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		out = append(out, sp)
	}
	for _, drvPath := range slices.Sorted(maps.Keys(drv.InputDerivations)) {
		in, err := src.Derivation(ctx, drvPath)
		if err != nil {
			return nil, err
		}
		for _, name := range drv.InputDerivations[drvPath] {
			o, ok := in.Outputs[name]
			if !ok {
				return nil, fmt.Errorf("%w: %s uses output %q of %s, which has no such output", ErrInvalid, drv.Name, name, drvPath)
			}
			sp, err := nixpath.ParseAbsolute(o.Path)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: output %q of %s: %v", ErrUnsupported, drv.Name, name, drvPath, err)
			}
			out = append(out, sp)
		}
	}
	slices.SortFunc(out, nixpath.StorePath.Compare)
	return slices.CompactFunc(out, func(a, b nixpath.StorePath) bool { return a == b }), nil
}
