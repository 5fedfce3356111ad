package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/nar/nartest"
)

// cacheFixture is a Nix store whose paths Nix 2.8 copied into signed
// binary caches, one per compression.
type cacheFixture struct {
	nix    *testenv.Nix
	tree   string   // a generated tree with large files
	chain  []string // c -> b -> a: c refers to b and a, b to a
	pubKey string
	caches map[string]string
}

func newCacheFixture(t *testing.T) *cacheFixture {
	nix := testenv.NewNix(t)
	f := &cacheFixture{nix: nix, caches: map[string]string{}}
	src := filepath.Join(t.TempDir(), "tree")
	nartest.GenTree(t, src, 11, nartest.TreeOptions{Entries: 80, LargeFiles: true})
	f.tree = nix.Run("nix-store", "--add", src)
	c := strings.Trim(nix.Run("nix-instantiate", "--read-write-mode", "--eval", "-E",
		`let a = builtins.toFile "a" "hello"; b = builtins.toFile "b" "ref ${a}"; in builtins.toFile "c" "refs ${b} ${a}"`), `"`)
	f.chain = []string{c}
	for _, r := range strings.Fields(nix.Run("nix-store", "-qR", c)) {
		if r != c {
			f.chain = append(f.chain, r)
		}
	}
	dir := t.TempDir()
	nix.Run("nix-store", "--generate-binary-cache-key", "e2e-cache-1", dir+"/sk", dir+"/pk")
	pk, _ := os.ReadFile(dir + "/pk")
	f.pubKey = strings.TrimSpace(string(pk))
	for _, comp := range []string{"none", "xz", "zstd"} {
		cache := filepath.Join(dir, "cache-"+comp)
		nix.Run("nix", append([]string{"copy", "--to", fmt.Sprintf("file://%s?compression=%s&secret-key=%s", cache, comp, dir+"/sk"), f.tree}, f.chain...)...)
		f.caches[comp] = cache
	}
	return f
}

// requestLog serves a directory and remembers the paths asked for.
type requestLog struct {
	mu   sync.Mutex
	seen []string
	h    http.Handler
}

func (l *requestLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	l.seen = append(l.seen, r.URL.Path)
	l.mu.Unlock()
	l.h.ServeHTTP(w, r)
}

func (l *requestLog) asked(suffix string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.seen {
		if strings.HasSuffix(s, suffix) {
			return true
		}
	}
	return false
}

func hashPart(p string) string { return strings.SplitN(filepath.Base(p), "-", 2)[0] }

