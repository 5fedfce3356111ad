package buildertest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/builder/sandbox"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/fsimport"
	"github.com/castor-nix/castor/store/nar"
)

// Store names of the input trees.
const (
	BusyboxName = "0gqvxzj58js4xp7hc6fbi0cw9p6cyn5p-busybox"
	DataName    = "1lak0mvllw8rv9i9ygkglvhqsq19qi9y-data"
	OtherName   = "fbbr2jq7ri5g2ic7fd46dy37vgdyxmyc-not-an-input"
)

// AddTree imports a host tree into the castore.
func AddTree(t testing.TB, bs castore.BlobIngester, ds castore.DirectoryIngester, dir string) castore.Node {
	t.Helper()
	n, _, _, err := fsimport.Import(context.Background(), dir, bs, ds, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Inputs makes a busybox tree (bin/busybox, bin/sh) and a data tree (file
// with "input data\n", empty sub/) as build inputs, and puts a third tree
// (secret) in the castore that is not an input.
func Inputs(t testing.TB, bs castore.BlobIngester, ds castore.DirectoryIngester) []castore.NamedNode {
	t.Helper()
	bb := t.TempDir()
	os.MkdirAll(filepath.Join(bb, "bin"), 0o755)
	data, err := os.ReadFile(sandbox.FindShell())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bb, "bin/busybox"), data, 0o755)
	os.Symlink("busybox", filepath.Join(bb, "bin/sh"))
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "file"), []byte("input data\n"), 0o644)
	os.Mkdir(filepath.Join(d, "sub"), 0o755)
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "secret"), []byte("not for this build"), 0o644)
	AddTree(t, bs, ds, other)
	return []castore.NamedNode{
		{Name: BusyboxName, Node: AddTree(t, bs, ds, bb)},
		{Name: DataName, Node: AddTree(t, bs, ds, d)},
	}
}

// NAROf returns output i of outs as a NAR.
func NAROf(t testing.TB, outs builder.Outputs, i int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := outs.WriteNAR(context.Background(), i, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// NARFiles lists a NAR's entries as path -> "type:contents".
func NARFiles(t testing.TB, data []byte) map[string]string {
	t.Helper()
	r := nar.NewReader(bytes.NewReader(data))
	files := map[string]string{}
	for {
		h, err := r.Next()
		if err != nil {
			break
		}
		var b bytes.Buffer
		b.ReadFrom(r)
		files[h.Path] = h.Type.String() + ":" + b.String()
	}
	return files
}
