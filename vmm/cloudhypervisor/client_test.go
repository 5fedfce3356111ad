package cloudhypervisor_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	ch "github.com/castor-nix/castor/vmm/cloudhypervisor"
)

type request struct {
	Method, Path, ContentType string
	Body                      []byte
}

// fakeCloudHypervisor is an httptest server on a unix socket standing in
// for Cloud Hypervisor's API: it records each request and answers as
// Cloud Hypervisor documents (204 for actions, JSON for ping and info),
// or with failures when told to.
type fakeCloudHypervisor struct {
	mu   sync.Mutex
	reqs []request
	fail map[string]int // path -> status to answer
	srv  *httptest.Server
	sock string
}

func newFake(t *testing.T) *fakeCloudHypervisor {
	f := &fakeCloudHypervisor{fail: map[string]int{}, sock: filepath.Join(t.TempDir(), "api.sock")}
	l, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Listener = l
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCloudHypervisor) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, request{r.Method, r.URL.Path, r.Header.Get("Content-Type"), body})
	status, failing := f.fail[r.URL.Path]
	f.mu.Unlock()
	if failing {
		w.WriteHeader(status)
		io.WriteString(w, "Error from API: The VM could not boot: VmNotCreated")
		return
	}
	switch r.URL.Path {
	case "/api/v1/vmm.ping":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"build_version":"v53.0","version":"53.0","pid":4242,"features":["kvm"]}`)
	case "/api/v1/vm.info":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"config":{"payload":{"kernel":"/k"}},"state":"Running","memory_actual_size":268435456}`)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (f *fakeCloudHypervisor) last() request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

