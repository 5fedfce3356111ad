package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/castor-nix/castor/vmm/virtiofs"
)

// Hypervisor names a VMM castor can drive.
type Hypervisor string

const (
	QEMU            Hypervisor = "qemu"
	CloudHypervisor Hypervisor = "cloud-hypervisor"
)

// Sentinel errors; errors.Is finds them in what the machine returns.
var (
	// ErrConfig: the configuration cannot work (a missing kernel, a
	// device the hypervisor lacks, an unknown hypervisor).
	ErrConfig = errors.New("bad VM configuration")
	// ErrGuestReset: the guest reset instead of powering off (a reboot,
	// or a kernel panic, which castor's kernel command line turns into an
	// immediate reset). The VM is gone.
	ErrGuestReset = errors.New("the guest reset (reboot or kernel panic)")
	// ErrVMMExited: the VMM process ended without the guest powering off
	// (it crashed, was killed from outside, or refused the configuration).
	ErrVMMExited = errors.New("the VMM exited unexpectedly")
	// ErrKilled: castor killed the VM (Kill, Close, or the context of
	// Wait's caller) before it powered off.
	ErrKilled = errors.New("the VM was killed")
	// ErrState: a lifecycle call out of order (Start before Create…).
	ErrState = errors.New("VM lifecycle call out of order")
)

// VM is one virtual machine's life. Create brings the VMM up with the
// guest's devices connected but the guest not running; Start lets the
// guest run; Wait returns when the VMM process has exited; Stop asks the
// guest to power off and forces it after a grace period; Close releases
// everything (killing a VM still running). Console returns the tail of
// the serial console (the guest kernel's log). Calls other than Wait,
// Console and Close must not be concurrent.
type VM interface {
	// Create starts the VMM with the configuration, devices and backends
	// ready. On error, everything it started is stopped again.
	Create(ctx context.Context) error
	// Start boots the guest created by Create.
	Start(ctx context.Context) error
	// Wait waits for the VMM to exit. It returns nil when the guest
	// powered off (or Stop stopped it), an error wrapping ErrGuestReset,
	// ErrVMMExited or ErrKilled otherwise, or ctx's error when ctx ends
	// first (the VM keeps running). It may be called any number of times,
	// concurrently.
	Wait(ctx context.Context) error
	// Stop powers the guest off: a request the guest may honour, then,
	// after Config.StopGrace or when ctx ends, the VMM is told to quit and
	// finally killed. It returns when the VMM has exited.
	Stop(ctx context.Context) error
	// Kill kills the VMM at once and waits for it to exit.
	Kill() error
	// Console returns the last Config.ConsoleTail bytes of the serial
	// console.
	Console() []byte
	// Close kills the VMM if it still runs, stops the device backends,
	// and removes the sockets and the working directory castor made. It
	// is safe to call more than once.
	Close() error
}

// Config describes a VM. Kernel and Initramfs are required; the rest has
// defaults.
type Config struct {
	// Hypervisor: QEMU, CloudHypervisor, or "" for Select's choice.
	Hypervisor Hypervisor
	// Binary is the VMM executable; default qemu-system-x86_64 or
	// cloud-hypervisor from PATH.
	Binary string
	// Kernel is an uncompressed (PVH) vmlinux, Initramfs a cpio archive;
	// see package images.
	Kernel, Initramfs string
	// KernelArgs are appended to the kernel command line castor chooses
	// (serial console, panic=-1, quiet, and fast-boot settings).
	KernelArgs string
	// CPUs (default 1) and MemoryMiB (default 512).
	CPUs      int
	MemoryMiB int
	// FS are virtio-fs devices.
	FS []FS
	// Vsock, if set, gives the guest a virtio-vsock device with hybrid
	// unix-socket semantics on the host (see package vsock) under both
	// hypervisors.
	Vsock *Vsock
	// Net gives the guest a virtio-net device with user-mode networking
	// (QEMU's slirp: guest 10.0.2.15/24, gateway 10.0.2.2, DNS 10.0.2.3).
	// Cloud Hypervisor has no user-mode networking: Net with it is an
	// error wrapping ErrConfig.
	Net bool
	// Accel is QEMU's accelerator, "kvm" or "tcg"; default KVM when it
	// works (KVMUsable), TCG otherwise. Cloud Hypervisor needs KVM.
	Accel string
	// Console receives the serial console as it comes (may be nil); it is
	// written from one goroutine and never after Wait has returned.
	Console io.Writer
	// ConsoleTail is how much of the console Console() keeps (64 KiB
	// when zero).
	ConsoleTail int
	// WorkDir holds the machine's sockets. When empty a fresh private
	// directory is made under os.TempDir() and removed by Close.
	WorkDir string
	// StopGrace is how long Stop waits for the guest to power off before
	// forcing it (3 s when zero).
	StopGrace time.Duration
	// Logger for lifecycle events (slog.Default() when nil).
	Logger *slog.Logger
}

