package virtiofscmd_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/castor-nix/castor/store/compose"
	"github.com/castor-nix/castor/store/nixstore"
	"github.com/castor-nix/castor/vmm/vhostuser"
	"github.com/castor-nix/castor/vmm/vhostuser/vhostusertest"
	"github.com/castor-nix/castor/vmm/virtiofs/virtiofscmd"
	"github.com/castor-nix/castor/vmm/virtiofs/virtiofstest"
)

// TestServesStorePathsOnce runs the command body against an in-memory
// store holding one store path: a VM sees that path by name, nothing else,
// and when the VM goes away --once makes the command return.
func TestServesStorePathsOnce(t *testing.T) {
	ctx := context.Background()
	svc, err := compose.Open(compose.Config{Store: "memory://"})
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "hello")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "greeting"), []byte("hello from the store\n"), 0o644)
	st := &nixstore.Store{Blobs: svc.Blobs, Directories: svc.Directories, PathInfos: svc.PathInfos}
	info, err := st.AddPath(ctx, src, nil)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(info.StorePath.String())

	sock := filepath.Join(t.TempDir(), "vfs.sock")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	done := make(chan error, 1)
	go func() {
		done <- virtiofscmd.Run(ctx, func() (*compose.Services, error) { return svc, nil },
			virtiofscmd.Options{Socket: sock, Once: true, Logger: quiet})
	}()
	var vm *vhostusertest.FakeVM
	for deadline := time.Now().Add(20 * time.Second); ; {
		if vm, err = vhostusertest.Dial(sock, vhostusertest.Options{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	vm.SetDeadline(time.Now().Add(20 * time.Second))
	c := virtiofstest.Start(t, vm, 1)
	if _, attr, st := c.Lookup(name); st != 0 || attr.Mode&syscall.S_IFDIR == 0 {
		t.Fatalf("LOOKUP %s: status %d mode %o", name, st, attr.Mode)
	}
	if _, _, st := c.Lookup("00000000000000000000000000000000-absent"); st != -int32(syscall.ENOENT) {
		t.Fatalf("LOOKUP of an absent path: status %d", st)
	}

	// While serving, the socket is taken: a second server is refused.
	err = virtiofscmd.Run(ctx, func() (*compose.Services, error) {
		return compose.Open(compose.Config{Store: "memory://"})
	}, virtiofscmd.Options{Socket: sock, Logger: quiet})
	if !errors.Is(err, vhostuser.ErrSocketInUse) {
		t.Fatalf("second server: %v, want ErrSocketInUse", err)
	}

	vm.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("--once: command still serving after the VM went away")
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
}

func TestNeedsSocket(t *testing.T) {
	cmd := virtiofscmd.NewCommand(func() (*compose.Services, error) { return nil, errors.New("unused") })
	cmd.SetArgs(nil)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); err == nil {
		t.Fatal("ran without --socket")
	}
}
