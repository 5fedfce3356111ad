package vmm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func TestHandlerListEdits(t *testing.T) {
	var ran []string
	step := func(name string) Handler {
		return Handler{Name: name, Fn: func(ctx context.Context, m *Machine) error { ran = append(ran, name); return nil }}
	}
	base := NewHandlerList(step("a"), step("b"), step("c"))
	l := base.AppendAfter("a", step("a2")).Prepend(step("first")).Append(step("last")).Remove("b").Swap(Handler{Name: "c", Fn: func(ctx context.Context, m *Machine) error {
		ran = append(ran, "c-swapped")
		return nil
	}})
	if got, want := l.Names(), []string{"first", "a", "a2", "c", "last"}; !reflect.DeepEqual(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	if got := base.Names(); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("editing changed the original list: %v", got)
	}
	if err := l.Run(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if want := []string{"first", "a", "a2", "c-swapped", "last"}; !reflect.DeepEqual(ran, want) {
		t.Errorf("ran %v, want %v", ran, want)
	}
	ran = nil
	boom := errors.New("boom")
	err := base.AppendAfter("a", Handler{Name: "fails", Fn: func(context.Context, *Machine) error { return boom }}).Run(context.Background(), nil)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "fails") || !reflect.DeepEqual(ran, []string{"a"}) {
		t.Errorf("failing step: err %v, ran %v", err, ran)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := base.Run(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if !base.Has("b") || base.Has("zz") || base.Len() != 3 {
		t.Error("Has/Len")
	}
}

func TestProbeKVM(t *testing.T) {
	dir := t.TempDir()
	dev := filepath.Join(dir, "kvm")
	os.WriteFile(dev, nil, 0o600)
	cpuinfo := func(flags string) string {
		p := filepath.Join(dir, "cpuinfo-"+strings.ReplaceAll(flags, " ", "_"))
		os.WriteFile(p, []byte("processor\t: 0\nflags\t\t: "+flags+"\n\nprocessor\t: 1\nflags\t\t: "+flags+"\n"), 0o644)
		return p
	}
	if err := probeKVM(dev, cpuinfo("fpu vme vmx sse")); err != nil {
		t.Errorf("vmx: %v", err)
	}
	if err := probeKVM(dev, cpuinfo("fpu svm")); err != nil {
		t.Errorf("svm: %v", err)
	}
	if err := probeKVM(dev, cpuinfo("fpu vme hypervisor")); !errors.Is(err, ErrNoKVM) || !strings.Contains(err.Error(), "nested") {
		t.Errorf("no vmx/svm: %v", err)
	}
	if err := probeKVM(filepath.Join(dir, "absent"), cpuinfo("vmx")); !errors.Is(err, ErrNoKVM) {
		t.Errorf("no device: %v", err)
	}
}

func TestSelect(t *testing.T) {
	for _, hv := range []Hypervisor{QEMU, CloudHypervisor} {
		if got, err := Select(hv); err != nil || got != hv {
			t.Errorf("Select(%s) = %s, %v", hv, got, err)
		}
	}
	got, err := Select("")
	if err != nil {
		t.Fatal(err)
	}
	if KVMUsable() != nil && got != QEMU {
		t.Errorf("without KVM the default is %s, want qemu", got)
	}
	if _, err := Select("xen"); !errors.Is(err, ErrConfig) {
		t.Errorf("unknown hypervisor: %v", err)
	}
	for in, want := range map[string]Hypervisor{"": "", "auto": "", "qemu": QEMU, "ch": CloudHypervisor, "cloud-hypervisor": CloudHypervisor} {
		if got, err := ParseHypervisor(in); err != nil || got != want {
			t.Errorf("ParseHypervisor(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseHypervisor("firecracker"); !errors.Is(err, ErrConfig) {
		t.Errorf("ParseHypervisor(firecracker): %v", err)
	}
}

func TestTailBuffer(t *testing.T) {
	tb := newTailBuffer(100)
	for i := 0; i < 50; i++ {
		tb.Write([]byte("0123456789"))
	}
	b := tb.Bytes()
	if len(b) > 100 || len(b) < 75 || string(b[len(b)-10:]) != "0123456789" {
		t.Errorf("tail of %d bytes: %q", len(b), b)
	}
}

func TestPanicLine(t *testing.T) {
	console := "[    1.2] Run /init as init process\r\n[    1.3] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n[    1.4] ---[ end Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100 ]---\r\n"
	if got := panicLine([]byte(console)); got != "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100" {
		t.Errorf("panic line %q", got)
	}
	if got := panicLine([]byte("all fine\n")); got != "" {
		t.Errorf("no panic: %q", got)
	}
}

// A sweep running while other VMs make their directories never removes
// one: the lock file is visible only once locked. (Builds starting side
// by side used to lose their directory to each other's sweep.)
func TestSweepDuringMakeWorkDir(t *testing.T) {
	dir := t.TempDir()
	stop := make(chan struct{})
	swept := make(chan struct{})
	go func() {
		defer close(swept)
		for {
			select {
			case <-stop:
				return
			default:
				RemoveStaleWorkDirs(dir, nil)
			}
		}
	}()
	var locks []*os.File
	for range 300 {
		d, lock, err := makeWorkDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		locks = append(locks, lock)
		if _, err := os.Stat(filepath.Join(d, workDirLock)); err != nil {
			t.Fatalf("a live VM's directory was swept: %v", err)
		}
	}
	close(stop)
	<-swept
	for _, l := range locks {
		l.Close()
	}
	RemoveStaleWorkDirs(dir, nil)
	if left, _ := filepath.Glob(filepath.Join(dir, workDirPrefix+"*")); len(left) != 0 {
		t.Errorf("%d directories left once their locks were released", len(left))
	}
}

// TestRemoveStaleWorkDirs: a working directory whose lock nobody holds
// (left by a killed castor) goes; a locked one (a live VM), one being set
// up (no lock yet) and other files stay.
func TestRemoveStaleWorkDirs(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, lock bool) string {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o700)
		os.WriteFile(filepath.Join(d, "vsock.sock"), nil, 0o600)
		if lock {
			os.WriteFile(filepath.Join(d, workDirLock), nil, 0o600)
		}
		return d
	}
	stale := mk(workDirPrefix+"stale", true)
	live := mk(workDirPrefix+"live", true)
	settingUp := mk(workDirPrefix+"new", false)
	other := mk("something-else", true)
	f, err := os.Open(filepath.Join(live, workDirLock))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	RemoveStaleWorkDirs(dir, nil)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale directory kept: %v", err)
	}
	for _, d := range []string{live, settingUp, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s removed: %v", d, err)
		}
	}
}
