package binarycache_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/binarycache"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nar/nartest"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
	"github.com/castor-nix/castor/store/pathinfo/layered"
	pimemory "github.com/castor-nix/castor/store/pathinfo/memory"
)

// fixture is a Nix store with a few paths, copied into binary caches.
type fixture struct {
	nix    *testenv.Nix
	paths  []string // absolute store paths, closure order irrelevant
	pubKey string
	caches map[string]string // compression -> cache dir
}

var fx *fixture

func setup(t *testing.T) *fixture {
	t.Helper()
	if fx != nil {
		return fx
	}
	nix := testenv.NewNix(t)
	dir, err := os.MkdirTemp("", "castor-bc-")
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: the fixture is shared by the tests of this package.
	nix.Root = filepath.Join(dir, "nixroot")
	f := &fixture{nix: nix, caches: map[string]string{}}
	tree := filepath.Join(dir, "tree")
	nartest.GenTree(t, tree, 5, nartest.TreeOptions{Entries: 60, LargeFiles: true})
	f.paths = append(f.paths, nix.Run("nix-store", "--add", tree))
	// A chain of text paths with references: c -> b -> a.
	out := nix.Run("nix-instantiate", "--read-write-mode", "--eval", "-E",
		`let a = builtins.toFile "a" "hello"; b = builtins.toFile "b" "ref ${a}"; in builtins.toFile "c" "refs ${b} ${a}"`)
	c := strings.Trim(out, `"`)
	f.paths = append(f.paths, c)
	for _, r := range strings.Fields(nix.Run("nix-store", "-qR", c)) {
		if r != c {
			f.paths = append(f.paths, r)
		}
	}
	sk, pk := filepath.Join(dir, "sk"), filepath.Join(dir, "pk")
	nix.Run("nix-store", "--generate-binary-cache-key", "castor-test-1", sk, pk)
	pkData, _ := os.ReadFile(pk)
	f.pubKey = strings.TrimSpace(string(pkData))
	for _, comp := range []string{"none", "xz", "zstd", "bzip2"} {
		cache := filepath.Join(dir, "cache-"+comp)
		args := append([]string{"copy", "--to", fmt.Sprintf("file://%s?compression=%s&secret-key=%s", cache, comp, sk)}, f.paths...)
		nix.Run("nix", args...)
		f.caches[comp] = cache
	}
	fx = f
	return f
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fx != nil {
		os.RemoveAll(filepath.Dir(fx.nix.Root))
	}
	os.Exit(code)
}

// local is a castor store in memory with a cache layered behind it.
type local struct {
	blobs *memory.BlobService
	dirs  *memory.DirectoryService
	near  *pimemory.Service
	svc   *layered.Service
}

func newLocal(t *testing.T, cacheURL string) *local {
	t.Helper()
	l := &local{blobs: memory.NewBlobService(), dirs: memory.NewDirectoryService(), near: pimemory.New()}
	far, err := binarycache.New(cacheURL, l.blobs, l.dirs)
	if err != nil {
		t.Fatal(err)
	}
	l.svc = layered.New(l.near, far)
	return l
}

func digestOf(t *testing.T, abs string) [20]byte {
	p, err := nixpath.ParseAbsolute(abs)
	if err != nil {
		t.Fatal(err)
	}
	return p.Digest
}

// TestCachesMatchNix fetches every path from caches in each compression,
// over HTTP and from files, and compares the NAR castor renders with Nix's
// and the PathInfo with the narinfo.
func TestCachesMatchNix(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	for comp, dir := range f.caches {
		srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
		defer srv.Close()
		for _, base := range []string{"nix+" + srv.URL, "nix+file://" + dir} {
			t.Run(comp+"/"+strings.SplitN(base, ":", 2)[0], func(t *testing.T) {
				l := newLocal(t, base+"?trusted-public-keys="+f.pubKey)
				for _, p := range f.paths {
					info, err := l.svc.Get(ctx, digestOf(t, p))
					if err != nil {
						t.Fatalf("%s: %v", p, err)
					}
					var got bytes.Buffer
					if err := nar.Render(ctx, &got, info.Node, l.blobs, l.dirs); err != nil {
						t.Fatal(err)
					}
					want, err := f.nix.Output(nil, "nix-store", "--dump", f.nix.RealPath(p))
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got.Bytes(), want) {
						t.Fatalf("%s: NAR differs from Nix's", p)
					}
					ni, err := os.ReadFile(filepath.Join(dir, info.StorePath.HashPart()+".narinfo"))
					if err != nil {
						t.Fatal(err)
					}
					parsed, err := binarycache.ParseNarInfo(ni)
					if err != nil {
						t.Fatal(err)
					}
					if nixpath.FormatSHA256(info.NarSHA256) != parsed.NarHash.Format(2+1, true) || info.NarSize != parsed.NarSize {
						t.Errorf("%s: NarHash/NarSize differ from the narinfo", p)
					}
					if len(info.Signatures) != 1 || info.Signatures[0].String() != parsed.Signatures[0].String() {
						t.Errorf("%s: signatures %v, narinfo %v", p, info.Signatures, parsed.Signatures)
					}
					if fmt.Sprint(info.References) != fmt.Sprint(parsed.References) {
						t.Errorf("%s: references %v, narinfo %v", p, info.References, parsed.References)
					}
					// Recorded near: the second lookup needs no cache.
					if _, err := l.near.Get(ctx, info.StorePath.Digest); err != nil {
						t.Errorf("%s not recorded locally: %v", p, err)
					}
				}
			})
		}
	}
}

