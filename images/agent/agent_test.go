package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/castor-nix/castor/e2e/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestFrameRoundTrip(t *testing.T) {
	var b bytes.Buffer
	big := bytes.Repeat([]byte("x"), 100000)
	for _, p := range [][]byte{nil, []byte("small"), big} {
		if err := writeFrame(&b, msgData, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range [][]byte{nil, []byte("small"), big} {
		typ, got, err := readFrame(&b, nil)
		if err != nil || typ != msgData || !bytes.Equal(got, want) {
			t.Fatalf("got %q %d bytes %v, want %d bytes", typ, len(got), err, len(want))
		}
	}
	if _, _, err := readFrame(&b, nil); !errors.Is(err, io.EOF) {
		t.Errorf("end: %v, want EOF", err)
	}
	// A length beyond the bound is refused before anything is allocated.
	hdr := []byte{msgData, 0xff, 0xff, 0xff, 0xff}
	if _, _, err := readFrame(bytes.NewReader(hdr), nil); !errors.Is(err, ErrProtocol) {
		t.Errorf("huge frame: %v, want ErrProtocol", err)
	}
	if err := writeFrame(io.Discard, msgData, make([]byte, maxFrame+1)); !errors.Is(err, ErrProtocol) {
		t.Errorf("writing a huge frame: %v", err)
	}
	// A frame cut short is an unexpected EOF, not a clean end.
	var c bytes.Buffer
	writeFrame(&c, msgData, []byte("0123456789"))
	if _, _, err := readFrame(bytes.NewReader(c.Bytes()[:8]), nil); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated frame: %v", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	var b bytes.Buffer
	writeJSON(&b, msgExit, Exit{Code: 3})
	f.Add(b.Bytes())
	f.Add([]byte{msgData, 0, 0, 0, 2, 'h', 'i'})
	f.Add([]byte{msgData, 0xff, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for {
			typ, p, err := readFrame(r, nil)
			if err != nil {
				return
			}
			if len(p) > maxFrame {
				t.Fatalf("frame %q of %d bytes accepted", typ, len(p))
			}
		}
	})
}

// TestRtentryLayout: the route ioctl's struct must be the kernel's size.
func TestRtentryLayout(t *testing.T) {
	if n := unsafe.Sizeof(rtentry{}); n != 120 {
		t.Fatalf("rtentry is %d bytes, the kernel's struct rtentry 120", n)
	}
	if off := unsafe.Offsetof(rtentry{}.flags); off != 56 {
		t.Errorf("rt_flags at %d, want 56", off)
	}
	if off := unsafe.Offsetof(rtentry{}.dev); off != 88 {
		t.Errorf("rt_dev at %d, want 88", off)
	}
}

// TestDumpNARMatchesNix: the agent's NAR of a tree is byte for byte what
// nix-store --dump writes for it.
func TestDumpNARMatchesNix(t *testing.T) {
	nixStore := testenv.RequireBinary(t, "nix-store")
	dir := filepath.Join(t.TempDir(), "tree")
	files := map[string]string{
		"bin/run":         "#!/bin/sh\necho run\n",
		"share/doc/READ":  "docs\n",
		"share/empty":     "",
		"z/deep/er/file":  strings.Repeat("0123456789", 30000),
		"a b/with space":  "spaces\n",
		"share/unicode-é": "é\n",
	}
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(dir, "bin/run"), 0o755)
	os.Mkdir(filepath.Join(dir, "emptydir"), 0o755)
	os.Symlink("../share/doc/READ", filepath.Join(dir, "bin/readme"))
	os.Symlink("/nonexistent", filepath.Join(dir, "dangling"))

	for _, p := range []string{dir, filepath.Join(dir, "bin/run"), filepath.Join(dir, "dangling")} {
		var got bytes.Buffer
		if err := dumpNAR(context.Background(), p, &got); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(nixStore, "--dump", p)
		cmd.Env = append(os.Environ(), "NIX_CONFIG="+testenv.NixConfig)
		want, err := cmd.Output()
		if err != nil {
			t.Fatalf("nix-store --dump %s: %v", p, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: agent NAR (%d bytes) differs from nix-store --dump (%d bytes)", p, got.Len(), len(want))
		}
	}
	if err := dumpNAR(context.Background(), filepath.Join(dir, "missing"), io.Discard); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing path: %v", err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := exec.Command("mkfifo", fifo).Run(); err == nil {
		if err := dumpNAR(context.Background(), dir, io.Discard); err == nil || !strings.Contains(err.Error(), "unsupported file type") {
			t.Errorf("tree with a FIFO: %v", err)
		}
	}
}

// fakeGuest speaks the guest's side of the protocol on a pipe, as the
// test script says; it is a fake, for the host side's tests.
type fakeGuest struct {
	c  net.Conn
	br *bufio.Reader
}

func (g *fakeGuest) send(t *testing.T, typ byte, v any) {
	t.Helper()
	var err error
	if b, ok := v.([]byte); ok {
		err = writeFrame(g.c, typ, b)
	} else {
		err = writeJSON(g.c, typ, v)
	}
	if err != nil {
		t.Error(err)
	}
}

func (g *fakeGuest) expect(t *testing.T, want byte, v any) {
	t.Helper()
	typ, p, err := readFrame(g.br, nil)
	if err != nil || typ != want {
		t.Errorf("fake guest got %q (%v), want %q", typ, err, want)
		return
	}
	if v != nil {
		if err := decode(typ, p, v); err != nil {
			t.Error(err)
		}
	}
}

type pipeListener struct {
	c    net.Conn
	done chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	if l.c != nil {
		c := l.c
		l.c = nil
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}
func (l *pipeListener) Close() error   { return nil }
func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{} }

// TestHostConn drives the host side against a fake guest: hello, a
// set-up the guest refuses, a command whose output, agent log lines and
// exit status come back in order, and power-off.
func TestHostConn(t *testing.T) {
	host, guest := net.Pipe()
	g := &fakeGuest{c: guest, br: bufio.NewReader(guest)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.send(t, msgHello, Hello{Version: Version, Kernel: "6.1-fake", Uptime: 1e9})
		var s Setup
		g.expect(t, msgSetup, &s)
		if len(s.Steps) != 1 || s.Steps[0].Mount == nil || s.Steps[0].Mount.Type != "virtiofs" {
			t.Errorf("set-up arrived as %+v", s)
		}
		g.send(t, msgSetupDone, Result{Error: "mount virtiofs store on /nix/store: no such device"})
		var r Run
		g.expect(t, msgRun, &r)
		if strings.Join(r.Command, " ") != "/bin/sh -c exit 3" || r.UID != 1000 {
			t.Errorf("run arrived as %+v", r)
		}
		g.send(t, msgStdout, []byte("out1 "))
		g.send(t, msgLog, []byte("agent note"))
		g.send(t, msgStderr, []byte("err1"))
		g.send(t, msgStdout, []byte("out2"))
		g.send(t, msgExit, Exit{Code: 3})
		g.expect(t, msgPowerOff, nil)
		guest.Close()
	}()
	ctx := context.Background()
	c, err := Accept(ctx, &pipeListener{c: host, done: done}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if c.Hello.Kernel != "6.1-fake" {
		t.Errorf("hello %+v", c.Hello)
	}
	err = c.Setup(ctx, &Setup{Steps: []Step{{Mount: &Mount{Type: "virtiofs", Source: "store", Target: "/nix/store"}}}})
	if err == nil || !strings.Contains(err.Error(), "no such device") {
		t.Errorf("refused set-up: %v", err)
	}
	var out, errb bytes.Buffer
	ex, err := c.Run(ctx, &Run{Command: []string{"/bin/sh", "-c", "exit 3"}, UID: 1000, GID: 100}, &out, &errb)
	if err != nil || ex.Code != 3 {
		t.Errorf("run: %+v %v", ex, err)
	}
	if out.String() != "out1 out2" || errb.String() != "err1" {
		t.Errorf("stdout %q stderr %q", out.String(), errb.String())
	}
	if err := c.PowerOff(ctx); err != nil {
		t.Error(err)
	}
	<-done
	c.Close()
}

// TestHostConnGuestGone: a guest that hangs up mid-command is an error,
// not a zero exit status; one that speaks another protocol version is
// refused at hello.
func TestHostConnGuestGone(t *testing.T) {
	host, guest := net.Pipe()
	go func() {
		writeJSON(guest, msgHello, Hello{Version: Version})
		readFrame(guest, nil)
		writeFrame(guest, msgStdout, []byte("partial"))
		guest.Close()
	}()
	c, err := Accept(context.Background(), &pipeListener{c: host, done: make(chan struct{})}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := c.Run(context.Background(), &Run{Command: []string{"/x"}}, &out, io.Discard); err == nil || !strings.Contains(err.Error(), "hung up") {
		t.Errorf("run with the guest gone: %v", err)
	}

	host, guest = net.Pipe()
	go func() { writeJSON(guest, msgHello, Hello{Version: Version + 1}) }()
	if _, err := Accept(context.Background(), &pipeListener{c: host, done: make(chan struct{})}, quiet); !errors.Is(err, ErrProtocol) {
		t.Errorf("other version: %v", err)
	}
}

// TestSendDirStream: data frames are copied in order; an error the guest
// reports at the end is returned.
func TestSendDirStream(t *testing.T) {
	for _, tc := range []struct {
		name    string
		end     Result
		wantErr string
	}{{"ok", Result{}, ""}, {"failed", Result{Error: "lstat /nix/store/x: no such file or directory", NotExist: true}, "no such file"}} {
		host, guest := net.Pipe()
		go func() {
			var req DirRequest
			typ, p, _ := readFrame(guest, nil)
			if typ != msgSendDir || decode(typ, p, &req) != nil || req.Path != "/nix/store/x" {
				t.Errorf("request %q %s", typ, p)
			}
			fw := &frameWriter{w: guest}
			fw.Write([]byte("nix-"))
			fw.Write([]byte("archive"))
			writeJSON(guest, msgEnd, tc.end)
			guest.Close()
		}()
		var got bytes.Buffer
		err := SendDir(context.Background(), host, "/nix/store/x", &got)
		if tc.wantErr == "" && (err != nil || got.String() != "nix-archive") {
			t.Errorf("%s: %q %v", tc.name, got.String(), err)
		}
		if tc.wantErr != "" && (!errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// FuzzHostRun feeds arbitrary guest answers to a Run: the host side must
// end with an exit status or an error, never panic or hang.
func FuzzHostRun(f *testing.F) {
	var b bytes.Buffer
	writeFrame(&b, msgStdout, []byte("hi"))
	writeJSON(&b, msgExit, Exit{Code: 1})
	f.Add(b.Bytes())
	f.Add([]byte{msgExit, 0, 0, 0, 1, '{'})
	f.Add([]byte{msgLog, 0, 0, 0, 0, msgSetupDone, 0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, in []byte) {
		var hello bytes.Buffer
		writeJSON(&hello, msgHello, Hello{Version: Version})
		c := &Conn{c: nopConn{}, br: bufio.NewReader(io.MultiReader(&hello, bytes.NewReader(in))), log: quiet}
		typ, p, err := c.next()
		if err != nil || decode(typ, p, &c.Hello) != nil {
			t.Fatal("hello")
		}
		c.Run(context.Background(), &Run{Command: []string{"/x"}}, io.Discard, io.Discard)
	})
}

// nopConn accepts writes and has nothing to read (the reader is given
// separately).
type nopConn struct{ net.Conn }

func (nopConn) Write(p []byte) (int, error) { return len(p), nil }
func (nopConn) Close() error                { return nil }
func (nopConn) SetDeadline(time.Time) error { return nil }
