package vsock_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/castor-nix/castor/images"
	"github.com/castor-nix/castor/images/imagestest"
	"github.com/castor-nix/castor/vmm/vhostuser"
	"github.com/castor-nix/castor/vmm/vsock"
)

func pattern(n int, mul, add int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*mul + add)
	}
	return b
}

// buildProbe compiles the guest side of the test as a static binary.
func buildProbe(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "guestprobe")
	cmd := exec.Command("go", "build", "-o", out, "./internal/guestprobe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build guest probe: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestQEMUVsock boots a guest with QEMU's vhost-user-vsock-device served
// by this backend. The guest connects to the host (port 5000, arriving on
// <socket>_5000) and sends 1 MiB; the host answers 768 KiB; the host
// connects to the guest (port 1234) with CONNECT and sends 1 MiB that the
// guest echoes. Every byte is compared on the side that receives it, and
// QEMU must exit by itself when the guest powers off.
func TestQEMUVsock(t *testing.T) {
	probe := buildProbe(t)
	img := imagestest.BuildImage(t, "#!/bin/sh\n"+
		"mount -t proc proc /proc\n"+
		imagestest.LoadModules+"\n"+
		"/guestprobe -listen 1234 -connect 5000 -size 1048576\n"+
		"poweroff -f\n",
		images.Entry{Path: "/guestprobe", Mode: 0o755, Data: probe})

	dir := t.TempDir()
	hsock := filepath.Join(dir, "vsock.sock")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := vsock.New(vsock.Config{GuestCID: 3, Socket: hsock, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	vusock := filepath.Join(dir, "vhost-user-vsock.sock")
	l, err := vhostuser.Listen(vusock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- (&vhostuser.Server{Logger: quiet, NewDevice: b.NewDevice}).Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		b.Close()
		for _, p := range []string{hsock, vusock} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket %s left behind", p)
			}
		}
	})

	// Guest -> host.
	hl, err := net.Listen("unix", hsock+"_5000")
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	reply := pattern(768<<10, 13, 1)
	fromGuest := make(chan error, 1)
	go func() {
		c, err := hl.Accept()
		if err != nil {
			fromGuest <- err
			return
		}
		defer c.Close()
		got, err := io.ReadAll(c)
		if err != nil {
			fromGuest <- err
			return
		}
		if want := pattern(1<<20, 31, 7); !bytes.Equal(got, want) {
			fromGuest <- fmt.Errorf("host received %d bytes from the guest, not the %d-byte pattern", len(got), len(want))
			return
		}
		_, err = c.Write(reply)
		fromGuest <- err
	}()

	vm := imagestest.Start(t, img, imagestest.Options{Args: []string{
		"-chardev", "socket,id=vsk,path=" + vusock,
		"-device", "vhost-user-vsock-device,chardev=vsk",
	}})
	if err := vm.WaitSerial("LISTENING", 60*time.Second); err != nil {
		t.Fatal(err)
	}

	// Host -> guest, with the hybrid handshake.
	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer dcancel()
	var c net.Conn
	for {
		c, err = vsock.Dial(dctx, hsock, 1234)
		if err == nil || !errors.Is(err, vsock.ErrRefused) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	send := pattern(1<<20, 17, 3)
	go func() {
		c.Write(send)
		c.(*net.UnixConn).CloseWrite()
	}()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	echo, err := io.ReadAll(c)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(echo, send) {
		t.Fatalf("guest echoed %d bytes, not the %d sent", len(echo), len(send))
	}
	if err := <-fromGuest; err != nil {
		t.Fatal(err)
	}
	if err := vm.Wait(60 * time.Second); err != nil {
		t.Fatalf("QEMU: %v", err)
	}
	sum := sha256.Sum256(reply)
	out := vm.Serial()
	for _, want := range []string{
		fmt.Sprintf("GUEST-GOT %d %s", len(reply), hex.EncodeToString(sum[:])),
		fmt.Sprintf("ECHOED %d", len(send)),
		"PROBE-DONE",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q:\n%s", want, out)
		}
	}
}
