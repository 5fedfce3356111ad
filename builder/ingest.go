package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"path"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixhash"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// errStopped tells an output's producer that ingestion no longer reads.
var errStopped = errors.New("ingestion stopped")

// Store is what ingestion writes to.
type Store struct {
	Blobs interface {
		castore.BlobIngester
		castore.BlobOpener
	}
	Directories castore.DirectoryIngester
	PathInfos   pathinfo.Putter
}

// OutputSpec says what one output of a build must become.
type OutputSpec struct {
	// Name is the output's name ("out", "dev"…), for messages.
	Name string
	// Path is the store path it is registered as; the build's output whose
	// base name is Path's base name.
	Path nixpath.StorePath
	// CA is the content address a fixed output must have (its hash is
	// the expected one); nil for input-addressed outputs.
	CA *nixpath.ContentAddress
}

// IngestOptions describe the build the outputs come from.
type IngestOptions struct {
	// Deriver is recorded in each PathInfo.
	Deriver *nixpath.StorePath
	// What names the build in errors ("/nix/store/…drv").
	What string
}

// Ingest turns the outputs of a successful build into store paths: each
// output's NAR goes into the castore while it is scanned for the hash
// parts in b.RefscanNeedles (each standing for the input or output whose
// hash part it is); a fixed output's hash is checked against its spec;
// then, once every output is in, their PathInfos are put, an output before
// the outputs that refer to it, and returned in the order of specs.
//
// A missing output fails with an error wrapping ErrNoOutput, a fixed
// output with the wrong hash with one wrapping ErrHashMismatch that shows
// both hashes as Nix does, a flat fixed output that is not a plain file,
// or one that refers to store paths, with one wrapping ErrInvalid; cycles
// between outputs are errors too. On any error no PathInfo is put.
func Ingest(ctx context.Context, st Store, b *Build, outs Outputs, specs []OutputSpec, opt IngestOptions) ([]*pathinfo.PathInfo, error) {
	known := map[string]nixpath.StorePath{}
	for _, in := range b.Inputs {
		if sp, err := nixpath.Parse(in.Name); err == nil {
			known[sp.HashPart()] = sp
		}
	}
	index := map[string]int{}
	for i, o := range b.Outputs {
		index[path.Base(o)] = i
	}
	for _, s := range specs {
		known[s.Path.HashPart()] = s.Path
	}

	infos := make([]*pathinfo.PathInfo, len(specs))
	for k, spec := range specs {
		i, ok := index[spec.Path.String()]
		if !ok {
			return nil, fmt.Errorf("%w: %s: output %s (%s) is not an output of the build", ErrInvalid, opt.What, spec.Name, spec.Path)
		}
		info, err := ingestOne(ctx, st, b, outs, i, spec, known, opt)
		if err != nil {
			return nil, err
		}
		infos[k] = info
	}
	order, err := outputOrder(specs, infos, opt.What)
	if err != nil {
		return nil, err
	}
	for _, k := range order {
		stored, err := st.PathInfos.Put(ctx, infos[k])
		if err != nil {
			return nil, fmt.Errorf("%s: registering output %s: %w", opt.What, specs[k].Name, err)
		}
		infos[k] = stored
	}
	return infos, nil
}

