package storeroots_test

import (
	"context"
	"errors"
	"testing"

	"github.com/castor-nix/castor/fs/storeroots"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
	pimemory "github.com/castor-nix/castor/store/pathinfo/memory"
)

func TestResolver(t *testing.T) {
	ctx := context.Background()
	infos := pimemory.New()
	var paths []nixpath.StorePath
	for i, name := range []string{"hello-2.12", "lib.so", "x"} {
		sp := nixpath.StorePath{Name: name}
		sp.Digest[0], sp.Digest[19] = byte(i+1), 7
		node := castore.Node{Kind: castore.KindSymlink, Target: "target-" + name}
		if _, err := infos.Put(ctx, &pathinfo.PathInfo{StorePath: sp, Node: node, NarSize: 100}); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, sp)
	}
	r := &storeroots.Resolver{Infos: infos}
	for _, sp := range paths {
		n, err := r.LookupRoot(ctx, sp.String())
		if err != nil || n.Target != "target-"+sp.Name {
			t.Errorf("%s: %+v, %v", sp, n, err)
		}
	}
	other := paths[0]
	other.Name = "other"
	missing := paths[0]
	missing.Digest[5] = 99
	for _, c := range []struct {
		name string
		want error
	}{
		{other.String(), castore.ErrNotFound},
		{missing.String(), castore.ErrNotFound},
		{"hello", castore.ErrInvalid},
		{paths[0].HashPart(), castore.ErrInvalid},
		{paths[0].HashPart() + "-", castore.ErrInvalid},
		{paths[0].HashPart() + "-.dot", castore.ErrInvalid},
		{"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-bad-alphabet", castore.ErrInvalid},
	} {
		if _, err := r.LookupRoot(ctx, c.name); !errors.Is(err, c.want) {
			t.Errorf("%q: %v, want %v", c.name, err, c.want)
		}
	}
	listed := map[string]string{}
	for nn, err := range r.ListRoots(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		listed[nn.Name] = nn.Target
	}
	if len(listed) != 3 || listed[paths[1].String()] != "target-lib.so" {
		t.Errorf("listing %v", listed)
	}
	getterOnly := &storeroots.Resolver{Infos: struct{ pathinfo.Getter }{infos}}
	for _, err := range getterOnly.ListRoots(ctx) {
		if err == nil {
			t.Errorf("listing through a service that cannot list: no error")
		}
	}
}