// FS is a virtio-fs device, served either by castor in-process (NewFS)
// or by a vhost-user-fs backend listening on Socket (castor virtiofs,
// virtiofsd).
type FS struct {
	// Tag is the name the guest mounts: mount -t virtiofs TAG /mnt.
	Tag string
	// NewFS makes the filesystem castor serves to this VM.
	NewFS virtiofs.NewFS
	// Options for castor's device (nil: defaults).
	Options *virtiofs.Options
	// Socket is an external backend's socket, used when NewFS is nil.
	Socket string
}

// Vsock is the guest's vsock device.
type Vsock struct {
	// CID is the guest's context id (3 when zero). Each VM has its own
	// device and host socket, so VMs may share a CID.
	CID uint32
	// Socket is the host side: connect there with vsock.Dial to reach a
	// guest port; the guest connecting to the host's port P reaches a
	// listener on Socket_P. Default: WorkDir/vsock.sock.
	Socket string
}

// DefaultKernelArgs are the kernel command line castor starts from: the
// serial console, reset on panic (which the VMM turns into an exit),
// quiet, and no boot-time work a micro-VM does not need.
const DefaultKernelArgs = "console=ttyS0 panic=-1 quiet cryptomgr.notests mitigations=off audit=0 8250.nr_uarts=1 random.trust_cpu=on no_timer_check"

// TCGKernelArgs are added under TCG. tsc_early_khz: QEMU's microvm has no
// reliable early TSC calibration without KVM (half of the boots hang at
// PIT calibration). init_on_alloc=0: Debian's kernel clears every page it
// allocates, a hardening against leaking stale kernel memory that matters
// little in a VM that runs one command for one user and is thrown away,
// and that under TCG costs about 0.2 s per 256 MiB: a 256 MiB read over
// virtio-fs took 1.4 s with init_on_alloc=0 and 1.9 s without it
// (bench/vm/run.sh).
// Under KVM clearing is cheap and the default stays.
const TCGKernelArgs = "tsc_early_khz=2000000 init_on_alloc=0"

// TCGCPU is the CPU model QEMU emulates under TCG: its most capable one
// without ERMS and FSRM. When the guest has them, its kernel copies and
// clears memory with `rep movsb` and `rep stosb` (page cache to user,
// clearing new pages), and TCG runs a rep string instruction one element
// per loop iteration, here one byte; without them the kernel moves 8
// bytes at a time. Every read from the store goes through such a copy: a
// 256 MiB sequential read over virtio-fs took 4.5 s with "max" and 2.0 s
// with this model, and a re-read from the guest's page cache 2.7 s and
// 0.8 s (bench/vm/run.sh).
const TCGCPU = "max,-erms,-fsrm"

// Machine is a VM driven by castor, under QEMU or Cloud Hypervisor. Its
// life is two editable step lists (Handlers), run by Create and Start.
type Machine struct {
	// Handlers are the steps Create and Start run; edit them between New
	// and Create (see HandlerList).
	Handlers Handlers

	cfg Config
	hv  Hypervisor
	log *slog.Logger

	workDir    string
	ownWorkDir bool
	workLock   *os.File

	// Built by the create steps.
	args       []string   // VMM arguments
	extraFiles []*os.File // passed to the VMM as fd 3, 4, …
	cleanups   []func() error
	bg         sync.WaitGroup // backend goroutines
	bgCancel   context.CancelFunc
	bgCtx      context.Context

	proc    *process
	console *tailBuffer

	// exitReason is what the VMM reported before exiting (QMP SHUTDOWN
	// reason, Cloud Hypervisor events), see setExitReason.
	mu         sync.Mutex
	exitReason string
	stopping   bool // Stop or Kill asked for the exit
	killed     bool
	backendErr error // the first device backend failure
	created    bool
	started    bool
	closed     bool

	qemu *qemuState
	ch   *chState
}