// TestRequestShapes: each call the client makes is the method, path and
// body Cloud Hypervisor's API defines, sent over the unix socket.
func TestRequestShapes(t *testing.T) {
	f := newFake(t)
	c, err := ch.NewUnixClient(f.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	ping, err := c.GetVmmPingWithResponse(ctx)
	if err := ch.Expect("vmm.ping", ping, err, 200); err != nil {
		t.Fatal(err)
	}
	if ping.JSON200 == nil || ping.JSON200.Version != "53.0" || *ping.JSON200.Pid != 4242 {
		t.Errorf("ping answer decoded as %+v", ping.JSON200)
	}
	if r := f.last(); r.Method != "GET" || r.Path != "/api/v1/vmm.ping" {
		t.Errorf("ping: %s %s", r.Method, r.Path)
	}

	kernel, initrd, cmdline, tag, sock, id := "/boot/vmlinux", "/boot/initrd.cpio", "console=ttyS0 panic=-1", "store", "/run/fs.sock", "fs0"
	shared := true
	cfg := ch.VmConfig{
		Cpus:    &ch.CpusConfig{BootVcpus: 2, MaxVcpus: 2},
		Memory:  &ch.MemoryConfig{Size: 512 << 20, Shared: &shared},
		Payload: ch.PayloadConfig{Kernel: &kernel, Initramfs: &initrd, Cmdline: &cmdline},
		Fs:      &[]ch.FsConfig{{Tag: tag, Socket: sock, NumQueues: 1, QueueSize: 1024, Id: &id}},
		Serial:  &ch.SerialConfig{Mode: ch.ConsoleModeTty},
		Console: &ch.ConsoleConfig{Mode: ch.ConsoleModeOff},
		Vsock:   &ch.VsockConfig{Cid: 3, Socket: "/run/vsock.sock"},
		Rng:     &ch.RngConfig{Src: "/dev/urandom"},
	}
	cr, err := c.CreateVMWithResponse(ctx, cfg)
	if err := ch.Expect("vm.create", cr, err, 204); err != nil {
		t.Fatal(err)
	}
	r := f.last()
	if r.Method != "PUT" || r.Path != "/api/v1/vm.create" || r.ContentType != "application/json" {
		t.Errorf("create: %s %s %s", r.Method, r.Path, r.ContentType)
	}
	// The body, as Cloud Hypervisor's serde reads it: snake_case keys,
	// size in bytes, enum values as in its spec.
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"cpus":    map[string]any{"boot_vcpus": 2.0, "max_vcpus": 2.0},
		"memory":  map[string]any{"size": float64(512 << 20), "shared": true},
		"payload": map[string]any{"kernel": kernel, "initramfs": initrd, "cmdline": cmdline},
		"fs":      []any{map[string]any{"tag": tag, "socket": sock, "num_queues": 1.0, "queue_size": 1024.0, "id": id}},
		"serial":  map[string]any{"mode": "Tty"},
		"console": map[string]any{"mode": "Off"},
		"vsock":   map[string]any{"cid": 3.0, "socket": "/run/vsock.sock"},
		"rng":     map[string]any{"src": "/dev/urandom"},
	}
	for k, v := range want {
		got, _ := json.Marshal(body[k])
		exp, _ := json.Marshal(v)
		if string(got) != string(exp) {
			t.Errorf("vm.create %s: %s, want %s", k, got, exp)
		}
	}
	if len(body) != len(want) {
		t.Errorf("vm.create has %d keys, want %d: %s", len(body), len(want), r.Body)
	}

	for _, call := range []struct {
		path string
		do   func() (ch.Response, error)
	}{
		{"/api/v1/vm.boot", func() (ch.Response, error) { return c.BootVMWithResponse(ctx) }},
		{"/api/v1/vm.shutdown", func() (ch.Response, error) { return c.ShutdownVMWithResponse(ctx) }},
		{"/api/v1/vm.delete", func() (ch.Response, error) { return c.DeleteVMWithResponse(ctx) }},
		{"/api/v1/vmm.shutdown", func() (ch.Response, error) { return c.ShutdownVMMWithResponse(ctx) }},
	} {
		resp, err := call.do()
		if err := ch.Expect(call.path, resp, err, 204); err != nil {
			t.Errorf("%s: %v", call.path, err)
		}
		if r := f.last(); r.Method != "PUT" || r.Path != call.path || len(r.Body) != 0 {
			t.Errorf("%s: sent %s %s with %d body bytes", call.path, r.Method, r.Path, len(r.Body))
		}
	}

	info, err := c.GetVmInfoWithResponse(ctx)
	if err := ch.Expect("vm.info", info, err, 200); err != nil {
		t.Fatal(err)
	}
	if info.JSON200 == nil || info.JSON200.State != ch.VmStateRunning || *info.JSON200.MemoryActualSize != 256<<20 {
		t.Errorf("info decoded as %+v", info.JSON200)
	}
	if r := f.last(); r.Method != "GET" || r.Path != "/api/v1/vm.info" {
		t.Errorf("info: %s %s", r.Method, r.Path)
	}
}

// TestExpectReportsCloudHypervisorsMessage: an error status carries the
// API's message; a transport error is wrapped as is.
func TestExpectReportsCloudHypervisorsMessage(t *testing.T) {
	f := newFake(t)
	f.fail["/api/v1/vm.boot"] = http.StatusInternalServerError
	c, _ := ch.NewUnixClient(f.sock)
	resp, err := c.BootVMWithResponse(context.Background())
	err = ch.Expect("vm.boot", resp, err, 204)
	if !errors.Is(err, ch.ErrStatus) || !strings.Contains(err.Error(), "VmNotCreated") || !strings.Contains(err.Error(), "500") {
		t.Errorf("error status: %v", err)
	}
	gone, _ := ch.NewUnixClient(filepath.Join(t.TempDir(), "absent.sock"))
	resp, err = gone.BootVMWithResponse(context.Background())
	if err := ch.Expect("vm.boot", resp, err, 204); err == nil || errors.Is(err, ch.ErrStatus) {
		t.Errorf("no server: %v", err)
	}
}
