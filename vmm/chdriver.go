package vmm

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
	"time"

	ch "github.com/castor-nix/castor/vmm/cloudhypervisor"
	"github.com/castor-nix/castor/vmm/vhostuser"
	"github.com/castor-nix/castor/vmm/virtiofs"
)

// Names of Cloud Hypervisor's steps.
const (
	StepCHCheck    = "ch.check"
	StepCHVirtiofs = "ch.virtiofs"
	StepCHAPI      = "ch.api-socket"
	StepCHEvents   = "ch.event-monitor"
	StepCHSpawn    = "ch.spawn"
	StepCHPing     = "ch.ping"
	StepCHCreate   = "ch.create"
	StepCHBoot     = "ch.boot"
	StepCHInfo     = "ch.info"
)

type chState struct {
	apiPath string
	client  *ch.ClientWithResponses
	vmCfg   ch.VmConfig
	fsPaths []string
	events  chan struct{} // closed when the event monitor's pipe ends
	version string
}

// chHandlers are Cloud Hypervisor's steps: check the configuration,
// make the working directory, serve castor's virtio-fs devices on sockets
// there, hand Cloud Hypervisor a listening API socket and an event pipe,
// start it, ping its API and create the VM (vm.create); Start boots it
// (vm.boot) and checks it runs (vm.info).
func chHandlers() Handlers {
	return Handlers{
		Create: NewHandlerList(
			Handler{StepValidate, stepValidate},
			Handler{StepCHCheck, chCheck},
			Handler{StepWorkDir, stepWorkDir},
			Handler{StepCHVirtiofs, chVirtiofs},
			Handler{StepCHAPI, chAPISocket},
			Handler{StepCHEvents, chEventMonitor},
			Handler{StepCHSpawn, func(ctx context.Context, m *Machine) error { return m.spawn() }},
			Handler{StepCHPing, chPing},
			Handler{StepCHCreate, chCreate},
		),
		Start: NewHandlerList(
			Handler{StepCHBoot, chBoot},
			Handler{StepCHInfo, chInfo},
		),
	}
}

// chCheck refuses what Cloud Hypervisor cannot do.
func chCheck(ctx context.Context, m *Machine) error {
	if m.cfg.Net {
		return fmt.Errorf("%w: Cloud Hypervisor has no user-mode networking (it needs a tap device); use QEMU for VMs with network", ErrConfig)
	}
	if m.cfg.Accel != "" && m.cfg.Accel != "kvm" {
		return fmt.Errorf("%w: Cloud Hypervisor runs on KVM only, not %q", ErrConfig, m.cfg.Accel)
	}
	m.ch = &chState{}
	return nil
}

// chVirtiofs serves castor's virtio-fs devices on sockets in the working
// directory (Cloud Hypervisor connects by path).
func chVirtiofs(ctx context.Context, m *Machine) error {
	for i, fs := range m.cfg.FS {
		if fs.NewFS == nil {
			m.ch.fsPaths = append(m.ch.fsPaths, fs.Socket)
			continue
		}
		p := filepath.Join(m.workDir, fmt.Sprintf("fs%d.sock", i))
		l, err := vhostuser.Listen(p)
		if err != nil {
			return err
		}
		m.ch.fsPaths = append(m.ch.fsPaths, p)
		newFS, opts, tag := fs.NewFS, withLogger(fs.Options, m.log), fs.Tag
		m.OnClose(func() error { l.Close(); return removeStaleSocket(p) })
		m.Go(func(ctx context.Context) {
			if err := virtiofs.Serve(ctx, l, newFS, opts, true); err != nil {
				m.log.Warn("vmm: virtiofs backend", "tag", tag, "err", err)
				m.noteBackendErr(fmt.Errorf("virtiofs %s: %w", tag, err))
			}
		})
	}
	return nil
}

// chAPISocket listens on WorkDir/api.sock and hands the listener to Cloud
// Hypervisor (--api-socket fd=N), so the API is reachable the moment the
// process starts: no waiting for a socket file to appear.
func chAPISocket(ctx context.Context, m *Machine) error {
	p := filepath.Join(m.workDir, "api.sock")
	if err := removeStaleSocket(p); err != nil {
		return err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		return err
	}
	l.SetUnlinkOnClose(false)
	f, err := l.File()
	l.Close()
	if err != nil {
		return err
	}
	m.OnClose(func() error { return removeStaleSocket(p) })
	m.ch.apiPath = p
	c, err := ch.NewUnixClient(p)
	if err != nil {
		f.Close()
		return err
	}
	m.ch.client = c
	m.AddArgs("--api-socket", fmt.Sprintf("fd=%d", m.AddFile(f)))
	return nil
}

// chEvent is one event of Cloud Hypervisor's event monitor.
type chEvent struct {
	Source string `json:"source"`
	Event  string `json:"event"`
}

// chEventMonitor reads Cloud Hypervisor's events from a pipe. A guest
// reset (a reboot, or a kernel panic with panic=-1) would make Cloud
// Hypervisor boot the guest again; castor's VMs run one job, so a
// "rebooting" event ends the VM instead.
func chEventMonitor(ctx context.Context, m *Machine) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	m.AddArgs("--event-monitor", fmt.Sprintf("fd=%d", m.AddFile(w)))
	m.ch.events = make(chan struct{})
	go func() {
		defer close(m.ch.events)
		defer r.Close()
		dec := json.NewDecoder(r)
		for {
			var ev chEvent
			if err := dec.Decode(&ev); err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
					m.log.Debug("vmm: cloud-hypervisor event monitor", "err", err)
				}
				return
			}
			m.log.Debug("vmm: cloud-hypervisor event", "source", ev.Source, "event", ev.Event)
			if ev.Source == "vm" && (ev.Event == "rebooting" || ev.Event == "reset") {
				m.setExitReason("guest-reset")
				m.killOnEvent()
			}
		}
	}()
	return nil
}