func ingestOne(ctx context.Context, st Store, b *Build, outs Outputs, i int, spec OutputSpec, known map[string]nixpath.StorePath, opt IngestOptions) (*pathinfo.PathInfo, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		err := outs.WriteNAR(ctx, i, pw)
		pw.CloseWithError(err)
		werr <- err
	}()

	scanner := NewScanner(b.RefscanNeedles)
	sinks := []io.Writer{scanner}
	var caHash hash.Hash
	if spec.CA != nil && spec.CA.Method == nixpath.Recursive && spec.CA.Hash.Algo() != nixhash.SHA256 {
		caHash = spec.CA.Hash.Algo().Func().New()
		sinks = append(sinks, caHash)
	}
	root, narSize, narSHA256, err := nar.Ingest(ctx, io.TeeReader(pr, io.MultiWriter(sinks...)), st.Blobs, st.Directories)
	pr.CloseWithError(errStopped)
	cancel()
	we := <-werr
	switch {
	case err != nil && we != nil && !errors.Is(we, errStopped) && !errors.Is(we, context.Canceled):
		// The producer's error explains the reader's (a missing output).
		return nil, fmt.Errorf("%s: output %s: %w", opt.What, spec.Name, we)
	case err != nil:
		return nil, fmt.Errorf("%s: output %s: %w", opt.What, spec.Name, err)
	case we != nil && !errors.Is(we, context.Canceled):
		return nil, fmt.Errorf("%s: output %s: %w", opt.What, spec.Name, we)
	}

	info := &pathinfo.PathInfo{
		StorePath: spec.Path,
		Node:      root,
		NarSize:   narSize,
		NarSHA256: narSHA256,
		Deriver:   opt.Deriver,
	}
	self := false
	for _, h := range scanner.Found() {
		sp, ok := known[h]
		if !ok {
			continue
		}
		if sp == spec.Path {
			self = true
		}
		info.References = append(info.References, sp)
	}
	info.SortReferences()

	if spec.CA != nil {
		got, err := contentHash(ctx, st, spec, root, narSHA256, caHash)
		if err != nil {
			return nil, fmt.Errorf("%s: output %s: %w", opt.What, spec.Name, err)
		}
		if !bytes.Equal(got.Digest(), spec.CA.Hash.Digest()) {
			return nil, fmt.Errorf("%w '%s':\n  specified: %s\n     got:    %s", ErrHashMismatch, opt.What,
				spec.CA.Hash.Format(nixhash.SRI, true), got.Format(nixhash.SRI, true))
		}
		if self || len(info.References) > 0 {
			names := make([]string, len(info.References))
			for i, r := range info.References {
				names[i] = r.Absolute()
			}
			return nil, fmt.Errorf("%w: %s: fixed output %s refers to store paths (%s); castor does not register fixed outputs with references", ErrUnsupported, opt.What, spec.Name, strings.Join(names, ", "))
		}
		ca := nixpath.ContentAddress{Method: spec.CA.Method, Hash: got}
		info.CA = &ca
	}
	if err := info.Validate(); err != nil {
		return nil, fmt.Errorf("%s: output %s: %w", opt.What, spec.Name, err)
	}
	return info, nil
}

// contentHash computes what a fixed output's content address hashes: the
// file's contents (flat, text) or the NAR (recursive).
func contentHash(ctx context.Context, st Store, spec OutputSpec, root castore.Node, narSHA256 [32]byte, caHash hash.Hash) (*nixhash.Hash, error) {
	algo := spec.CA.Hash.Algo()
	switch spec.CA.Method {
	case nixpath.Recursive:
		if caHash == nil {
			return nixpath.SHA256Hash(narSHA256), nil
		}
		return nixhash.NewHash(algo, caHash.Sum(nil))
	default:
		if root.Kind != castore.KindFile || root.Executable && spec.CA.Method == nixpath.Flat {
			kind := root.Kind.String()
			if root.Executable {
				kind = "executable file"
			}
			return nil, fmt.Errorf("%w: the output is a %s; it should be a non-executable regular file since recursive hashing is not enabled (outputHashMode=flat)", ErrInvalid, kind)
		}
		r, err := st.Blobs.OpenBlob(ctx, root.Digest)
		if err != nil {
			return nil, err
		}
		defer r.Close()
		h := algo.Func().New()
		if _, err := io.Copy(h, r); err != nil {
			return nil, err
		}
		return nixhash.NewHash(algo, h.Sum(nil))
	}
}

// outputOrder sorts outputs so that each comes after the outputs it refers
// to, failing on cycles as Nix does.
func outputOrder(specs []OutputSpec, infos []*pathinfo.PathInfo, what string) ([]int, error) {
	byPath := map[nixpath.StorePath]int{}
	for k, s := range specs {
		byPath[s.Path] = k
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(specs))
	var order []int
	var visit func(k, from int) error
	visit = func(k, from int) error {
		switch state[k] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("%w: %s: cycle detected in the references of output '%s' from output '%s'", ErrInvalid, what, specs[k].Name, specs[from].Name)
		}
		state[k] = visiting
		for _, r := range infos[k].References {
			if j, ok := byPath[r]; ok && j != k {
				if err := visit(j, k); err != nil {
					return err
				}
			}
		}
		state[k] = done
		order = append(order, k)
		return nil
	}
	keys := make([]int, len(specs))
	for k := range keys {
		keys[k] = k
	}
	slices.SortFunc(keys, func(a, b int) int { return strings.Compare(specs[a].Name, specs[b].Name) })
	for _, k := range keys {
		if err := visit(k, k); err != nil {
			return nil, err
		}
	}
	return order, nil
}
