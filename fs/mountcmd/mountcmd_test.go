package mountcmd_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"

	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/fs/fstest"
	"github.com/castor-nix/castor/fs/mountcmd"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
	pimemory "github.com/castor-nix/castor/store/pathinfo/memory"
)

func TestMain(m *testing.M) { fstest.Main(m) }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls for what a concurrent mount logs (a generous bound, not
// a speed assertion).
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// newStore holds one store path, a directory with a file.
func newStore(t *testing.T) (mountcmd.Store, nixpath.StorePath) {
	t.Helper()
	ctx := context.Background()
	blobs, dirs, infos := memory.NewBlobService(), memory.NewDirectoryService(), pimemory.New()
	root, err := fstest.Put(ctx, blobs, dirs, fstest.Dir{"bin": fstest.Dir{"hello": fstest.File{Data: []byte("#!hello\n"), Executable: true}}})
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := nixpath.Parse("7zkl3ma9v1q6ix2m6cv3j1v9zzkd7frr-hello-2.12")
	if _, err := infos.Put(ctx, &pathinfo.PathInfo{StorePath: sp, Node: root, NarSize: 1}); err != nil {
		t.Fatal(err)
	}
	return mountcmd.Store{Blobs: blobs, Directories: dirs, PathInfos: infos}, sp
}

type running struct {
	cancel context.CancelFunc
	done   chan error
	log    *syncBuf
}

func start(t *testing.T, st mountcmd.Store, opts mountcmd.Options) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), log: &syncBuf{}}
	go func() { r.done <- mountcmd.Run(ctx, st, opts, slog.New(slog.NewTextHandler(r.log, nil))) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	waitFor(t, func() bool {
		select {
		case err := <-r.done:
			t.Fatalf("mount ended: %v\n%s", err, r.log)
		default:
		}
		return strings.Contains(r.log.String(), "mounted, ready")
	}, "the mount to be ready")
	return r
}

// The mount serves the store, says when it is ready, and unmounts when
// its context ends (SIGINT/SIGTERM in the CLI).
func TestRunServesAndUnmounts(t *testing.T) {
	fstest.RequireFUSE(t)
	st, sp := newStore(t)
	mp := t.TempDir()
	r := start(t, st, mountcmd.Options{Mountpoint: mp, ListRoot: true})
	b, err := os.ReadFile(filepath.Join(mp, sp.String(), "bin", "hello"))
	if err != nil || string(b) != "#!hello\n" {
		t.Fatalf("read through the mount: %q, %v", b, err)
	}
	ents, err := os.ReadDir(mp)
	if err != nil || len(ents) != 1 || ents[0].Name() != sp.String() {
		t.Errorf("--list-root listing: %v, %v", ents, err)
	}
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	r.done <- nil // for the cleanup
	if _, err := os.Stat(filepath.Join(mp, sp.String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after unmount: %v", err)
	}
	if !strings.Contains(r.log.String(), "unmounted") {
		t.Errorf("no unmount logged:\n%s", r.log)
	}
}

// A busy mountpoint (our mount already there) and a stale one (a dead
// server's) are refused with the fix.
func TestMountpointProblems(t *testing.T) {
	fstest.RequireFUSE(t)
	st, _ := newStore(t)
	mp := t.TempDir()
	start(t, st, mountcmd.Options{Mountpoint: mp})
	err := mountcmd.Run(context.Background(), st, mountcmd.Options{Mountpoint: mp}, nil)
	if !errors.Is(err, castorfs.ErrMountpointBusy) || !mountcmd.IsMountpointProblem(err) || !strings.Contains(err.Error(), "fusermount3 -u "+mp) {
		t.Errorf("second mount on %s: %v", mp, err)
	}

	stale := t.TempDir()
	makeStale(t, stale)
	err = mountcmd.Run(context.Background(), st, mountcmd.Options{Mountpoint: stale}, nil)
	if !errors.Is(err, castorfs.ErrMountpointStale) || !strings.Contains(err.Error(), "transport endpoint is not connected") || !strings.Contains(err.Error(), "fusermount3 -u "+stale) {
		t.Errorf("stale mountpoint: %v", err)
	}
	// The fix the message gives works.
	if err := syscall.Unmount(stale, 0); err != nil {
		t.Fatal(err)
	}
	r := start(t, st, mountcmd.Options{Mountpoint: stale})
	r.cancel()

	if err := mountcmd.Run(context.Background(), st, mountcmd.Options{Mountpoint: filepath.Join(mp + "-nonexistent")}, nil); err == nil || !strings.Contains(err.Error(), "mkdir -p") {
		t.Errorf("missing mountpoint: %v", err)
	}
}

// makeStale leaves a FUSE mount whose server is gone at mp, as a killed
// daemon does.
func makeStale(t *testing.T, mp string) {
	t.Helper()
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("dead", mp, "fuse.dead", 0, "fd="+strconv.Itoa(fd)+",rootmode=40000,user_id=0,group_id=0"); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	syscall.Close(fd)
	t.Cleanup(func() { syscall.Unmount(mp, syscall.MNT_DETACH) })
	if _, err := os.Stat(mp); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stale mount: stat gives %v", err)
	}
}

// Unmounting while a file is open falls back to a lazy detach, and says
// so; the mount ends when the file is closed.
func TestUnmountBusy(t *testing.T) {
	fstest.RequireFUSE(t)
	st, sp := newStore(t)
	mp := t.TempDir()
	r := start(t, st, mountcmd.Options{Mountpoint: mp})
	f, err := os.Open(filepath.Join(mp, sp.String(), "bin", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	r.cancel()
	waitFor(t, func() bool { return strings.Contains(r.log.String(), "detaching it lazily") }, "the lazy unmount")
	// Gone from the namespace already, still readable through the open file.
	if _, err := os.Stat(filepath.Join(mp, sp.String())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after a lazy unmount the path is still there: %v", err)
	}
	buf := make([]byte, 8)
	if n, err := f.ReadAt(buf, 0); err != nil || string(buf[:n]) != "#!hello\n" {
		t.Errorf("read from the file kept open: %q, %v", buf[:n], err)
	}
	f.Close()
	if err := <-r.done; err != nil {
		t.Errorf("Run: %v", err)
	}
	r.done <- nil
}

// The cobra command parses its flags and hands the store's close back.
func TestCommand(t *testing.T) {
	fstest.RequireFUSE(t)
	st, sp := newStore(t)
	mp := t.TempDir()
	closed := false
	cmd := mountcmd.NewCommand(func(*cobra.Command) (mountcmd.Store, func() error, error) {
		return st, func() error { closed = true; return nil }, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	cmd.SetArgs([]string{"--no-xattrs", mp})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	p := filepath.Join(mp, sp.String(), "bin", "hello")
	waitFor(t, func() bool { _, err := os.Stat(p); return err == nil }, "the mount")
	if _, err := syscall.Getxattr(p, castorfs.XattrBlobDigest, make([]byte, 100)); err == nil {
		t.Errorf("--no-xattrs, but the digest xattr is there")
	}
	cancel()
	if err := <-done; err != nil || !closed {
		t.Errorf("command: %v, store closed %v", err, closed)
	}

	stale := t.TempDir()
	makeStale(t, stale)
	cmd = mountcmd.NewCommand(func(*cobra.Command) (mountcmd.Store, func() error, error) {
		t.Errorf("store opened for a stale mountpoint")
		return st, func() error { return nil }, nil
	})
	cmd.SetArgs([]string{stale})
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	if err := cmd.Execute(); !errors.Is(err, castorfs.ErrMountpointStale) {
		t.Errorf("stale: %v", err)
	}
}