// narinfoFields picks the lines of a narinfo that `castor store path-info`
// prints the same way.
func narinfoFields(t *testing.T, cache, p string) []string {
	data, err := os.ReadFile(filepath.Join(cache, hashPart(p)+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		for _, k := range []string{"StorePath:", "NarHash:", "NarSize:", "References:", "Sig:", "CA:"} {
			if strings.HasPrefix(l, k) {
				out = append(out, strings.TrimRight(l, " "))
			}
		}
	}
	return out
}

// TestCopyFromCache copies closures with `castor store copy --from` from
// Nix-written caches over HTTP and checks metadata and bytes against Nix.
func TestCopyFromCache(t *testing.T) {
	f := newCacheFixture(t)
	for comp, cache := range f.caches {
		t.Run(comp, func(t *testing.T) {
			srv := httptest.NewServer(http.FileServer(http.Dir(cache)))
			defer srv.Close()
			s := newStore(t)
			url := "nix+" + srv.URL + "?trusted-public-keys=" + f.pubKey
			r := s.run(nil, "store", "copy", "--from", url, f.tree, f.chain[0])
			if r.code != 0 {
				t.Fatalf("copy: %s", r.stderr)
			}
			for _, p := range append([]string{f.tree}, f.chain...) {
				info := regexp.MustCompile(`(?m) +$`).ReplaceAllString(s.ok("store", "path-info", p), "")
				for _, want := range narinfoFields(t, cache, p) {
					if !strings.Contains(info+"\n", want+"\n") {
						t.Errorf("%s: path-info lacks %q:\n%s", p, want, info)
					}
				}
				want, err := f.nix.Output(nil, "nix-store", "--dump", f.nix.RealPath(p))
				if err != nil {
					t.Fatal(err)
				}
				if got := s.run(nil, "store", "dump", p).stdout; !bytes.Equal(got, want) {
					t.Errorf("%s: NAR differs from Nix's", p)
				}
			}
			// A second copy fetches nothing.
			r = s.run(nil, "store", "copy", "--from", url, f.chain[0])
			if r.code != 0 || !strings.Contains(string(r.stderr), "copied 0 of 3 paths") {
				t.Errorf("second copy: exit %d, %s", r.code, r.stderr)
			}
			// An untrusted key is refused, with a message.
			s2 := newStore(t)
			r = s2.run(nil, "store", "copy", "--from", "nix+"+srv.URL+"?trusted-public-keys=other-1:"+strings.SplitN(f.pubKey, ":", 2)[1], f.chain[0])
			if r.code == 0 || !strings.Contains(string(r.stderr), "trusted") {
				t.Errorf("copy with an untrusted key: exit %d, %s", r.code, r.stderr)
			}
		})
	}
}

// TestMountSubstitutes mounts an empty store with a binary cache behind it:
// store paths appear on first access, fetched one by one as they are
// touched, with Nix's bytes.
func TestMountSubstitutes(t *testing.T) {
	f := newCacheFixture(t)
	log := &requestLog{h: http.FileServer(http.Dir(f.caches["xz"]))}
	srv := httptest.NewServer(log)
	defer srv.Close()
	s := newStore(t)
	m := mountStore(t, s, "--substituter", "nix+"+srv.URL+"?trusted-public-keys="+f.pubKey)

	// Only c: its references stay in the cache until touched.
	c := f.chain[0]
	got, err := os.ReadFile(m.path(c))
	if err != nil {
		t.Fatalf("read %s through the mount: %v\n%s", c, err, m.stderr)
	}
	want, _ := os.ReadFile(f.nix.RealPath(c))
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %q, want %q", c, got, want)
	}
	for _, r := range f.chain[1:] {
		if log.asked(hashPart(r) + ".narinfo") {
			t.Errorf("%s was fetched before it was accessed", r)
		}
	}
	// The whole tree, file by file.
	root := f.nix.RealPath(f.tree)
	n := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		mp := filepath.Join(m.path(f.tree), rel)
		wi, _ := os.Lstat(p)
		gi, err := os.Lstat(mp)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if wi.Mode() != gi.Mode() {
			return fmt.Errorf("%s: mode %v, Nix %v", rel, gi.Mode(), wi.Mode())
		}
		if d.Type().IsRegular() {
			a, _ := os.ReadFile(p)
			b, err := os.ReadFile(mp)
			if err != nil || sha256.Sum256(a) != sha256.Sum256(b) {
				return fmt.Errorf("%s: contents differ (%v)", rel, err)
			}
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, m.stderr)
	}
	if n < 10 {
		t.Fatalf("compared only %d files", n)
	}
	// An unknown path is ENOENT, not an error.
	if _, err := os.Stat(m.path("/nix/store/00000000000000000000000000000000-nope")); !os.IsNotExist(err) {
		t.Errorf("unknown path: %v", err)
	}
	m.stop(os.Interrupt)
	// What was fetched was recorded locally, with its signature.
	info := s.ok("store", "path-info", f.tree)
	if !strings.Contains(info, "Sig: e2e-cache-1:") {
		t.Errorf("fetched path recorded without its signature:\n%s", info)
	}
	if r := s.run(nil, "store", "path-info", f.chain[1]); r.code == 0 {
		t.Errorf("%s was recorded though never accessed", f.chain[1])
	}
}
