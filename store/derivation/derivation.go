package derivation

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/castor-nix/castor/store/nixpath"
)

// Sentinel errors, wrapped by everything this package returns.
var (
	// ErrInvalid: a derivation (or its ATerm text) breaks Nix's rules.
	ErrInvalid = errors.New("invalid derivation")
	// ErrNotFound: a derivation asked of a Source is not there.
	ErrNotFound = errors.New("derivation not found")
	// ErrUnsupported: a valid derivation of a kind this code cannot handle
	// (floating content-addressed, impure, deferred outputs).
	ErrUnsupported = errors.New("unsupported derivation")
)

// Output is one output as the ATerm states it.
type Output struct {
	// Path is the absolute store path, empty when it is not known before
	// the build (floating content-addressed, deferred, impure).
	Path string
	// HashAlgo is empty for input-addressed outputs, otherwise the method
	// prefix ("r:" recursive, "text:" text, none for flat) and the hash
	// algorithm: "sha256", "r:sha256", "r:sha1", "text:sha256"...
	HashAlgo string
	// Hash is the expected hash in lower-case hex for fixed outputs,
	// "impure" for impure ones, empty otherwise.
	Hash string
}

// OutputKind classifies an output, following Nix 2.8's DerivationOutput.
type OutputKind uint8

const (
	// InputAddressed: path from hashDerivationModulo.
	InputAddressed OutputKind = iota + 1
	// Fixed: content-addressed with a hash known in advance.
	Fixed
	// Floating: content-addressed, hash known after the build.
	Floating
	// Deferred: input-addressed, but the path depends on floating inputs.
	Deferred
	// Impure: built every time, content-addressed after the build.
	Impure
)

func (k OutputKind) String() string {
	switch k {
	case InputAddressed:
		return "input-addressed"
	case Fixed:
		return "fixed-output"
	case Floating:
		return "floating content-addressed"
	case Deferred:
		return "deferred"
	case Impure:
		return "impure"
	}
	return fmt.Sprintf("OutputKind(%d)", uint8(k))
}

// Kind says what kind of output o is.
func (o Output) Kind() OutputKind {
	switch {
	case o.HashAlgo == "" && o.Path == "":
		return Deferred
	case o.HashAlgo == "":
		return InputAddressed
	case o.Hash == "impure":
		return Impure
	case o.Hash == "":
		return Floating
	}
	return Fixed
}

// Method splits HashAlgo into the ingestion method and the algorithm name.
func (o Output) Method() (nixpath.Method, string) {
	if a, ok := strings.CutPrefix(o.HashAlgo, "r:"); ok {
		return nixpath.Recursive, a
	}
	if a, ok := strings.CutPrefix(o.HashAlgo, "text:"); ok {
		return nixpath.Text, a
	}
	return nixpath.Flat, o.HashAlgo
}

// ContentAddress returns the content address a fixed output must have.
func (o Output) ContentAddress() (nixpath.ContentAddress, error) {
	if o.Kind() != Fixed {
		return nixpath.ContentAddress{}, fmt.Errorf("%w: a %s output has no content address in advance", ErrInvalid, o.Kind())
	}
	method, algo := o.Method()
	a, err := nixhash.ParseAlgorithm(algo)
	if err != nil {
		return nixpath.ContentAddress{}, fmt.Errorf("%w: output hash algorithm %q: %v", ErrInvalid, o.HashAlgo, err)
	}
	h, err := nixpath.ParseHash(o.Hash, algo)
	if err != nil || hex.EncodeToString(h.Digest()) != o.Hash {
		return nixpath.ContentAddress{}, fmt.Errorf("%w: output hash %q is not a hex %s digest", ErrInvalid, o.Hash, a)
	}
	if method == nixpath.Text && a != nixhash.SHA256 {
		return nixpath.ContentAddress{}, fmt.Errorf("%w: text output hashes must be sha256, not %s", ErrInvalid, a)
	}
	return nixpath.ContentAddress{Method: method, Hash: h}, nil
}

// Derivation is a parsed .drv file.
type Derivation struct {
	// Name is the derivation's name: the .drv path's name without ".drv"
	// when loaded from a path, else the "name" attribute. It is not part
	// of the ATerm; output paths are named after it.
	Name string
	// Outputs by output name.
	Outputs map[string]Output
	// InputDerivations maps absolute .drv paths to the names of the
	// outputs used, sorted and unique.
	InputDerivations map[string][]string
	// InputSources are absolute store paths, sorted and unique.
	InputSources []string
	// System is the platform, like "x86_64-linux".
	System  string
	Builder string
	Args    []string
	// Env is the builder's environment as the derivation states it.
	Env map[string]string
}

// NameFromEnv returns the derivation's name as its attributes state it:
// the "name" variable, or "name" inside structured attributes.
func NameFromEnv(env map[string]string) string {
	if n, ok := env["name"]; ok {
		return n
	}
	if js, ok := env["__json"]; ok {
		var attrs struct {
			Name string `json:"name"`
		}
		if json.Unmarshal([]byte(js), &attrs) == nil {
			return attrs.Name
		}
	}
	return ""
}

