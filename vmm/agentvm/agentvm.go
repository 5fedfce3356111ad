package agentvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/castor-nix/castor/images"
	"github.com/castor-nix/castor/images/agent"
	"github.com/castor-nix/castor/vmm"
	"github.com/castor-nix/castor/vmm/vsock"
)

// Options configure a VM.
type Options struct {
	// Image is what to boot; nil builds the agent image
	// (images.AgentImage) with Kernel and CacheDir.
	Image *images.Image
	// Kernel overrides Debian's cloud kernel when Image is nil.
	Kernel string
	// CacheDir caches images (images.DefaultCacheDir() when empty).
	CacheDir string
	// Hypervisor, CPUs, MemoryMiB, Net, KernelArgs, Accel and WorkDir are
	// passed to vmm.Config.
	Hypervisor vmm.Hypervisor
	CPUs       int
	MemoryMiB  int
	Net        bool
	KernelArgs string
	Accel      string
	WorkDir    string
	// FS are the VM's virtio-fs devices.
	FS []vmm.FS
	// Console receives the serial console (the kernel's log) as it comes.
	Console io.Writer
	// Logger (slog.Default() when nil).
	Logger *slog.Logger
}

// Timings of a boot, from the call to Boot.
type Timings struct {
	Image      time.Duration // image built or found
	Created    time.Duration // VMM up, guest not yet running
	Started    time.Duration // guest running
	AgentReady time.Duration // the agent said hello
	// GuestUptime is the guest's uptime at the agent's hello: kernel
	// boot plus the agent's module loading.
	GuestUptime time.Duration
}

// VM is a booted micro-VM whose agent is connected.
type VM struct {
	// Machine is the VM's machine (for Console, PID, Wait).
	Machine *vmm.Machine
	// Agent is the control connection.
	Agent   *agent.Conn
	Timings Timings

	log *slog.Logger
}

// Boot boots a VM and waits for its agent. On error nothing is left
// running and the error says why the guest did not come up (the VM's
// exit, with the kernel's panic line when there is one).
func Boot(ctx context.Context, o Options) (*VM, error) {
	t0 := time.Now()
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	img := o.Image
	if img == nil {
		cache := o.CacheDir
		if cache == "" {
			cache = images.DefaultCacheDir()
		}
		var err error
		if img, err = images.AgentImage(ctx, cache, o.Kernel); err != nil {
			return nil, err
		}
	}
	v := &VM{log: log}
	v.Timings.Image = time.Since(t0)
	hv, err := vmm.Select(o.Hypervisor)
	if err != nil {
		return nil, err
	}
	kargs := agent.SkipModulesParam + "=" + strings.Join(skipModules(hv, o.Net), ",")
	if o.KernelArgs != "" {
		kargs += " " + o.KernelArgs
	}
	m, err := vmm.New(vmm.Config{
		Hypervisor: hv,
		Kernel:     img.Kernel,
		Initramfs:  img.Initramfs,
		KernelArgs: kargs,
		CPUs:       o.CPUs,
		MemoryMiB:  o.MemoryMiB,
		FS:         o.FS,
		Vsock:      &vmm.Vsock{},
		Net:        o.Net,
		Accel:      o.Accel,
		Console:    o.Console,
		WorkDir:    o.WorkDir,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	v.Machine = m
	if err := m.Create(ctx); err != nil {
		return nil, err
	}
	v.Timings.Created = time.Since(t0)
	ctlPath := fmt.Sprintf("%s_%d", m.VsockSocket(), agent.ControlPort)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: ctlPath, Net: "unix"})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("agentvm: listening for the agent: %w", err)
	}
	m.OnClose(func() error {
		l.Close()
		os.Remove(ctlPath)
		return nil
	})
	if err := m.Start(ctx); err != nil {
		m.Close()
		return nil, err
	}
	v.Timings.Started = time.Since(t0)

	// Wait for the agent, the VM's end, or ctx.
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.Exited():
			cancel()
		case <-actx.Done():
		}
	}()
	conn, err := agent.Accept(actx, l, log)
	l.Close() // one agent per VM: nothing else in the guest reaches the host
	if err != nil {
		werr := v.vmErr()
		m.Close()
		if werr != nil {
			return nil, fmt.Errorf("agentvm: the VM ended before its agent connected: %w%s", werr, consoleTail(m))
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("agentvm: waiting for the agent: %w", ctx.Err())
		}
		return nil, fmt.Errorf("agentvm: %w%s", err, consoleTail(m))
	}
	v.Agent = conn
	v.Timings.AgentReady = time.Since(t0)
	v.Timings.GuestUptime = time.Duration(conn.Hello.Uptime)
	log.Debug("agentvm: agent ready", "kernel", conn.Hello.Kernel, "guest_uptime", v.Timings.GuestUptime, "guest_init_start", time.Duration(conn.Hello.InitStart),
		"created", v.Timings.Created, "started", v.Timings.Started, "ready", v.Timings.AgentReady)
	return v, nil
}

