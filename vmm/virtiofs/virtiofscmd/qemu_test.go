package virtiofscmd_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/castor-nix/castor/images/imagestest"
	"github.com/castor-nix/castor/store/compose"
	"github.com/castor-nix/castor/store/nixstore"
	"github.com/castor-nix/castor/vmm/virtiofs/virtiofscmd"
)

// TestQEMUStorePaths is the command's whole path under a real VM: store
// paths added to a store are found by name under the guest's /nix/store
// (served by `castor virtiofs --once` in-process), every file of each
// hashes as on the host, the root is not listable, and when the guest
// powers off the command returns.
func TestQEMUStorePaths(t *testing.T) {
	ctx := context.Background()
	svc, err := compose.Open(compose.Config{Store: "memory://"})
	if err != nil {
		t.Fatal(err)
	}
	st := &nixstore.Store{Blobs: svc.Blobs, Directories: svc.Directories, PathInfos: svc.PathInfos}

	// Two store paths from directories written here; their hashes are
	// the host's truth.
	var names []string
	want := map[string][]string{}
	for i, files := range []map[string]string{
		{"bin/tool": "#!/bin/sh\necho tool\n", "share/man/tool.1": ".TH TOOL 1\n", "lib/empty": ""},
		{"data/a.txt": strings.Repeat("a", 100000), "data/b/c.txt": "c\n"},
	} {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("pkg%d", i))
		var lines []string
		for rel, content := range files {
			p := filepath.Join(dir, rel)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte(content))
			lines = append(lines, hex.EncodeToString(sum[:])+"  ./"+rel)
		}
		sort.Slice(lines, func(a, b int) bool { return lines[a][66:] < lines[b][66:] })
		info, err := st.AddPath(ctx, dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(info.StorePath.String())
		names = append(names, name)
		want[name] = lines
	}

	script := "#!/bin/sh\nmount -t proc proc /proc\n" + imagestest.LoadModules + "\n" +
		"mkdir -p /nix/store\nmount -t virtiofs castor /nix/store || echo MOUNT-FAILED\n" +
		"ls /nix/store >/dev/null 2>&1 || echo ROOT-NOT-LISTABLE\n" +
		"test -e /nix/store/00000000000000000000000000000000-absent || echo ABSENT-OK\n"
	for _, n := range names {
		script += "echo BEGIN " + n + "\n(cd /nix/store/" + n + " && find . -type f | sort | xargs sha256sum)\necho END " + n + "\n"
	}
	script += "umount /nix/store\npoweroff -f\n"
	img := imagestest.BuildImage(t, script)

	sock := filepath.Join(t.TempDir(), "virtiofs.sock")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	done := make(chan error, 1)
	go func() {
		done <- virtiofscmd.Run(ctx, func() (*compose.Services, error) { return svc, nil },
			virtiofscmd.Options{Socket: sock, Once: true, Logger: quiet})
	}()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("command did not listen")
		}
	}
	vm := imagestest.Start(t, img, imagestest.Options{Args: []string{
		"-chardev", "socket,id=vfs,path=" + sock,
		"-device", "vhost-user-fs-device,chardev=vfs,tag=castor",
	}})
	if err := vm.Wait(120 * time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("--once: command still serving after the VM powered off")
	}
	out := strings.ReplaceAll(vm.Serial(), "\r", "")
	for _, s := range []string{"ROOT-NOT-LISTABLE", "ABSENT-OK"} {
		if !strings.Contains(out, s) {
			t.Errorf("console lacks %s", s)
		}
	}
	if strings.Contains(out, "MOUNT-FAILED") {
		t.Fatalf("mount failed:\n%s", out)
	}
	for _, n := range names {
		_, rest, _ := strings.Cut(out, "BEGIN "+n+"\n")
		body, _, _ := strings.Cut(rest, "END "+n)
		got := strings.Split(strings.TrimSpace(body), "\n")
		if strings.Join(got, "\n") != strings.Join(want[n], "\n") {
			t.Errorf("%s: guest hashes\n%s\nwant\n%s", n, strings.Join(got, "\n"), strings.Join(want[n], "\n"))
		}
	}
	if t.Failed() {
		t.Logf("console:\n%s", out)
	}
}