var _ VM = (*Machine)(nil)

// New returns a machine for cfg under the hypervisor cfg names (or
// Select's choice), with that hypervisor's default steps. Nothing runs
// until Create.
func New(cfg Config) (*Machine, error) {
	hv, err := Select(cfg.Hypervisor)
	if err != nil {
		return nil, err
	}
	if cfg.CPUs <= 0 {
		cfg.CPUs = 1
	}
	if cfg.MemoryMiB <= 0 {
		cfg.MemoryMiB = 512
	}
	if cfg.ConsoleTail <= 0 {
		cfg.ConsoleTail = 64 << 10
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Machine{cfg: cfg, hv: hv, log: cfg.Logger.With("vmm", string(hv)), console: newTailBuffer(cfg.ConsoleTail)}
	m.bgCtx, m.bgCancel = context.WithCancel(context.Background())
	switch hv {
	case QEMU:
		m.Handlers = qemuHandlers()
	case CloudHypervisor:
		m.Handlers = chHandlers()
	}
	return m, nil
}

// Hypervisor is the VMM this machine runs under.
func (m *Machine) Hypervisor() Hypervisor { return m.hv }

// Config is the machine's configuration, defaults filled in.
func (m *Machine) Config() Config { return m.cfg }

// WorkDir is the directory holding the machine's sockets (valid after
// Create's "vmm.workdir" step).
func (m *Machine) WorkDir() string { return m.workDir }

// VsockSocket is the host side of the guest's vsock device ("" without
// one), valid after Create's "vmm.workdir" step.
func (m *Machine) VsockSocket() string {
	if m.cfg.Vsock == nil {
		return ""
	}
	return m.cfg.Vsock.Socket
}

// PID is the VMM's process id (0 before it runs).
func (m *Machine) PID() int {
	if m.proc == nil {
		return 0
	}
	return m.proc.pid()
}

// Args are the VMM's arguments as the create steps built them.
func (m *Machine) Args() []string { return append([]string(nil), m.args...) }

// AddArgs adds VMM arguments (for a step of one's own).
func (m *Machine) AddArgs(args ...string) { m.args = append(m.args, args...) }

// AddFile passes f to the VMM and returns its descriptor number there.
// The machine closes f once the VMM has started.
func (m *Machine) AddFile(f *os.File) int {
	m.extraFiles = append(m.extraFiles, f)
	return 2 + len(m.extraFiles)
}

// OnClose registers cleanup run by Close, last registered first.
func (m *Machine) OnClose(f func() error) { m.cleanups = append(m.cleanups, f) }

// Go runs f on a goroutine that Close cancels (through ctx) and waits
// for: device backends.
func (m *Machine) Go(f func(ctx context.Context)) {
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		f(m.bgCtx)
	}()
}

// Create implements VM.
func (m *Machine) Create(ctx context.Context) error {
	m.mu.Lock()
	if m.created || m.closed {
		m.mu.Unlock()
		return fmt.Errorf("%w: Create called twice or after Close", ErrState)
	}
	m.created = true
	m.mu.Unlock()
	t0 := time.Now()
	if err := m.Handlers.Create.Run(ctx, m); err != nil {
		m.Close()
		return fmt.Errorf("vmm: creating the VM (%s): %w", m.hv, err)
	}
	m.log.Debug("vmm: VM created", "took", time.Since(t0), "pid", m.PID())
	return nil
}

// Start implements VM.
func (m *Machine) Start(ctx context.Context) error {
	m.mu.Lock()
	if !m.created || m.started || m.closed || m.proc == nil {
		m.mu.Unlock()
		return fmt.Errorf("%w: Start without a created VM", ErrState)
	}
	m.started = true
	m.mu.Unlock()
	if err := m.Handlers.Start.Run(ctx, m); err != nil {
		if werr := m.exitedErr(); werr != nil {
			// The VMM is gone: that explains the failure better.
			err = fmt.Errorf("%w (%w)", err, werr)
		}
		return fmt.Errorf("vmm: starting the VM (%s): %w", m.hv, err)
	}
	return nil
}

