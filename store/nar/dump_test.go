package nar_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nar/nartest"
)

// DumpPath writes what nix-store --dump writes, and a filter leaves
// entries out.
func TestDumpPathMatchesNix(t *testing.T) {
	nartest.NeedNix(t)
	for seed := range uint64(3) {
		root := filepath.Join(t.TempDir(), "t")
		nartest.GenTree(t, root, seed, nartest.TreeOptions{LargeFiles: seed == 0})
		var got bytes.Buffer
		if err := nar.DumpPath(context.Background(), &got, root, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), nartest.NixDump(t, root)) {
			t.Fatalf("seed %d: DumpPath differs from nix-store --dump", seed)
		}
		var filtered bytes.Buffer
		err := nar.DumpPath(context.Background(), &filtered, root, func(p string, typ fs.FileMode) bool {
			return !strings.HasSuffix(p, "/exec")
		})
		if err != nil {
			t.Fatal(err)
		}
		r := nar.NewReader(&filtered)
		for {
			h, err := r.Next()
			if err != nil {
				break
			}
			if h.Path == "/exec" {
				t.Fatal("filtered entry dumped")
			}
		}
	}
}

func TestDumpPathRefusesSockets(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Skip(err)
	}
	defer l.Close()
	var out bytes.Buffer
	if err := nar.DumpPath(context.Background(), &out, dir, nil); !errors.Is(err, nar.ErrUnsupportedFile) {
		t.Fatalf("dump of a socket: %v, want ErrUnsupportedFile", err)
	}
}
