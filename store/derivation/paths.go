package derivation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/castor-nix/castor/store/nixpath"
)

// Path computes the derivation's own store path: a text path named
// "<name>.drv" over its ATerm, referring to its input derivations and
// sources.
func (d *Derivation) Path() (nixpath.StorePath, error) {
	refs := make([]nixpath.StorePath, 0, len(d.InputDerivations)+len(d.InputSources))
	for _, p := range append(slices.Sorted(maps.Keys(d.InputDerivations)), d.InputSources...) {
		sp, err := nixpath.ParseAbsolute(p)
		if err != nil {
			return nixpath.StorePath{}, fmt.Errorf("%w: %s: %v", ErrInvalid, d.Name, err)
		}
		refs = append(refs, sp)
	}
	return nixpath.MakeTextPath(d.Name+".drv", sha256.Sum256(d.Bytes()), refs)
}

// References returns the store paths a .drv file refers to: its input
// derivations and sources, sorted.
func (d *Derivation) References() ([]nixpath.StorePath, error) {
	var refs []nixpath.StorePath
	for _, p := range append(slices.Sorted(maps.Keys(d.InputDerivations)), d.InputSources...) {
		sp, err := nixpath.ParseAbsolute(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, d.Name, err)
		}
		refs = append(refs, sp)
	}
	slices.SortFunc(refs, nixpath.StorePath.Compare)
	return slices.CompactFunc(refs, func(a, b nixpath.StorePath) bool { return a == b }), nil
}

// Source gives derivations by .drv path.
type Source interface {
	// Derivation returns the parsed, validated derivation at drvPath (an
	// absolute store path), named after the path. It returns an error
	// wrapping ErrNotFound when the source does not have it. It is called
	// concurrently. The result may be shared: do not modify it.
	Derivation(ctx context.Context, drvPath string) (*Derivation, error)
}

// Hasher computes hashDerivationModulo and output paths, remembering the
// hashes of the input derivations it loads. It is safe for concurrent use.
type Hasher struct {
	src Source

	mu   sync.Mutex
	memo map[string]map[string][sha256.Size]byte
}

// NewHasher returns a Hasher that loads input derivations from src.
func NewHasher(src Source) *Hasher {
	return &Hasher{src: src, memo: map[string]map[string][sha256.Size]byte{}}
}

// HashModulo is Nix's hashDerivationModulo: for a fixed-output derivation
// the hash of "fixed:out:<method><algo>:<hex>:<path>", otherwise the
// SHA-256 of the ATerm with each input derivation replaced by its own
// hash modulo (in hex, grouped by hash as Nix does) and, with mask set,
// the output paths and the variables named after outputs blanked. It
// returns one hash per output (the same one for every output unless the
// derivation is fixed-output).
func (h *Hasher) HashModulo(ctx context.Context, d *Derivation, mask bool) (map[string][sha256.Size]byte, error) {
	kind, err := d.Kind()
	if err != nil {
		return nil, err
	}
	switch kind {
	case Fixed:
		o := d.Outputs["out"]
		ca, err := o.ContentAddress()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Name, err)
		}
		p, err := ca.StorePath(d.Name, nil, false)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, d.Name, err)
		}
		sum := sha256.Sum256([]byte("fixed:out:" + o.HashAlgo + ":" + o.Hash + ":" + p.Absolute()))
		return map[string][sha256.Size]byte{"out": sum}, nil
	case InputAddressed, Deferred:
	default:
		return nil, fmt.Errorf("%w: %s: hashDerivationModulo of %s derivations", ErrUnsupported, d.Name, kind)
	}
	inputs := map[string][]string{}
	for _, drvPath := range slices.Sorted(maps.Keys(d.InputDerivations)) {
		hashes, err := h.inputHashes(ctx, drvPath)
		if err != nil {
			return nil, fmt.Errorf("%s: input %s: %w", d.Name, drvPath, err)
		}
		for _, out := range d.InputDerivations[drvPath] {
			hh, ok := hashes[out]
			if !ok {
				return nil, fmt.Errorf("%w: %s: input %s has no output %q", ErrInvalid, d.Name, drvPath, out)
			}
			key := hex.EncodeToString(hh[:])
			if !slices.Contains(inputs[key], out) {
				inputs[key] = append(inputs[key], out)
				slices.Sort(inputs[key])
			}
		}
	}
	sum := sha256.Sum256(d.unparse(mask, inputs))
	res := make(map[string][sha256.Size]byte, len(d.Outputs))
	for name := range d.Outputs {
		res[name] = sum
	}
	return res, nil
}

// inputHashes returns the unmasked hash modulo of an input derivation,
// loading and computing it once.
func (h *Hasher) inputHashes(ctx context.Context, drvPath string) (map[string][sha256.Size]byte, error) {
	h.mu.Lock()
	m, ok := h.memo[drvPath]
	h.mu.Unlock()
	if ok {
		return m, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	d, err := h.src.Derivation(ctx, drvPath)
	if err != nil {
		return nil, err
	}
	m, err = h.HashModulo(ctx, d, false)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.memo[drvPath] = m
	h.mu.Unlock()
	return m, nil
}

// OutputPaths computes where each output must go: for input-addressed
// outputs from the masked hash modulo, for a fixed output from its
// content address. It does not look at the paths d states.
func (h *Hasher) OutputPaths(ctx context.Context, d *Derivation) (map[string]nixpath.StorePath, error) {
	kind, err := d.Kind()
	if err != nil {
		return nil, err
	}
	res := make(map[string]nixpath.StorePath, len(d.Outputs))
	if kind == Fixed {
		ca, err := d.Outputs["out"].ContentAddress()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.Name, err)
		}
		p, err := ca.StorePath(d.Name, nil, false)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, d.Name, err)
		}
		res["out"] = p
		return res, nil
	}
	if kind != InputAddressed && kind != Deferred {
		return nil, fmt.Errorf("%w: %s: output paths of %s derivations are known only after the build", ErrUnsupported, d.Name, kind)
	}
	hashes, err := h.HashModulo(ctx, d, true)
	if err != nil {
		return nil, err
	}
	for name := range d.Outputs {
		p, err := nixpath.MakeOutputPath(name, hashes[name], d.Name)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: output %s: %v", ErrInvalid, d.Name, name, err)
		}
		res[name] = p
	}
	return res, nil
}

// CheckOutputPaths verifies that the output paths d states are the ones
// OutputPaths computes, as Nix does before building.
func (h *Hasher) CheckOutputPaths(ctx context.Context, d *Derivation) error {
	want, err := h.OutputPaths(ctx, d)
	if err != nil {
		return err
	}
	for _, name := range d.OutputNames() {
		if got := d.Outputs[name].Path; got != want[name].Absolute() {
			return fmt.Errorf("%w: %s: output %q is %q but should be %s", ErrInvalid, d.Name, name, got, want[name].Absolute())
		}
	}
	return nil
}

// FillOutputPaths computes the output paths of a derivation whose outputs
// have no paths yet (as the evaluator makes them) and sets them in the
// outputs and in the environment variables named after the outputs, as
// Nix's derivationStrict does.
func (h *Hasher) FillOutputPaths(ctx context.Context, d *Derivation) error {
	paths, err := h.OutputPaths(ctx, d)
	if err != nil {
		return err
	}
	for name, p := range paths {
		o := d.Outputs[name]
		o.Path = p.Absolute()
		d.Outputs[name] = o
		d.Env[name] = o.Path
	}
	return nil
}