// Kind is the kind shared by the derivation's outputs: Fixed for a
// fixed-output derivation (one output, "out"), InputAddressed when every
// output is, and so on. Mixed kinds are an error.
func (d *Derivation) Kind() (OutputKind, error) {
	var kind OutputKind
	for name, o := range d.Outputs {
		k := o.Kind()
		if kind != 0 && k != kind {
			return 0, fmt.Errorf("%w: %s: outputs of different kinds (%s and %s)", ErrInvalid, d.Name, kind, k)
		}
		kind = k
		if k == Fixed && (len(d.Outputs) != 1 || name != "out") {
			return 0, fmt.Errorf("%w: %s: a fixed-output derivation must have exactly one output, called out", ErrInvalid, d.Name)
		}
	}
	if kind == 0 {
		return 0, fmt.Errorf("%w: %s: no outputs", ErrInvalid, d.Name)
	}
	return kind, nil
}

// IsFixedOutput reports whether d is a fixed-output derivation.
func (d *Derivation) IsFixedOutput() bool {
	k, err := d.Kind()
	return err == nil && k == Fixed
}

// IsBuiltin reports whether the builder is one of Nix's built-in builders
// ("builtin:fetchurl"...).
func (d *Derivation) IsBuiltin() bool { return strings.HasPrefix(d.Builder, "builtin:") }

// OutputNames returns the output names, sorted.
func (d *Derivation) OutputNames() []string {
	names := make([]string, 0, len(d.Outputs))
	for n := range d.Outputs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// StructuredAttrs returns the structured attributes (`__json`) when the
// derivation has them.
func (d *Derivation) StructuredAttrs() (map[string]any, bool, error) {
	js, ok := d.Env["__json"]
	if !ok {
		return nil, false, nil
	}
	var attrs map[string]any
	dec := json.NewDecoder(strings.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&attrs); err != nil {
		return nil, true, fmt.Errorf("%w: %s: structured attributes: %v", ErrInvalid, d.Name, err)
	}
	return attrs, true, nil
}

// OutputPathName is the name of an output's store path: the derivation's
// name, plus "-<output>" for outputs other than "out".
func OutputPathName(drvName, output string) string {
	if output == "out" {
		return drvName
	}
	return drvName + "-" + output
}

// Validate checks what Nix checks of a derivation: at least one output,
// well-formed output names, consistent output kinds, store paths where
// paths belong, sorted unique output names per input derivation, and a
// system and builder.
func (d *Derivation) Validate() error {
	if err := nixpath.ValidateName(d.Name); err != nil {
		return fmt.Errorf("%w: derivation name: %v", ErrInvalid, err)
	}
	if _, err := d.Kind(); err != nil {
		return err
	}
	for _, name := range d.OutputNames() {
		o := d.Outputs[name]
		if name == "" || name == "drv" {
			return fmt.Errorf("%w: %s: invalid output name %q", ErrInvalid, d.Name, name)
		}
		if err := nixpath.ValidateName(OutputPathName(d.Name, name)); err != nil {
			return fmt.Errorf("%w: %s: output %q: %v", ErrInvalid, d.Name, name, err)
		}
		if o.Path != "" {
			if _, err := nixpath.ParseAbsolute(o.Path); err != nil {
				return fmt.Errorf("%w: %s: output %q: %v", ErrInvalid, d.Name, name, err)
			}
		}
		switch o.Kind() {
		case Fixed:
			if _, err := o.ContentAddress(); err != nil {
				return fmt.Errorf("%s: output %q: %w", d.Name, name, err)
			}
			if o.Path == "" {
				return fmt.Errorf("%w: %s: fixed output %q has no path", ErrInvalid, d.Name, name)
			}
		case Floating, Impure:
			if o.Path != "" {
				return fmt.Errorf("%w: %s: %s output %q must not have a path", ErrInvalid, d.Name, o.Kind(), name)
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(d.InputDerivations)) {
		sp, err := nixpath.ParseAbsolute(p)
		if err != nil {
			return fmt.Errorf("%w: %s: input derivation: %v", ErrInvalid, d.Name, err)
		}
		if !sp.IsDerivation() {
			return fmt.Errorf("%w: %s: input derivation %s does not end in .drv", ErrInvalid, d.Name, p)
		}
		outs := d.InputDerivations[p]
		if len(outs) == 0 {
			return fmt.Errorf("%w: %s: input derivation %s names no outputs", ErrInvalid, d.Name, p)
		}
		for i, o := range outs {
			if o == "" || i > 0 && outs[i-1] >= o {
				return fmt.Errorf("%w: %s: outputs of input derivation %s not sorted, unique and non-empty", ErrInvalid, d.Name, p)
			}
		}
	}
	for i, p := range d.InputSources {
		if _, err := nixpath.ParseAbsolute(p); err != nil {
			return fmt.Errorf("%w: %s: input source: %v", ErrInvalid, d.Name, err)
		}
		if i > 0 && d.InputSources[i-1] >= p {
			return fmt.Errorf("%w: %s: input sources not sorted and unique at %s", ErrInvalid, d.Name, p)
		}
	}
	if d.System == "" {
		return fmt.Errorf("%w: %s: no system", ErrInvalid, d.Name)
	}
	if d.Builder == "" {
		return fmt.Errorf("%w: %s: no builder", ErrInvalid, d.Name)
	}
	return nil
}
