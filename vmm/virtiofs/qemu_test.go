package virtiofs_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/fs/fstest"
	"github.com/castor-nix/castor/images/imagestest"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/vmm/vhostuser"
	"github.com/castor-nix/castor/vmm/virtiofs"
)

// testTree is served to the guest: a few store-path-like roots with small,
// empty, executable, multi-megabyte and nested files and a symlink.
func testTree() map[string]fstest.Dir {
	rng := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 5<<20+123)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	many := fstest.Dir{}
	for i := 0; i < 50; i++ {
		many[fmt.Sprintf("f%03d", i)] = fstest.File{Data: []byte(strings.Repeat(fmt.Sprint(i), i))}
	}
	return map[string]fstest.Dir{
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello": {
			"bin":   fstest.Dir{"hello": fstest.File{Data: []byte("#!/bin/sh\necho hello\n"), Executable: true}},
			"share": fstest.Dir{"doc": fstest.Dir{"README": fstest.File{Data: []byte("read me\n")}, "empty": fstest.File{}}},
			"link":  fstest.Symlink("bin/hello"),
		},
		"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-big":  {"data.bin": fstest.File{Data: big}},
		"cccccccccccccccccccccccccccccccc-many": {"lib": many},
	}
}

// expectedHashes lists "sha256  ./root/path" for every file, as the guest's
// `find . -type f | sort | xargs sha256sum` prints them.
func expectedHashes(tree map[string]fstest.Dir) []string {
	var out []string
	var walk func(prefix string, d fstest.Dir)
	walk = func(prefix string, d fstest.Dir) {
		for name, n := range d {
			p := prefix + "/" + name
			switch n := n.(type) {
			case fstest.Dir:
				walk(p, n)
			case fstest.File:
				sum := sha256.Sum256(n.Data)
				out = append(out, hex.EncodeToString(sum[:])+"  "+p)
			}
		}
	}
	for root, d := range tree {
		walk("./"+root, d)
	}
	// The guest sorts paths before hashing them.
	sort.Slice(out, func(i, j int) bool { return out[i][66:] < out[j][66:] })
	return out
}

// trackedFS counts the filesystems made and closed, one per VM session.
type trackedFS struct {
	*castorfs.FS
	closed *sync.WaitGroup
}

func (f trackedFS) Close() error {
	defer f.closed.Done()
	return f.FS.Close()
}

// TestQEMUVirtiofs boots two VMs one after the other against the same
// socket. Each mounts castor's filesystem over virtiofs, hashes every file,
// and powers off; QEMU must exit by itself (the backend answers the vring
// stop at shutdown) and the hashes must match the host's.
func TestQEMUVirtiofs(t *testing.T) {
	img := imagestest.BuildImage(t, "#!/bin/sh\n"+
		"mount -t proc proc /proc\n"+
		imagestest.LoadModules+"\n"+
		"mount -t virtiofs castor /mnt || echo MOUNT-FAILED\n"+
		"cd /mnt\n"+
		"echo BEGIN-HASHES\n"+
		"find . -type f | sort | xargs sha256sum\n"+
		"echo END-HASHES\n"+
		"echo LINK=$(readlink aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello/link)\n"+
		"test -x aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-hello/bin/hello && echo EXEC-OK\n"+
		"touch x 2>/dev/null || echo READONLY-OK\n"+
		"cd /\numount /mnt && echo UNMOUNTED\n"+
		"poweroff -f\n")

	ctx := context.Background()
	blobs, dirs := memory.NewBlobService(), memory.NewDirectoryService()
	tree := testTree()
	roots := castorfs.Roots{}
	for name, d := range tree {
		n, err := fstest.Put(ctx, blobs, dirs, d)
		if err != nil {
			t.Fatal(err)
		}
		roots[name] = n
	}

	// Warnings and errors are collected: a guest that boots, reads and
	// powers off normally must not produce any (quiet logging).
	warns := &warnLog{}
	quiet := slog.New(warns)
	sock := filepath.Join(t.TempDir(), "virtiofs.sock")
	l, err := vhostuser.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	var made int
	var closed sync.WaitGroup
	newFS := func(ctx context.Context) (fuse.RawFileSystem, error) {
		made++
		f, err := castorfs.New(roots, dirs, blobs, castorfs.Options{ListRoot: true, Logger: quiet})
		if err != nil {
			return nil, err
		}
		closed.Add(1)
		return trackedFS{f, &closed}, nil
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- virtiofs.Serve(sctx, l, newFS, &virtiofs.Options{Logger: quiet}, false) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(sock); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
	})

	want := expectedHashes(tree)
	for vmNo := 1; vmNo <= 2; vmNo++ {
		vm := imagestest.Start(t, img, imagestest.Options{Args: []string{
			"-chardev", "socket,id=vfs,path=" + sock,
			"-device", "vhost-user-fs-device,chardev=vfs,tag=castor,queue-size=1024",
		}})
		if err := vm.Wait(120 * time.Second); err != nil {
			// A hang at shutdown is what this test exists to catch:
			// show where the backend's goroutines are.
			var stacks bytes.Buffer
			pprof.Lookup("goroutine").WriteTo(&stacks, 2)
			t.Fatalf("VM %d: %v\nbackend goroutines:\n%s", vmNo, err, stacks.String())
		}
		out := vm.Serial()
		got := between(out, "BEGIN-HASHES", "END-HASHES")
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("VM %d: guest hashes differ from the host's:\ngot:\n%s\nwant:\n%s\nconsole:\n%s", vmNo, strings.Join(got, "\n"), strings.Join(want, "\n"), out)
		}
		for _, s := range []string{"LINK=bin/hello", "EXEC-OK", "READONLY-OK", "UNMOUNTED"} {
			if !strings.Contains(out, s) {
				t.Errorf("VM %d: console lacks %s:\n%s", vmNo, s, out)
			}
		}
	}
	// Both sessions ended and closed their filesystem.
	closedCh := make(chan struct{})
	go func() { closed.Wait(); close(closedCh) }()
	select {
	case <-closedCh:
	case <-time.After(30 * time.Second):
		t.Fatal("a VM's filesystem was not closed after it went away")
	}
	if w := warns.String(); w != "" {
		t.Errorf("backend logged warnings or errors:\n%s", w)
	}
	if made != 2 {
		t.Fatalf("filesystems made: %d, want 2 (one per VM)", made)
	}
}

func between(s, from, to string) []string {
	s = strings.ReplaceAll(s, "\r", "")
	s = strings.ReplaceAll(s, "\r", "")
	_, rest, ok := strings.Cut(s, from+"\n")
	if !ok {
		return nil
	}
	body, _, _ := strings.Cut(rest, to)
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

// warnLog is a slog handler keeping records at warn level and above.
type warnLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *warnLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnLog) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintf(&w.buf, "%s %s", r.Level, r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&w.buf, " %s=%v", a.Key, a.Value); return true })
	w.buf.WriteByte('\n')
	return nil
}
func (w *warnLog) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnLog) WithGroup(string) slog.Handler      { return w }
func (w *warnLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