// exitedErr returns Wait's result if the VMM has exited or exits within
// a moment: a control connection that broke is usually the VMM dying, and
// its exit (reaped just after) explains more than the broken connection.
func (m *Machine) exitedErr() error {
	if m.proc == nil {
		return nil
	}
	select {
	case <-m.proc.done:
		return m.result()
	case <-time.After(2 * time.Second):
		return nil
	}
}

// Wait implements VM.
func (m *Machine) Wait(ctx context.Context) error {
	if m.proc == nil {
		return fmt.Errorf("%w: Wait without a created VM", ErrState)
	}
	select {
	case <-m.proc.done:
		return m.result()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Exited is closed when the VMM process has exited (nil before Create).
func (m *Machine) Exited() <-chan struct{} {
	if m.proc == nil {
		return nil
	}
	return m.proc.done
}

// noteBackendErr records a device backend's failure: a VMM that exits
// because its backend hung up is explained by it.
func (m *Machine) noteBackendErr(err error) {
	m.mu.Lock()
	if m.backendErr == nil {
		m.backendErr = err
	}
	m.mu.Unlock()
}

func (m *Machine) setExitReason(r string) {
	m.mu.Lock()
	m.exitReason = r
	m.mu.Unlock()
}

// result classifies the VMM's exit.
func (m *Machine) result() error {
	if m.qemu != nil && m.qemu.qmp != nil {
		// The last events arrive before QMP's end of file.
		<-m.qemu.events
	}
	if m.ch != nil && m.ch.events != nil {
		<-m.ch.events
	}
	m.mu.Lock()
	reason, stopping, killed, berr := m.exitReason, m.stopping, m.killed, m.backendErr
	m.mu.Unlock()
	perr := m.proc.err
	e := &ExitError{Hypervisor: m.hv, Reason: reason, ProcessErr: perr, Stderr: m.proc.stderr.String(), Backend: berr}
	if p := panicLine(m.console.Bytes()); p != "" {
		e.Panic = p
	}
	switch {
	case killed:
		e.kind = ErrKilled
	case reason == "guest-shutdown" && perr == nil:
		return nil
	case stopping && !killed:
		return nil
	case reason == "guest-reset" || reason == "guest-panic" || e.Panic != "":
		e.kind = ErrGuestReset
	case perr == nil && reason == "" && m.hv == CloudHypervisor:
		// Cloud Hypervisor exits 0 when the guest powers off.
		return nil
	default:
		e.kind = ErrVMMExited
	}
	return e
}

// ExitError is a VM that ended other than by powering off.
type ExitError struct {
	Hypervisor Hypervisor
	// Reason is what the VMM said before exiting ("guest-reset",
	// "host-signal"…), "" if nothing.
	Reason string
	// ProcessErr is the VMM process's exit (nil for status 0).
	ProcessErr error
	// Panic is the kernel's panic line from the console, if any.
	Panic string
	// Stderr is the end of what the VMM wrote to its standard error.
	Stderr string
	// Backend is a device backend's failure, if one failed.
	Backend error

	kind error
}

func (e *ExitError) Error() string {
	var b strings.Builder
	b.WriteString(e.kind.Error())
	if e.Panic != "" {
		fmt.Fprintf(&b, ": %s", e.Panic)
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " (%s reported %s)", e.Hypervisor, e.Reason)
	}
	if e.ProcessErr != nil {
		fmt.Fprintf(&b, " (%s: %v)", e.Hypervisor, e.ProcessErr)
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		fmt.Fprintf(&b, ": %s", lastLines(s, 5))
	}
	if e.Backend != nil {
		fmt.Fprintf(&b, " (device backend: %v)", e.Backend)
	}
	return b.String()
}

func (e *ExitError) Unwrap() error { return e.kind }

// Stop implements VM.
func (m *Machine) Stop(ctx context.Context) error {
	if m.proc == nil {
		return fmt.Errorf("%w: Stop without a created VM", ErrState)
	}
	select {
	case <-m.proc.done:
		return nil
	default:
	}
	m.mu.Lock()
	m.stopping = true
	m.mu.Unlock()
	grace, cancel := context.WithTimeout(ctx, m.cfg.StopGrace)
	defer cancel()
	var soft, hard func(context.Context) error
	switch m.hv {
	case QEMU:
		soft, hard = m.qemuPowerdown, m.qemuQuit
	case CloudHypervisor:
		soft, hard = m.chShutdown, m.chVMMShutdown
	}
	if err := soft(grace); err != nil {
		m.log.Debug("vmm: power-down request", "err", err)
	}
	select {
	case <-m.proc.done:
		return nil
	case <-grace.Done():
	}
	m.log.Debug("vmm: guest did not power off; telling the VMM to quit")
	quitCtx, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	if err := hard(quitCtx); err != nil {
		m.log.Debug("vmm: quit request", "err", err)
	}
	select {
	case <-m.proc.done:
		return nil
	case <-quitCtx.Done():
	}
	m.proc.kill()
	<-m.proc.done
	return nil
}

// Kill implements VM.
func (m *Machine) Kill() error {
	if m.proc == nil {
		return nil
	}
	select {
	case <-m.proc.done:
		return nil
	default:
	}
	m.mu.Lock()
	m.killed = true
	m.stopping = true
	m.mu.Unlock()
	m.proc.kill()
	<-m.proc.done
	return nil
}

// Console implements VM.
func (m *Machine) Console() []byte { return m.console.Bytes() }

// Close implements VM.
func (m *Machine) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.Kill()
	m.bgCancel()
	m.bg.Wait()
	var errs []error
	for i := len(m.cleanups) - 1; i >= 0; i-- {
		if err := m.cleanups[i](); err != nil {
			errs = append(errs, err)
		}
	}
	m.cleanups = nil
	for _, f := range m.extraFiles {
		f.Close()
	}
	m.extraFiles = nil
	if m.ownWorkDir && m.workDir != "" {
		if err := os.RemoveAll(m.workDir); err != nil {
			errs = append(errs, err)
		}
	}
	if m.workLock != nil {
		m.workLock.Close()
	}
	return errors.Join(errs...)
}

