package nar_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/castor-nix/castor/store/nar"
)

// TestWriterRejects: the Writer refuses to write what the Reader would
// reject, and says why.
func TestWriterRejects(t *testing.T) {
	dirH := func(p string) *nar.Header { return &nar.Header{Path: p, Type: nar.TypeDirectory} }
	fileH := func(p string, n int64) *nar.Header { return &nar.Header{Path: p, Type: nar.TypeRegular, Size: n} }
	linkH := func(p, target string) *nar.Header {
		return &nar.Header{Path: p, Type: nar.TypeSymlink, LinkTarget: target}
	}
	for name, c := range map[string]struct {
		headers []*nar.Header
		data    string // written after the last header
		want    string
	}{
		"root not /":      {[]*nar.Header{fileH("/a", 0)}, "", `must have path "/"`},
		"unsorted":        {[]*nar.Header{dirH("/"), fileH("/b", 0), fileH("/a", 0)}, "", "does not sort after"},
		"duplicate":       {[]*nar.Header{dirH("/"), fileH("/a", 0), dirH("/a")}, "", "does not sort after"},
		"dotdot":          {[]*nar.Header{dirH("/"), fileH("/..", 0)}, "", `".."`},
		"empty name":      {[]*nar.Header{dirH("/"), fileH("/a/", 0)}, "", "empty entry name"},
		"NUL":             {[]*nar.Header{dirH("/"), fileH("/a\x00", 0)}, "", "NUL"},
		"long name":       {[]*nar.Header{dirH("/"), fileH("/"+strings.Repeat("x", 256), 0)}, "", "longer than 255"},
		"not in open dir": {[]*nar.Header{dirH("/"), dirH("/a"), fileH("/b/c", 0)}, "", "not inside an open directory"},
		"child of file":   {[]*nar.Header{dirH("/"), fileH("/a", 0), fileH("/a/b", 0)}, "", "not inside an open directory"},
		"second root":     {[]*nar.Header{fileH("/", 0), fileH("/", 0)}, "", "second root"},
		"short contents":  {[]*nar.Header{dirH("/"), fileH("/a", 5), fileH("/b", 0)}, "", "5 bytes of contents missing"},
		"long contents":   {[]*nar.Header{fileH("/", 2)}, "abc", "longer than the header's size"},
		"negative size":   {[]*nar.Header{fileH("/", -1)}, "", "negative size"},
		"empty target":    {[]*nar.Header{linkH("/", "")}, "", "empty symlink target"},
		"target NUL":      {[]*nar.Header{linkH("/", "a\x00")}, "", "NUL"},
		"write to dir":    {[]*nar.Header{dirH("/")}, "x", "outside a regular file"},
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			w := nar.NewWriter(&buf)
			var err error
			for _, h := range c.headers {
				if err = w.WriteHeader(h); err != nil {
					break
				}
			}
			if err == nil && c.data != "" {
				_, err = w.Write([]byte(c.data))
			}
			if err == nil {
				err = w.Close()
			}
			if !errors.Is(err, nar.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrInvalid saying %q", err, c.want)
			}
			// The error sticks.
			if err2 := w.Close(); !errors.Is(err2, nar.ErrInvalid) {
				t.Fatalf("Close after error: %v", err2)
			}
		})
	}
	t.Run("no root", func(t *testing.T) {
		if err := nar.NewWriter(&bytes.Buffer{}).Close(); !errors.Is(err, nar.ErrInvalid) {
			t.Fatalf("got %v", err)
		}
	})
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n < len(p) {
		return 0, errBoom
	}
	f.n -= len(p)
	return len(p), nil
}

// TestWriterDestinationError: a failing destination is reported as itself.
func TestWriterDestinationError(t *testing.T) {
	w := nar.NewWriter(&failWriter{n: 10})
	w.WriteHeader(&nar.Header{Path: "/", Type: nar.TypeRegular, Size: 1 << 20})
	_, err := w.Write(make([]byte, 1<<20))
	if err == nil {
		err = w.Close()
	}
	if !errors.Is(err, errBoom) || errors.Is(err, nar.ErrInvalid) {
		t.Fatalf("got %v", err)
	}
}
