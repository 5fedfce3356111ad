package pathinfotest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// Sample returns a fully populated PathInfo (every field set) whose store
// path is derived from seed.
func Sample(seed int) *pathinfo.PathInfo {
	mk := func(s string) nixpath.StorePath {
		p, err := nixpath.MakeSourcePath(sha256.Sum256([]byte(s)), s, nil, false)
		if err != nil {
			panic(err)
		}
		return p
	}
	self := mk(fmt.Sprintf("sample-%d", seed))
	dep := mk("dep")
	drv := mk(fmt.Sprintf("sample-%d.drv", seed))
	p := &pathinfo.PathInfo{
		StorePath:  self,
		Node:       castore.Node{Kind: castore.KindDirectory, Digest: castore.Sum([]byte(self.Name)), Size: 42},
		References: []nixpath.StorePath{self, dep},
		NarSize:    1234,
		NarSHA256:  sha256.Sum256([]byte("nar of " + self.Name)),
		Signatures: []pathinfo.Signature{{Name: "cache.example.org-1", Data: bytes.Repeat([]byte{byte(seed)}, 64)}},
		Deriver:    &drv,
		CA:         &nixpath.ContentAddress{Method: nixpath.Recursive, Hash: nixpath.SHA256Hash(sha256.Sum256([]byte(self.Name)))},
	}
	p.SortReferences()
	return p
}

// Equal reports whether two path infos carry the same information.
func Equal(a, b *pathinfo.PathInfo) bool {
	return bytes.Equal(a.Marshal(), b.Marshal())
}

// Run runs the suite. newService returns a fresh, empty service.
func Run(t *testing.T, newService func(t *testing.T) pathinfo.Service) {
	ctx := context.Background()

	t.Run("PutGet", func(t *testing.T) {
		svc := newService(t)
		want := Sample(1)
		if _, err := svc.Put(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := svc.Get(ctx, want.StorePath.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if !Equal(got, want) {
			t.Fatalf("got %+v\nwant %+v", got, want)
		}
		// Symlink and file roots, no optional fields.
		for i, n := range []castore.Node{
			{Kind: castore.KindFile, Digest: castore.EmptyDigest, Executable: true},
			{Kind: castore.KindSymlink, Target: "/nix/store/elsewhere"},
		} {
			p := Sample(10 + i)
			p.Node, p.References, p.Signatures, p.Deriver, p.CA = n, nil, nil, nil, nil
			if _, err := svc.Put(ctx, p); err != nil {
				t.Fatal(err)
			}
			got, err := svc.Get(ctx, p.StorePath.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if !Equal(got, p) {
				t.Errorf("got %+v\nwant %+v", got, p)
			}
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		svc := newService(t)
		if _, err := svc.Get(ctx, Sample(2).StorePath.Digest); !errors.Is(err, pathinfo.ErrNotFound) {
			t.Fatalf("Get of unknown path: %v, want ErrNotFound", err)
		}
	})

	t.Run("Replace", func(t *testing.T) {
		svc := newService(t)
		p := Sample(3)
		if _, err := svc.Put(ctx, p); err != nil {
			t.Fatal(err)
		}
		q := Sample(3)
		q.Signatures = append(q.Signatures, pathinfo.Signature{Name: "other-1", Data: make([]byte, 64)})
		if _, err := svc.Put(ctx, q); err != nil {
			t.Fatal(err)
		}
		got, err := svc.Get(ctx, p.StorePath.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Signatures) != 2 {
			t.Fatalf("after replace: %d signatures, want 2", len(got.Signatures))
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		svc := newService(t)
		bad := []func(p *pathinfo.PathInfo){
			func(p *pathinfo.PathInfo) { p.NarSize = 0 },
			func(p *pathinfo.PathInfo) { p.Signatures[0].Data = []byte{1} },
			func(p *pathinfo.PathInfo) { p.References = append(p.References, p.References[0]) },
			func(p *pathinfo.PathInfo) { p.Node = castore.Node{Kind: castore.KindSymlink} },
			func(p *pathinfo.PathInfo) { d := *p.Deriver; d.Name = "notadrv"; p.Deriver = &d },
		}
		for i, mut := range bad {
			p := Sample(20 + i)
			mut(p)
			if _, err := svc.Put(ctx, p); !errors.Is(err, pathinfo.ErrInvalid) {
				t.Errorf("case %d: Put of invalid path info: %v, want ErrInvalid", i, err)
			}
			if _, err := svc.Get(ctx, p.StorePath.Digest); !errors.Is(err, pathinfo.ErrNotFound) {
				t.Errorf("case %d: invalid path info became visible: %v", i, err)
			}
		}
	})

	t.Run("List", func(t *testing.T) {
		svc := newService(t)
		want := map[string]bool{}
		for i := range 50 {
			p := Sample(100 + i)
			want[p.StorePath.String()] = true
			if _, err := svc.Put(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		got := map[string]bool{}
		for p, err := range svc.List(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			if got[p.StorePath.String()] {
				t.Errorf("listed %s twice", p.StorePath)
			}
			got[p.StorePath.String()] = true
		}
		if len(got) != len(want) {
			t.Fatalf("listed %d paths, want %d", len(got), len(want))
		}
		for k := range want {
			if !got[k] {
				t.Errorf("%s not listed", k)
			}
		}
		n := 0
		for range svc.List(ctx) {
			n++
			if n == 3 {
				break
			}
		}
	})
}