// Select picks the hypervisor: the one asked for, if it can run here, or,
// for "", Cloud Hypervisor when KVM works and its binary is on PATH, QEMU
// otherwise.
func Select(want Hypervisor) (Hypervisor, error) {
	switch want {
	case QEMU, CloudHypervisor:
		return want, nil
	case "":
		if KVMUsable() == nil {
			if _, err := exec.LookPath("cloud-hypervisor"); err == nil {
				return CloudHypervisor, nil
			}
		}
		return QEMU, nil
	}
	return "", fmt.Errorf("%w: unknown hypervisor %q (want %s or %s)", ErrConfig, want, QEMU, CloudHypervisor)
}

// ParseHypervisor parses a --hypervisor flag ("" and "auto" mean Select's
// choice).
func ParseHypervisor(s string) (Hypervisor, error) {
	switch s {
	case "", "auto":
		return "", nil
	case "qemu":
		return QEMU, nil
	case "cloud-hypervisor", "ch":
		return CloudHypervisor, nil
	}
	return "", fmt.Errorf("%w: unknown hypervisor %q (want qemu, cloud-hypervisor or auto)", ErrConfig, s)
}

// Common steps.

// stepValidate checks the configuration before anything starts.
func stepValidate(ctx context.Context, m *Machine) error {
	c := &m.cfg
	for what, p := range map[string]string{"kernel": c.Kernel, "initramfs": c.Initramfs} {
		if p == "" {
			return fmt.Errorf("%w: no %s", ErrConfig, what)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrConfig, what, err)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%w: %s %s is not a regular file", ErrConfig, what, p)
		}
	}
	tags := map[string]bool{}
	for _, fs := range c.FS {
		if fs.Tag == "" || len(fs.Tag) > 36 {
			return fmt.Errorf("%w: virtio-fs tag %q: want 1 to 36 bytes", ErrConfig, fs.Tag)
		}
		if tags[fs.Tag] {
			return fmt.Errorf("%w: two virtio-fs devices tagged %q", ErrConfig, fs.Tag)
		}
		tags[fs.Tag] = true
		if fs.NewFS == nil && fs.Socket == "" {
			return fmt.Errorf("%w: virtio-fs %q has neither a filesystem nor a backend socket", ErrConfig, fs.Tag)
		}
	}
	if c.Binary == "" {
		name := "qemu-system-x86_64"
		if m.hv == CloudHypervisor {
			name = "cloud-hypervisor"
		}
		p, err := exec.LookPath(name)
		if err != nil {
			return fmt.Errorf("%w: %s not found on PATH", ErrConfig, name)
		}
		c.Binary = p
	}
	return nil
}