// chCall runs an API call, giving up when the VMM exits.
func chCall(ctx context.Context, m *Machine, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.proc.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := f(ctx)
	if err != nil {
		if werr := m.exitedErr(); werr != nil {
			return fmt.Errorf("%w (%w)", err, werr)
		}
	}
	return err
}

func chPing(ctx context.Context, m *Machine) error {
	return chCall(ctx, m, func(ctx context.Context) error {
		resp, err := m.ch.client.GetVmmPingWithResponse(ctx)
		if err := ch.Expect("vmm.ping", resp, err, http.StatusOK); err != nil {
			return err
		}
		if resp.JSON200 != nil {
			m.ch.version = resp.JSON200.Version
		}
		m.log.Debug("vmm: cloud-hypervisor API up", "version", m.ch.version)
		return nil
	})
}

// VmConfig is the configuration castor creates a Cloud Hypervisor VM
// with: the kernel booted directly (PVH), memory shared with the
// vhost-user backends, the serial console on the VMM's standard output
// (ttyS0), no virtio console, an entropy device, castor's virtio-fs
// devices and the hybrid vsock device.
func (m *Machine) chVmConfig() ch.VmConfig {
	c := &m.cfg
	cmdline := DefaultKernelArgs
	if c.KernelArgs != "" {
		cmdline += " " + c.KernelArgs
	}
	shared := true
	vc := ch.VmConfig{
		Cpus:    &ch.CpusConfig{BootVcpus: c.CPUs, MaxVcpus: c.CPUs},
		Memory:  &ch.MemoryConfig{Size: int64(c.MemoryMiB) << 20, Shared: &shared},
		Payload: ch.PayloadConfig{Kernel: &c.Kernel, Initramfs: &c.Initramfs, Cmdline: &cmdline},
		Serial:  &ch.SerialConfig{Mode: ch.ConsoleModeTty},
		Console: &ch.ConsoleConfig{Mode: ch.ConsoleModeOff},
		Rng:     &ch.RngConfig{Src: "/dev/urandom"},
	}
	if len(c.FS) > 0 {
		fss := make([]ch.FsConfig, len(c.FS))
		for i, fs := range c.FS {
			id := fmt.Sprintf("fs%d", i)
			q := 1
			if fs.Options != nil && fs.Options.RequestQueues > 0 {
				q = fs.Options.RequestQueues
			}
			fss[i] = ch.FsConfig{Tag: fs.Tag, Socket: m.ch.fsPaths[i], NumQueues: q, QueueSize: 1024, Id: &id}
		}
		vc.Fs = &fss
	}
	if v := c.Vsock; v != nil {
		vc.Vsock = &ch.VsockConfig{Cid: int64(v.CID), Socket: v.Socket}
	}
	return vc
}

func chCreate(ctx context.Context, m *Machine) error {
	m.ch.vmCfg = m.chVmConfig()
	return chCall(ctx, m, func(ctx context.Context) error {
		resp, err := m.ch.client.CreateVMWithResponse(ctx, m.ch.vmCfg)
		return ch.Expect("vm.create", resp, err, http.StatusNoContent, http.StatusOK)
	})
}

func chBoot(ctx context.Context, m *Machine) error {
	return chCall(ctx, m, func(ctx context.Context) error {
		resp, err := m.ch.client.BootVMWithResponse(ctx)
		return ch.Expect("vm.boot", resp, err, http.StatusNoContent, http.StatusOK)
	})
}

func chInfo(ctx context.Context, m *Machine) error {
	return chCall(ctx, m, func(ctx context.Context) error {
		resp, err := m.ch.client.GetVmInfoWithResponse(ctx)
		if err := ch.Expect("vm.info", resp, err, http.StatusOK); err != nil {
			return err
		}
		info := resp.JSON200
		if info == nil {
			// Decoded only when labelled JSON; take the body as it is.
			info = &ch.VmInfo{}
			if err := json.Unmarshal(resp.Body, info); err != nil {
				return fmt.Errorf("cloud-hypervisor API vm.info: undecodable answer %q: %w", resp.Body, err)
			}
		}
		if st := info.State; st != ch.VmStateRunning && st != ch.VmStateShutdown {
			// Shutdown: a guest that already powered off.
			return fmt.Errorf("cloud-hypervisor: the VM is %s after vm.boot", st)
		}
		return nil
	})
}

// chShutdown stops the guest (vm.shutdown), forgets it (vm.delete) and
// ends the VMM (vmm.shutdown). Cloud Hypervisor's vm.shutdown is not a
// request the guest may refuse, so castor's Stop needs no second stage.
func (m *Machine) chShutdown(ctx context.Context) error {
	if m.ch == nil || m.ch.client == nil {
		return ErrState
	}
	c := m.ch.client
	resp, err := c.ShutdownVMWithResponse(ctx)
	if err := ch.Expect("vm.shutdown", resp, err, http.StatusNoContent, http.StatusOK); err != nil {
		m.log.Debug("vmm: cloud-hypervisor", "err", err)
	}
	dresp, err := c.DeleteVMWithResponse(ctx)
	if err := ch.Expect("vm.delete", dresp, err, http.StatusNoContent, http.StatusOK); err != nil {
		m.log.Debug("vmm: cloud-hypervisor", "err", err)
	}
	return m.chVMMShutdown(ctx)
}

func (m *Machine) chVMMShutdown(ctx context.Context) error {
	if m.ch == nil || m.ch.client == nil {
		return ErrState
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := m.ch.client.ShutdownVMMWithResponse(ctx)
	return ch.Expect("vmm.shutdown", resp, err, http.StatusNoContent, http.StatusOK)
}