// hostile serves a cache directory with a fault injected.
type hostile struct {
	dir      string
	narinfo  func(path string, data []byte) []byte // rewrite narinfos
	nar      func(data []byte) []byte              // rewrite NAR files
	status   func(path string) int                 // force a status
	truncate func(path string) bool                // cut the body in half
	requests atomic.Int64
}

func (h *hostile) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	if h.status != nil {
		if code := h.status(r.URL.Path); code != 0 {
			http.Error(w, "injected", code)
			return
		}
	}
	data, err := os.ReadFile(filepath.Join(h.dir, filepath.Clean(r.URL.Path)))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	if strings.HasSuffix(r.URL.Path, ".narinfo") && h.narinfo != nil {
		data = h.narinfo(r.URL.Path, data)
	}
	if strings.HasPrefix(r.URL.Path, "/nar/") && h.nar != nil {
		data = h.nar(data)
	}
	if h.truncate != nil && h.truncate(r.URL.Path) {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.Write(data[:len(data)/2])
		return // the client sees an unexpected EOF
	}
	w.Write(data)
}

func dropLines(data []byte, keys ...string) []byte {
	for _, k := range keys {
		data = regexp.MustCompile("(?m)^"+k+":.*\n").ReplaceAll(data, nil)
	}
	return data
}