// skipModules lists the image's modules the guest does not need: QEMU's
// microvm has virtio over MMIO only, Cloud Hypervisor over PCI only; the
// console is the serial port, not virtio-console; virtio-net only matters
// with a network.
func skipModules(hv vmm.Hypervisor, net bool) []string {
	skip := []string{"virtio_console"}
	switch hv {
	case vmm.QEMU:
		skip = append(skip, "virtio_pci", "virtio_pci_legacy_dev", "virtio_pci_modern_dev")
	case vmm.CloudHypervisor:
		skip = append(skip, "virtio_mmio")
	}
	if !net {
		skip = append(skip, "virtio_net", "net_failover", "failover")
	}
	return skip
}

// consoleTail formats the end of the console for an error message.
func consoleTail(m *vmm.Machine) string {
	c := string(m.Console())
	if c == "" {
		return ""
	}
	return "\nlast console lines:\n" + lastLines(c, 15)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(strings.ReplaceAll(s, "\r", ""), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// vmErr returns the VM's end if the VMM has exited, nil otherwise.
func (v *VM) vmErr() error {
	select {
	case <-v.Machine.Exited():
		if err := v.Machine.Wait(context.Background()); err != nil {
			return err
		}
		return errors.New("the guest powered off")
	default:
		return nil
	}
}

// explain replaces err by the VM's own end when the VM died: a broken
// agent connection says less than a kernel panic. It waits a little for
// the VMM to exit, since the connection usually breaks first.
func (v *VM) explain(err error) error {
	var ge *agent.GuestError
	if err == nil || errors.As(err, &ge) {
		return err
	}
	select {
	case <-v.Machine.Exited():
	case <-time.After(10 * time.Second):
		return err
	}
	if werr := v.vmErr(); werr != nil {
		return werr
	}
	return err
}

// ConsoleTail returns the last n lines of the VM's serial console (the
// kernel's log: a panic's trace when the VM died).
func (v *VM) ConsoleTail(n int) string {
	return lastLines(string(v.Machine.Console()), n)
}

// Setup prepares the guest (see agent.Setup).
func (v *VM) Setup(ctx context.Context, s *agent.Setup) error {
	err := v.Agent.Setup(ctx, s)
	if err != nil && ctx.Err() == nil {
		return v.explain(err)
	}
	return err
}

// Run runs a command in the guest (see agent.Conn.Run). If the guest dies
// meanwhile, the error is the VM's.
func (v *VM) Run(ctx context.Context, r *agent.Run, stdout, stderr io.Writer) (agent.Exit, error) {
	ex, err := v.Agent.Run(ctx, r, stdout, stderr)
	if err != nil && ctx.Err() == nil {
		return ex, v.explain(err)
	}
	return ex, err
}

// SendDir copies the guest's tree at path to w as a NAR, over a new
// host-to-guest vsock connection to the agent's data port. It may run
// concurrently with itself.
func (v *VM) SendDir(ctx context.Context, path string, w io.Writer) error {
	conn, err := vsock.Dial(ctx, v.Machine.VsockSocket(), agent.DataPort)
	if err != nil {
		return v.explain(fmt.Errorf("agentvm: connecting to the agent's data port: %w", err))
	}
	if err := agent.SendDir(ctx, conn, path, w); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return v.explain(err)
	}
	return nil
}

// Shutdown asks the agent to power off and waits for the VMM to exit,
// forcing it (vmm.VM.Stop) if the guest does not go when ctx ends. It
// returns the VM's end (nil for a clean power-off).
func (v *VM) Shutdown(ctx context.Context) error {
	if err := v.Agent.PowerOff(ctx); err != nil {
		v.log.Debug("agentvm: power-off request", "err", err)
	}
	err := v.Machine.Wait(ctx)
	if ctx.Err() != nil {
		v.Machine.Stop(context.Background())
		return fmt.Errorf("agentvm: the guest did not power off: %w", ctx.Err())
	}
	return err
}

// Close kills the VM if it still runs and releases everything.
func (v *VM) Close() error {
	if v.Agent != nil {
		v.Agent.Close()
	}
	return v.Machine.Close()
}
