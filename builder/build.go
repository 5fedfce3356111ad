package builder

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/castor-nix/castor/store/castore"
)

// Sentinel errors.
var (
	// ErrInvalid: a Build (or what it was made from) breaks the rules.
	ErrInvalid = errors.New("invalid build")
	// ErrUnsupported: something this builder cannot do (a system it cannot
	// run, a derivation feature it does not implement).
	ErrUnsupported = errors.New("unsupported")
	// ErrNoOutput: the build did not create one of its outputs.
	ErrNoOutput = errors.New("output not produced")
	// ErrLogLimit: the build wrote more log than allowed and was killed.
	ErrLogLimit = errors.New("log limit exceeded")
	// ErrTimeout: the build ran longer than allowed and was killed.
	ErrTimeout = errors.New("build timed out")
	// ErrHashMismatch: a fixed output does not have the hash it promised.
	ErrHashMismatch = errors.New("hash mismatch in fixed-output derivation")
)

// Build describes one run of a program in a sandbox, in the shape of Snix's
// BuildRequest. All paths are relative to the sandbox's root, without a
// leading slash.
type Build struct {
	// Inputs are the trees visible under InputsDir, each at its name,
	// sorted by name. For a derivation: its input closure.
	Inputs []castore.NamedNode
	// InputsDir is where Inputs appear ("nix/store"). Nothing else appears
	// there but the outputs the build creates.
	InputsDir string
	// Command is the program (an absolute path inside the sandbox) and its
	// arguments. The program gets the base name of Command[0] as its
	// argv[0], as Nix does.
	Command []string
	// WorkingDir is the program's working directory ("build").
	WorkingDir string
	// Env is the whole environment, sorted by key, keys unique.
	Env []EnvVar
	// ScratchPaths are writable, initially empty directories (except for
	// AdditionalFiles): "build" and "nix/store".
	ScratchPaths []string
	// AdditionalFiles are created before the program starts, mode 0644,
	// in a scratch path.
	AdditionalFiles []AdditionalFile
	// Outputs are the paths to collect after the program exited
	// successfully, sorted. Each must lie in a scratch path.
	Outputs []string
	// Constraints on where and how the build may run.
	Constraints Constraints
	// RefscanNeedles are the strings (Nix hash parts) whose occurrence in
	// an output makes it refer to the store path they stand for.
	RefscanNeedles []string
}

// EnvVar is one environment variable.
type EnvVar struct {
	Key   string
	Value string
}

// AdditionalFile is a file to create before the build.
type AdditionalFile struct {
	Path     string
	Contents []byte
}

// Constraints say what a build needs of the executor.
type Constraints struct {
	// System is the platform, like "x86_64-linux".
	System string
	// MinMemory is the memory the build needs, in bytes (0: no minimum).
	MinMemory uint64
	// AvailableReadOnlyPaths are host paths made visible read-only at the
	// same place (Nix's sandbox-paths).
	AvailableReadOnlyPaths []string
	// NetworkAccess gives the build the host's network; without it the
	// build has only its own loopback interface.
	NetworkAccess bool
	// ProvideBinSh makes a static shell available as /bin/sh.
	ProvideBinSh bool
}

// Getenv returns the value of key in Env.
func (b *Build) Getenv(key string) (string, bool) {
	i, ok := slices.BinarySearchFunc(b.Env, key, func(e EnvVar, k string) int { return strings.Compare(e.Key, k) })
	if !ok {
		return "", false
	}
	return b.Env[i].Value, true
}

// cleanRel reports whether p is a clean relative path inside the root.
func cleanRel(p string) bool {
	return p != "" && p != "." && !path.IsAbs(p) && path.Clean(p) == p && p != ".." && !strings.HasPrefix(p, "../")
}

// inScratch returns the scratch path that contains p, if any.
func (b *Build) inScratch(p string) (string, bool) {
	for _, s := range b.ScratchPaths {
		if strings.HasPrefix(p, s+"/") {
			return s, true
		}
	}
	return "", false
}

// Validate checks the rules a Build must follow, so that executors can rely
// on them: clean relative paths, sorted unique inputs, env, outputs;
// outputs and additional files inside scratch paths; a command.
func (b *Build) Validate() error {
	if !cleanRel(b.InputsDir) {
		return fmt.Errorf("%w: inputs directory %q", ErrInvalid, b.InputsDir)
	}
	if !cleanRel(b.WorkingDir) {
		return fmt.Errorf("%w: working directory %q", ErrInvalid, b.WorkingDir)
	}
	if len(b.Command) == 0 || !path.IsAbs(b.Command[0]) {
		return fmt.Errorf("%w: the command must start with an absolute program path, have %q", ErrInvalid, b.Command)
	}
	for i, in := range b.Inputs {
		if err := castore.ValidateName(in.Name); err != nil {
			return fmt.Errorf("%w: input: %v", ErrInvalid, err)
		}
		if err := in.Node.Validate(); err != nil {
			return fmt.Errorf("%w: input %s: %v", ErrInvalid, in.Name, err)
		}
		if i > 0 && b.Inputs[i-1].Name >= in.Name {
			return fmt.Errorf("%w: inputs not sorted and unique at %q", ErrInvalid, in.Name)
		}
	}
	for i, e := range b.Env {
		if e.Key == "" || strings.ContainsAny(e.Key, "=\x00") || strings.ContainsRune(e.Value, 0) {
			return fmt.Errorf("%w: environment variable %q", ErrInvalid, e.Key)
		}
		if i > 0 && b.Env[i-1].Key >= e.Key {
			return fmt.Errorf("%w: environment not sorted and unique at %q", ErrInvalid, e.Key)
		}
	}
	for _, s := range b.ScratchPaths {
		if !cleanRel(s) {
			return fmt.Errorf("%w: scratch path %q", ErrInvalid, s)
		}
	}
	for i, o := range b.Outputs {
		if !cleanRel(o) {
			return fmt.Errorf("%w: output %q", ErrInvalid, o)
		}
		if _, ok := b.inScratch(o); !ok {
			return fmt.Errorf("%w: output %q is not in a scratch path", ErrInvalid, o)
		}
		if i > 0 && b.Outputs[i-1] >= o {
			return fmt.Errorf("%w: outputs not sorted and unique at %q", ErrInvalid, o)
		}
		if path.Dir(o) == b.InputsDir {
			if _, clash := slices.BinarySearchFunc(b.Inputs, path.Base(o), func(n castore.NamedNode, s string) int { return strings.Compare(n.Name, s) }); clash {
				return fmt.Errorf("%w: output %q is also an input", ErrInvalid, o)
			}
		}
	}
	for _, f := range b.AdditionalFiles {
		if !cleanRel(f.Path) {
			return fmt.Errorf("%w: additional file %q", ErrInvalid, f.Path)
		}
		if _, ok := b.inScratch(f.Path); !ok {
			return fmt.Errorf("%w: additional file %q is not in a scratch path", ErrInvalid, f.Path)
		}
	}
	for _, p := range b.Constraints.AvailableReadOnlyPaths {
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
			return fmt.Errorf("%w: read-only path %q must be absolute and clean", ErrInvalid, p)
		}
	}
	return nil
}