func TestHostileCaches(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	treePath := f.paths[0]
	// What the tree's root would be if ingested: it must not appear.
	want, _ := f.nix.Output(nil, "nix-store", "--dump", f.nix.RealPath(treePath))
	ref := memory.NewDirectoryService()
	root, _, _, err := nar.Ingest(ctx, bytes.NewReader(want), memory.NewBlobService(), ref)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := "other-1:" + strings.SplitN(f.pubKey, ":", 2)[1]
	_, wrongKeyPub := func() (string, string) {
		d := t.TempDir()
		f.nix.Run("nix-store", "--generate-binary-cache-key", "castor-test-1", d+"/sk", d+"/pk")
		b, _ := os.ReadFile(d + "/pk")
		return "", strings.TrimSpace(string(b))
	}()

	cases := []struct {
		name    string
		h       *hostile
		key     string
		wantErr error // nil: any error
		ok      bool  // expect success (retries)
	}{
		{name: "wrong signature", key: f.pubKey, wantErr: binarycache.ErrUntrusted, h: &hostile{narinfo: func(_ string, d []byte) []byte {
			return regexp.MustCompile(`(Sig: castor-test-1:)(.)`).ReplaceAllFunc(d, func(m []byte) []byte {
				// Another valid base64 character: the signature decodes but
				// no longer matches.
				m = bytes.Clone(m)
				if m[len(m)-1] == 'A' {
					m[len(m)-1] = 'B'
				} else {
					m[len(m)-1] = 'A'
				}
				return m
			})
		}}},
		{name: "key of another name", key: otherKey, wantErr: binarycache.ErrUntrusted, h: &hostile{}},
		{name: "same name, other key", key: wrongKeyPub, wantErr: binarycache.ErrUntrusted, h: &hostile{}},
		{name: "unsigned", key: f.pubKey, wantErr: binarycache.ErrUntrusted, h: &hostile{narinfo: func(_ string, d []byte) []byte { return dropLines(d, "Sig") }}},
		{name: "NAR does not match NarHash", key: f.pubKey, h: &hostile{
			narinfo: func(_ string, d []byte) []byte { return dropLines(d, "FileHash", "FileSize") },
			nar: func(d []byte) []byte {
				d = bytes.Clone(d)
				// Flip a byte inside file contents, far from the structure.
				i := bytes.LastIndex(d, []byte("contents")) + 24
				d[i] ^= 0x20
				return d
			}}},
		{name: "FileHash mismatch", key: f.pubKey, h: &hostile{nar: func(d []byte) []byte {
			d = bytes.Clone(d)
			d[len(d)-20] ^= 1
			return d
		}}},
		{name: "FileHash wrong, NAR right", key: f.pubKey, h: &hostile{narinfo: func(_ string, d []byte) []byte {
			// Uncompressed, the FileHash is checked against the NAR's
			// hash: an unsigned FileHash that differs is still refused.
			return regexp.MustCompile("(?m)^FileHash: .*$").ReplaceAll(d, []byte("FileHash: sha256:"+strings.Repeat("0", 52)))
		}}},
		{name: "truncated download", key: f.pubKey, h: &hostile{truncate: func(p string) bool { return strings.HasPrefix(p, "/nar/") }}},
		{name: "narinfo 404", key: f.pubKey, wantErr: pathinfo.ErrNotFound, h: &hostile{status: func(p string) int {
			if strings.HasSuffix(p, ".narinfo") {
				return 404
			}
			return 0
		}}},
		{name: "NAR 404", key: f.pubKey, h: &hostile{status: func(p string) int {
			if strings.HasPrefix(p, "/nar/") {
				return 404
			}
			return 0
		}}},
		{name: "missing StorePath", key: f.pubKey, wantErr: binarycache.ErrInvalid, h: &hostile{narinfo: func(_ string, d []byte) []byte { return dropLines(d, "StorePath") }}},
		{name: "missing NarHash", key: f.pubKey, wantErr: binarycache.ErrInvalid, h: &hostile{narinfo: func(_ string, d []byte) []byte { return dropLines(d, "NarHash") }}},
		{name: "always 500", key: f.pubKey, h: &hostile{status: func(string) int { return 500 }}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.h.dir = f.caches["none"]
			srv := httptest.NewServer(c.h)
			defer srv.Close()
			l := newLocal(t, "nix+"+srv.URL+"?trusted-public-keys="+c.key)
			_, err := l.svc.Get(ctx, digestOf(t, treePath))
			if err == nil {
				t.Fatal("lookup succeeded")
			}
			t.Logf("error: %v", err)
			if c.wantErr != nil && !errors.Is(err, c.wantErr) {
				t.Errorf("error %v, want %v", err, c.wantErr)
			}
			if _, err := l.near.Get(ctx, digestOf(t, treePath)); !errors.Is(err, pathinfo.ErrNotFound) {
				t.Errorf("path recorded locally after a failed fetch: %v", err)
			}
			if _, err := l.dirs.GetDirectory(ctx, root.Digest); !errors.Is(err, castore.ErrNotFound) {
				t.Errorf("directories of a rejected NAR were committed")
			}
		})
	}

	// Transient failures are retried: 500 twice, then the truth; a body
	// cut short once.
	var fails atomic.Int64
	h := &hostile{dir: f.caches["xz"], status: func(p string) int {
		if fails.Add(1) <= 2 {
			return 500
		}
		return 0
	}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	l := newLocal(t, "nix+"+srv.URL+"?trusted-public-keys="+f.pubKey)
	if _, err := l.svc.Get(ctx, digestOf(t, treePath)); err != nil {
		t.Fatalf("500, 500, then 200: %v", err)
	}
	var cut atomic.Int64
	h2 := &hostile{dir: f.caches["zstd"], truncate: func(p string) bool { return strings.HasPrefix(p, "/nar/") && cut.Add(1) == 1 }}
	srv2 := httptest.NewServer(h2)
	defer srv2.Close()
	l = newLocal(t, "nix+"+srv2.URL+"?trusted-public-keys="+f.pubKey)
	if _, err := l.svc.Get(ctx, digestOf(t, treePath)); err != nil {
		t.Fatalf("NAR cut short once, then whole: %v", err)
	}
}

func TestSingleFlightAndMissCache(t *testing.T) {
	f := setup(t)
	ctx := context.Background()
	h := &hostile{dir: f.caches["zstd"]}
	srv := httptest.NewServer(h)
	defer srv.Close()
	l := newLocal(t, "nix+"+srv.URL+"?trusted-public-keys="+f.pubKey)
	d := digestOf(t, f.paths[0])
	errs := make(chan error, 16)
	for range 16 {
		go func() { _, err := l.svc.Get(ctx, d); errs <- err }()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// nix-cache-info, the narinfo and the NAR: once each.
	if n := h.requests.Load(); n != 3 {
		t.Errorf("16 concurrent lookups made %d requests, want 3", n)
	}
	missing := nixpath.StorePath{Name: "x"}
	missing.Digest[0] = 1
	for range 3 {
		if _, err := l.svc.Get(ctx, missing.Digest); !errors.Is(err, pathinfo.ErrNotFound) {
			t.Fatalf("missing path: %v", err)
		}
	}
	if n := h.requests.Load(); n != 4 {
		t.Errorf("three lookups of a missing path made %d requests in all, want 4 (one miss, then cached)", n)
	}
}

func TestURLErrors(t *testing.T) {
	for _, u := range []string{
		"nix+http://example.org",                            // no keys
		"nix+ftp://example.org?unsigned=accept",             // scheme
		"nix+file://host/dir?unsigned=accept",               // host in file URL
		"nix+http://x?trusted-public-keys=bad",              // key
		"nix+http://x?unsigned=maybe",                       // value
		"nix+http://x?trusted-public-keys=a:AAAA&unsigned=", // short key
	} {
		if _, err := binarycache.New(u, nil, nil); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}