// A working directory castor makes is named workDirPrefix… and holds a
// lock file, locked while the VM lives, so that a later castor can tell
// the directories a killed castor left behind (their VMMs died with it,
// by the parent-death signal; their sockets stay).
const (
	workDirPrefix = "castor-vm-"
	workDirLock   = ".lock"
)

// RemoveStaleWorkDirs removes the working directories in dir (castor's
// own, castor-vm-*) whose lock nobody holds. Create does it for
// os.TempDir() before making a new one.
func RemoveStaleWorkDirs(dir string, log *slog.Logger) {
	matches, _ := filepath.Glob(filepath.Join(dir, workDirPrefix+"*"))
	for _, d := range matches {
		f, err := os.Open(filepath.Join(d, workDirLock))
		if err != nil {
			continue // being set up right now, or not ours
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			if err := os.RemoveAll(d); err == nil && log != nil {
				log.Info("vmm: removed a VM directory left by an earlier castor", "dir", d)
			}
		}
		f.Close()
	}
}

// makeWorkDir makes a working directory in parent, holding its lock file
// locked. The lock file appears under its name only once locked: another
// castor sweeping stale directories between its creation and the flock
// would otherwise find it unlocked and remove the directory of a VM being
// made (seen as "bind: no such file or directory" for its sockets when
// builds started side by side).
func makeWorkDir(parent string) (string, *os.File, error) {
	d, err := os.MkdirTemp(parent, workDirPrefix)
	if err != nil {
		return "", nil, err
	}
	tmp := filepath.Join(d, workDirLock+".new")
	lock, err := os.OpenFile(tmp, os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)
		if err == nil {
			err = os.Rename(tmp, filepath.Join(d, workDirLock))
		}
		if err != nil {
			lock.Close()
		}
	}
	if err != nil {
		os.RemoveAll(d)
		return "", nil, err
	}
	return d, lock, nil
}

// stepWorkDir makes the private directory for sockets and fills in
// socket paths.
func stepWorkDir(ctx context.Context, m *Machine) error {
	if m.cfg.WorkDir == "" {
		RemoveStaleWorkDirs(os.TempDir(), m.log)
		d, lock, err := makeWorkDir(os.TempDir())
		if err != nil {
			return err
		}
		m.workDir, m.ownWorkDir = d, true
		m.workLock = lock // unlocked by Close once the directory is gone
	} else {
		if err := os.MkdirAll(m.cfg.WorkDir, 0o700); err != nil {
			return err
		}
		m.workDir = m.cfg.WorkDir
	}
	if v := m.cfg.Vsock; v != nil {
		vv := *v
		if vv.CID == 0 {
			vv.CID = 3
		}
		if vv.Socket == "" {
			vv.Socket = filepath.Join(m.workDir, "vsock.sock")
		}
		m.cfg.Vsock = &vv
		// Remove the hybrid socket whatever it was, so neither the VMM
		// nor castor's backend trips on a stale one.
		if err := removeStaleSocket(vv.Socket); err != nil {
			return err
		}
		m.OnClose(func() error { return removeStaleSocket(vv.Socket) })
	}
	return nil
}

// removeStaleSocket removes path if it is a socket (or absent); anything
// else there is an error, not something to delete.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%w: %s exists and is not a socket", ErrConfig, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// panicLine finds the kernel's "Kernel panic - not syncing: …" line.
func panicLine(console []byte) string {
	s := string(console)
	i := strings.LastIndex(s, "Kernel panic - not syncing")
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(s[i:], "\n")
	return strings.TrimSpace(strings.TrimRight(line, "\r ]-"))
}
