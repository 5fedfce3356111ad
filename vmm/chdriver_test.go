package vmm_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/vmm"
	ch "github.com/castor-nix/castor/vmm/cloudhypervisor"
)

// The test binary doubles as a fake cloud-hypervisor executable: with
// fakeCHEnv set, TestMain runs fakeCloudHypervisor instead of the tests.
const (
	fakeCHEnv  = "CASTOR_TEST_FAKE_CLOUD_HYPERVISOR" // the mode
	fakeCHLog  = "CASTOR_TEST_FAKE_CLOUD_HYPERVISOR_LOG"
	fakeBanner = "fake-cloud-hypervisor: guest console line"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeCHEnv); mode != "" {
		os.Exit(fakeCloudHypervisor(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeCloudHypervisor stands in for the cloud-hypervisor binary: it
// serves the API on the listening socket passed as --api-socket fd=N,
// writes events to --event-monitor fd=M, logs every request (method,
// path, body) to $fakeCHLog, and plays the guest as mode says:
// "poweroff" (the guest powers off after boot: the VMM exits 0),
// "reboot" (the guest resets: a "rebooting" event, and the VMM keeps
// running), "stay" (the guest runs until vm.shutdown and vmm.shutdown).
func fakeCloudHypervisor(mode string, args []string) int {
	fds := map[string]int{}
	for i := 0; i+1 < len(args); i++ {
		if v, ok := strings.CutPrefix(args[i+1], "fd="); ok && strings.HasPrefix(args[i], "--") {
			n, _ := strconv.Atoi(v)
			fds[args[i]] = n
		}
	}
	l, err := net.FileListener(os.NewFile(uintptr(fds["--api-socket"]), "api"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake: api socket:", err)
		return 2
	}
	events := os.NewFile(uintptr(fds["--event-monitor"]), "events")
	logf, _ := os.OpenFile(os.Getenv(fakeCHLog), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	event := func(source, ev string) {
		fmt.Fprintf(events, `{"timestamp":{"secs":0,"nanos":1},"source":%q,"event":%q,"properties":null}`+"\n", source, ev)
	}
	event("vmm", "starting")
	exit := make(chan int, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		line, _ := json.Marshal(map[string]string{"method": r.Method, "path": r.URL.Path, "body": string(body)})
		logf.Write(append(line, '\n'))
		switch r.URL.Path {
		case "/api/v1/vmm.ping":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"version":"53.0-fake","pid":`+strconv.Itoa(os.Getpid())+`}`)
		case "/api/v1/vm.create":
			var cfg ch.VmConfig
			if err := json.Unmarshal(body, &cfg); err != nil || cfg.Payload.Kernel == nil {
				w.WriteHeader(http.StatusInternalServerError)
				io.WriteString(w, "fake: bad VmConfig")
				return
			}
			// Cloud Hypervisor connects to each virtio-fs backend now.
			if cfg.Fs != nil {
				for _, fs := range *cfg.Fs {
					c, err := net.Dial("unix", fs.Socket)
					if err != nil {
						w.WriteHeader(http.StatusInternalServerError)
						io.WriteString(w, "fake: virtio-fs backend: "+err.Error())
						return
					}
					c.Close()
				}
			}
			w.WriteHeader(http.StatusNoContent)
		case "/api/v1/vm.boot":
			fmt.Println(fakeBanner)
			event("vm", "booted")
			w.WriteHeader(http.StatusNoContent)
			switch mode {
			case "poweroff":
				go func() { time.Sleep(100 * time.Millisecond); event("vm", "shutdown"); exit <- 0 }()
			case "reboot":
				go func() { time.Sleep(100 * time.Millisecond); event("vm", "rebooting") }()
			}
		case "/api/v1/vm.info":
			// Unlabelled, as a stricter test of the client.
			io.WriteString(w, `{"config":{"payload":{}},"state":"Running"}`)
		case "/api/v1/vm.shutdown", "/api/v1/vm.delete":
			w.WriteHeader(http.StatusNoContent)
		case "/api/v1/vmm.shutdown":
			w.WriteHeader(http.StatusNoContent)
			event("vmm", "shutdown")
			go func() { time.Sleep(10 * time.Millisecond); exit <- 0 }()
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	})}
	go srv.Serve(l)
	return <-exit
}

type loggedRequest struct {
	Method, Path, Body string
}

func readFakeLog(t *testing.T, path string) []loggedRequest {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []loggedRequest
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r loggedRequest
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func fakeCHMachine(t *testing.T, mode string) (*vmm.Machine, string) {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initrd"} {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
	}
	logPath := filepath.Join(dir, "requests.jsonl")
	t.Setenv(fakeCHEnv, mode)
	t.Setenv(fakeCHLog, logPath)
	m, err := vmm.New(vmm.Config{
		Hypervisor: vmm.CloudHypervisor,
		Binary:     os.Args[0],
		Kernel:     filepath.Join(dir, "vmlinux"),
		Initramfs:  filepath.Join(dir, "initrd"),
		KernelArgs: "castor.test=1",
		CPUs:       2,
		MemoryMiB:  256,
		FS: []vmm.FS{{Tag: "store", NewFS: func(ctx context.Context) (fuse.RawFileSystem, error) {
			return fuse.NewDefaultRawFileSystem(), nil
		}}},
		Vsock:     &vmm.Vsock{},
		StopGrace: 2 * time.Second,
		Logger:    quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, logPath
}

// TestCloudHypervisorDriverWithFake runs the Cloud Hypervisor driver's
// steps against a fake cloud-hypervisor process: the API is pinged, the
// VM created with castor's configuration (CPUs, shared memory, the PVH
// kernel, the virtio-fs backend's socket, the serial console on stdout,
// the hybrid vsock socket) and booted, its console reaches Console, and
// a guest power-off ends Wait with nil.
func TestCloudHypervisorDriverWithFake(t *testing.T) {
	m, logPath := fakeCHMachine(t, "poweroff")
	ctx := context.Background()
	if got := m.Handlers.Create.Names(); !strings.Contains(strings.Join(got, " "), vmm.StepCHCreate) {
		t.Errorf("create steps %v", got)
	}
	if err := m.Create(ctx); err != nil {
		t.Fatal(err)
	}
	pid := m.PID()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := m.Wait(wctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if !strings.Contains(string(m.Console()), fakeBanner) {
		t.Errorf("console %q lacks the fake's line", m.Console())
	}
	reqs := readFakeLog(t, logPath)
	var paths []string
	for _, r := range reqs {
		paths = append(paths, r.Method+" "+r.Path)
	}
	if want := "GET /api/v1/vmm.ping,PUT /api/v1/vm.create,PUT /api/v1/vm.boot,GET /api/v1/vm.info"; strings.Join(paths, ",") != want {
		t.Errorf("requests %v, want %s", paths, want)
	}
	var cfg ch.VmConfig
	if err := json.Unmarshal([]byte(reqs[1].Body), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Cpus == nil || cfg.Cpus.BootVcpus != 2 || cfg.Memory == nil || cfg.Memory.Size != 256<<20 || cfg.Memory.Shared == nil || !*cfg.Memory.Shared {
		t.Errorf("cpus/memory: %+v %+v", cfg.Cpus, cfg.Memory)
	}
	if c := *cfg.Payload.Cmdline; !strings.Contains(c, "console=ttyS0") || !strings.Contains(c, "castor.test=1") || strings.Contains(c, "tsc_early_khz") {
		t.Errorf("cmdline %q", c)
	}
	if cfg.Fs == nil || len(*cfg.Fs) != 1 || (*cfg.Fs)[0].Tag != "store" || !strings.HasPrefix((*cfg.Fs)[0].Socket, m.WorkDir()) {
		t.Errorf("fs %+v", cfg.Fs)
	}
	if cfg.Vsock == nil || cfg.Vsock.Cid != 3 || cfg.Vsock.Socket != m.VsockSocket() {
		t.Errorf("vsock %+v", cfg.Vsock)
	}
	if cfg.Serial == nil || cfg.Serial.Mode != ch.ConsoleModeTty || cfg.Console == nil || cfg.Console.Mode != ch.ConsoleModeOff {
		t.Errorf("serial %+v console %+v", cfg.Serial, cfg.Console)
	}
	m.Close()
	checkGone(t, m, pid)
}

// TestCloudHypervisorResetEndsTheVM: a guest reset (a kernel panic with
// panic=-1) makes Cloud Hypervisor report "rebooting"; castor ends the VM
// and Wait says the guest reset.
func TestCloudHypervisorResetEndsTheVM(t *testing.T) {
	m, _ := fakeCHMachine(t, "reboot")
	ctx := context.Background()
	if err := m.Create(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := m.Wait(wctx); !errors.Is(err, vmm.ErrGuestReset) {
		t.Fatalf("Wait: %v, want ErrGuestReset", err)
	}
}

// TestCloudHypervisorStop: Stop shuts the VM down, deletes it and ends
// the VMM through the API.
func TestCloudHypervisorStop(t *testing.T) {
	m, logPath := fakeCHMachine(t, "stay")
	ctx := context.Background()
	if err := m.Create(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pid := m.PID()
	if err := m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Errorf("Wait after Stop: %v", err)
	}
	reqs := readFakeLog(t, logPath)
	var tail []string
	for _, r := range reqs[len(reqs)-3:] {
		tail = append(tail, r.Path)
	}
	if want := "/api/v1/vm.shutdown /api/v1/vm.delete /api/v1/vmm.shutdown"; strings.Join(tail, " ") != want {
		t.Errorf("stop requests %v, want %s", tail, want)
	}
	m.Close()
	checkGone(t, m, pid)
}

// TestCloudHypervisorRefusesNet: no user-mode networking under Cloud
// Hypervisor, said before anything starts.
func TestCloudHypervisorRefusesNet(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "k"), []byte("x"), 0o644)
	m, _ := vmm.New(vmm.Config{Hypervisor: vmm.CloudHypervisor, Binary: os.Args[0], Kernel: filepath.Join(dir, "k"), Initramfs: filepath.Join(dir, "k"), Net: true, Logger: quiet})
	if err := m.Create(context.Background()); !errors.Is(err, vmm.ErrConfig) || !strings.Contains(err.Error(), "networking") {
		t.Errorf("Create with Net: %v", err)
	}
}
