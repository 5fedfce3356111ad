package agentvm_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/e2e/testenv"
	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/fs/fstest"
	"github.com/castor-nix/castor/images"
	"github.com/castor-nix/castor/images/agent"
	"github.com/castor-nix/castor/images/imagestest"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/vmm"
	"github.com/castor-nix/castor/vmm/agentvm"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// agentImage builds the agent image (cached), skipping without QEMU, the
// kernel or busybox.
func agentImage(t *testing.T) *images.Image {
	t.Helper()
	testenv.RequireBinary(t, "qemu-system-x86_64")
	testenv.RequireBinary(t, "busybox")
	if _, _, err := images.DebianKernel(); err != nil {
		t.Skipf("needs Debian's cloud kernel (install linux-image-cloud-amd64; .ci/run does): %v", err)
	}
	img, err := images.AgentImage(context.Background(), imagestest.CacheDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// storeTrees are served as the guest's store: store-path-like roots with
// small, empty, executable, large and nested files and symlinks.
func storeTrees() map[string]fstest.Dir {
	rng := rand.New(rand.NewPCG(3, 4))
	big := make([]byte, 3<<20+17)
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	many := fstest.Dir{}
	for i := 0; i < 40; i++ {
		many[fmt.Sprintf("f%02d", i)] = fstest.File{Data: bytes.Repeat([]byte{byte(i)}, i*37)}
	}
	return map[string]fstest.Dir{
		"0c9b3pm5hhw9dgr0v6c3gkvdjqlb9ps4-hello-2.12": {
			"bin":   fstest.Dir{"hello": fstest.File{Data: []byte("#!/bin/sh\necho hello\n"), Executable: true}},
			"share": fstest.Dir{"doc": fstest.Dir{"README": fstest.File{Data: []byte("read me\n")}, "empty": fstest.File{}}},
			"link":  fstest.Symlink("bin/hello"),
		},
		"1k2vgsy4fz3n05jcd7ijbx4vxfd1zisn-blob-1": {"data.bin": fstest.File{Data: big}},
		"9a4f1l3yzbxpjwqyq8yjxz5s3n2hcf5x-many":   {"lib": many},
	}
}

// hashLines lists "sha256  ./root/path" for every file of trees, sorted by
// path as `find | sort | xargs sha256sum` prints them.
func hashLines(trees map[string]fstest.Dir) []string {
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
	for root, d := range trees {
		walk("./"+root, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i][66:] < out[j][66:] })
	return out
}

// missingRoot is a store path whose directory the backend lacks.
const missingRoot = "4v5hq0l6bxdq8frqqk0n1dbg8dlh2p0r-lost"

// serveStore puts trees into a memory castore and returns the roots a
// castor filesystem serves, with missingRoot among them.
func serveStore(t *testing.T, trees map[string]fstest.Dir) (castorfs.Roots, castore.DirectoryGetter, castore.BlobOpener) {
	t.Helper()
	ctx := context.Background()
	blobs, dirs := memory.NewBlobService(), memory.NewDirectoryService()
	roots := castorfs.Roots{}
	for name, d := range trees {
		n, err := fstest.Put(ctx, blobs, dirs, d)
		if err != nil {
			t.Fatal(err)
		}
		roots[name] = n
	}
	roots[missingRoot] = castore.Node{Kind: castore.KindDirectory, Digest: castore.Sum([]byte("a directory nobody stored")), Size: 1}
	return roots, dirs, blobs
}

func run(t *testing.T, vm *agentvm.VM, script string) (agent.Exit, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	ex, err := vm.Run(ctx, &agent.Run{
		Command: []string{"/bin/sh", "-c", script},
		Argv0:   "sh",
		Env:     []string{"PATH=/bin", "HOME=/build", "GREETING=hi there"},
		Dir:     "/build",
		UID:     1000, GID: 100,
	}, &out, &errb)
	if err != nil {
		t.Fatalf("run %q: %v\nconsole:\n%s", script, err, vm.Machine.Console())
	}
	return ex, out.String(), errb.String()
}

// TestQEMUAgentVM boots one VM under QEMU whose store is served by
// castor over virtio-fs and whose agent talks over castor's vhost-user
// vsock backend, and runs the contract's cases in it in turn: every file
// of several store paths hashes as on the host; output, exit status,
// signals, identity and environment come back; processes a command
// leaves are killed; a tree comes back as a NAR equal to the one
// nix-store --dump writes for the same tree on the host; a store path
// whose contents the backend lacks gives the guest an I/O error; and
// finally a command that hangs is stopped by killing the VM at a timeout.
// No process, socket or directory is left.
func TestQEMUAgentVM(t *testing.T) {
	img := agentImage(t)
	trees := storeTrees()
	roots, fsDirs, fsBlobs := serveStore(t, trees)
	var sessions int
	ctx := context.Background()
	vm, err := agentvm.Boot(ctx, agentvm.Options{
		Image:  img,
		Logger: quiet,
		FS: []vmm.FS{{Tag: "store", NewFS: func(ctx context.Context) (fuse.RawFileSystem, error) {
			sessions++
			return castorfs.New(roots, fsDirs, fsBlobs, castorfs.Options{Logger: quiet})
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := vm.Machine
	pid, workDir := m.PID(), m.WorkDir()
	defer vm.Close()
	if vm.Agent.Hello.Kernel == "" || vm.Timings.GuestUptime <= 0 {
		t.Errorf("hello: %+v", vm.Agent.Hello)
	}
	t.Logf("boot: %+v", vm.Timings)
	if err := vm.Setup(ctx, &agent.Setup{Steps: []agent.Step{
		{Mount: &agent.Mount{Type: "virtiofs", Source: "store", Target: "/nix/store", ReadOnly: true}},
		{Mount: &agent.Mount{Type: "tmpfs", Target: "/build", Data: "mode=0700,uid=1000,gid=100"}},
		{File: &agent.File{Path: "/etc/passwd", Mode: 0o444, Data: []byte("root:x:0:0::/:/bin/sh\nnixbld:x:1000:100::/build:/bin/sh\n")}},
	}}); err != nil {
		t.Fatal(err)
	}
	if err := vm.Setup(ctx, &agent.Setup{Steps: []agent.Step{{Mount: &agent.Mount{Type: "virtiofs", Source: "no-such-tag", Target: "/mnt"}}}}); err == nil {
		t.Error("mounting an unknown virtio-fs tag succeeded")
	}

	t.Run("store files hash as on the host", func(t *testing.T) {
		var names []string
		for n := range trees {
			names = append(names, n)
		}
		sort.Strings(names)
		ex, out, errs := run(t, vm, "cd /nix/store && find "+strings.Join(names, " ")+" -type f | sort | sed 's,^,./,' | xargs sha256sum")
		if ex.Code != 0 {
			t.Fatalf("exit %+v: %s", ex, errs)
		}
		if got, want := strings.TrimSpace(out), strings.Join(hashLines(trees), "\n"); got != want {
			t.Errorf("guest hashes:\n%s\nwant:\n%s", got, want)
		}
		ex, out, _ = run(t, vm, "readlink /nix/store/0c9b3pm5hhw9dgr0v6c3gkvdjqlb9ps4-hello-2.12/link; /nix/store/0c9b3pm5hhw9dgr0v6c3gkvdjqlb9ps4-hello-2.12/bin/hello; ls /nix/store 2>&1 >/dev/null | head -1; touch /nix/store/x 2>&1; echo rc=$?")
		for _, want := range []string{"bin/hello\n", "hello\n", "rc=1"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("the store reads ahead 2 MiB", func(t *testing.T) {
		if err := vm.Setup(ctx, &agent.Setup{Steps: []agent.Step{{Mount: &agent.Mount{Type: "sysfs", Target: "/sys"}}}}); err != nil {
			t.Fatal(err)
		}
		ex, out, errs := run(t, vm, `d=$(stat -c %d /nix/store); cat /sys/class/bdi/$((d>>8)):$((d&255))/read_ahead_kb`)
		if ex.Code != 0 || strings.TrimSpace(out) != "2048" {
			t.Errorf("read_ahead_kb of /nix/store: %q, exit %+v %s; want 2048", out, ex, errs)
		}
	})

	t.Run("exit status, streams, identity, environment", func(t *testing.T) {
		ex, out, errs := run(t, vm, `echo to-stdout; echo to-stderr >&2; id -u; id -g; pwd; echo "$GREETING"; echo $0; exit 42`)
		if ex.Code != 42 || ex.Signal != "" {
			t.Errorf("exit %+v, want 42", ex)
		}
		if want := "to-stdout\n1000\n100\n/build\nhi there\nsh\n"; out != want {
			t.Errorf("stdout %q, want %q", out, want)
		}
		if errs != "to-stderr\n" {
			t.Errorf("stderr %q", errs)
		}
		ex, _, _ = run(t, vm, `kill -9 $$`)
		if ex.Code != -1 || ex.Signal != "SIGKILL" {
			t.Errorf("killed shell: %+v", ex)
		}
		var out2 bytes.Buffer
		ex, err := vm.Run(ctx, &agent.Run{Command: []string{"/nix/store/none/bin/x"}, UID: 1000, GID: 100}, &out2, &out2)
		if err != nil || ex.Code != 127 || ex.Error == "" {
			t.Errorf("missing program: %+v %v", ex, err)
		}
	})

	t.Run("leftover processes are killed", func(t *testing.T) {
		ex, _, _ := run(t, vm, `sleep 1000 & sleep 1000 & echo started`)
		if ex.Code != 0 {
			t.Fatalf("exit %+v", ex)
		}
		_, out, _ := run(t, vm, `ps -o comm | grep -c '^sleep' || true`)
		if strings.TrimSpace(out) != "0" {
			t.Errorf("%s sleep processes survived their command", strings.TrimSpace(out))
		}
	})

	t.Run("a tree comes back as Nix's NAR", func(t *testing.T) {
		const script = `mkdir -p /build/out/bin /build/out/share/empty; printf '#!/bin/sh\necho x\n' > /build/out/bin/x; chmod 755 /build/out/bin/x; ln -s ../bin/x /build/out/share/link; : > /build/out/share/zero; seq 1 50000 > /build/out/share/numbers`
		if ex, _, errs := run(t, vm, script); ex.Code != 0 {
			t.Fatalf("%+v %s", ex, errs)
		}
		host := filepath.Join(t.TempDir(), "out")
		os.MkdirAll(filepath.Join(host, "bin"), 0o755)
		os.MkdirAll(filepath.Join(host, "share/empty"), 0o755)
		os.WriteFile(filepath.Join(host, "bin/x"), []byte("#!/bin/sh\necho x\n"), 0o755)
		os.Symlink("../bin/x", filepath.Join(host, "share/link"))
		os.WriteFile(filepath.Join(host, "share/zero"), nil, 0o644)
		var nums strings.Builder
		for i := 1; i <= 50000; i++ {
			fmt.Fprintln(&nums, i)
		}
		os.WriteFile(filepath.Join(host, "share/numbers"), []byte(nums.String()), 0o644)
		nixStore := testenv.RequireBinary(t, "nix-store")
		cmd := exec.Command(nixStore, "--dump", host)
		cmd.Env = append(os.Environ(), "NIX_CONFIG="+testenv.NixConfig)
		want, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := vm.SendDir(ctx, "/build/out", &got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("the guest's NAR (%d bytes) differs from nix-store --dump of the same tree (%d bytes)", got.Len(), len(want))
		}
		if err := vm.SendDir(ctx, "/build/absent", io.Discard); err == nil || !strings.Contains(err.Error(), "no such file") {
			t.Errorf("absent tree: %v", err)
		}
	})

	t.Run("contents the backend lacks are an I/O error", func(t *testing.T) {
		ex, _, errs := run(t, vm, "ls /nix/store/"+missingRoot)
		if ex.Code == 0 || !strings.Contains(errs, "Input/output error") {
			t.Errorf("listing a store path without its directory: %+v %q", ex, errs)
		}
		ex, _, _ = run(t, vm, "test -e /nix/store/00000000000000000000000000000000-absent")
		if ex.Code != 1 {
			t.Errorf("an absent store path: %+v", ex)
		}
	})

	t.Run("a hanging command is stopped by killing the VM", func(t *testing.T) {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := vm.Run(tctx, &agent.Run{Command: []string{"/bin/sleep", "1000"}, UID: 1000, GID: 100}, io.Discard, io.Discard)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("hanging command: %v", err)
		}
		if err := vm.Close(); err != nil {
			t.Error(err)
		}
		if err := m.Wait(ctx); !errors.Is(err, vmm.ErrKilled) {
			t.Errorf("the VM's end: %v, want ErrKilled", err)
		}
	})

	vm.Close()
	if syscall.Kill(pid, 0) != syscall.ESRCH {
		t.Errorf("QEMU (pid %d) still exists", pid)
	}
	if _, err := os.Stat(workDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("working directory %s left behind", workDir)
	}
	if sessions != 1 {
		t.Errorf("%d virtio-fs sessions, want 1", sessions)
	}
}
