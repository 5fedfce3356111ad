package vmm

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/castor-nix/castor/vmm/qmp"
	"github.com/castor-nix/castor/vmm/vhostuser"
	"github.com/castor-nix/castor/vmm/virtiofs"
	"github.com/castor-nix/castor/vmm/vsock"
)

// Names of QEMU's steps.
const (
	StepValidate     = "vmm.validate"
	StepWorkDir      = "vmm.workdir"
	StepQEMUArgs     = "qemu.args"
	StepQEMUVirtiofs = "qemu.virtiofs"
	StepQEMUVsock    = "qemu.vsock"
	StepQEMUNet      = "qemu.net"
	StepQEMUQMP      = "qemu.qmp-fd"
	StepQEMUSpawn    = "qemu.spawn"
	StepQEMUConnect  = "qemu.qmp-connect"
	StepQEMUCont     = "qemu.cont"
)

type qemuState struct {
	qmpFile *os.File // castor's end of the QMP socket pair
	qmp     *qmp.Client
	events  chan struct{} // closed when the event reader has seen the end
}

// qemuHandlers are QEMU's steps: check the configuration, make the
// working directory, build the command line (machine, kernel, devices),
// start castor's device backends on socket pairs, start QEMU paused
// (-S), connect QMP; Start sends "cont".
func qemuHandlers() Handlers {
	return Handlers{
		Create: NewHandlerList(
			Handler{StepValidate, stepValidate},
			Handler{StepWorkDir, stepWorkDir},
			Handler{StepQEMUArgs, qemuArgs},
			Handler{StepQEMUVirtiofs, qemuVirtiofs},
			Handler{StepQEMUVsock, qemuVsock},
			Handler{StepQEMUNet, qemuNet},
			Handler{StepQEMUQMP, qemuQMPFile},
			Handler{StepQEMUSpawn, func(ctx context.Context, m *Machine) error { return m.spawn() }},
			Handler{StepQEMUConnect, qemuConnect},
		),
		Start: NewHandlerList(
			Handler{StepQEMUCont, qemuCont},
		),
	}
}

// qemuArgs is the machine: microvm (virtio-mmio devices, no firmware, the
// kernel booted directly through its PVH entry), memory shared with the
// vhost-user backends through a memfd, no default devices, the serial
// console on standard output, and -no-reboot so that a reset (a kernel
// panic with panic=-1) ends QEMU instead of booting again.
func qemuArgs(ctx context.Context, m *Machine) error {
	c := &m.cfg
	if c.Accel == "" {
		c.Accel = "tcg"
		if KVMUsable() == nil {
			c.Accel = "kvm"
		}
	}
	var cpu string
	cmdline := DefaultKernelArgs
	switch c.Accel {
	case "kvm":
		cpu = "host"
	case "tcg":
		cpu = TCGCPU
		cmdline += " " + TCGKernelArgs
	default:
		return fmt.Errorf("%w: QEMU accelerator %q (want kvm or tcg)", ErrConfig, c.Accel)
	}
	if c.KernelArgs != "" {
		cmdline += " " + c.KernelArgs
	}
	m.AddArgs(
		"-machine", "microvm,memory-backend=mem,rtc=on",
		"-accel", c.Accel,
		"-cpu", cpu,
		"-smp", fmt.Sprint(c.CPUs),
		"-m", fmt.Sprintf("%dM", c.MemoryMiB),
		"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", c.MemoryMiB),
		"-global", "virtio-mmio.force-legacy=false",
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-serial", "stdio",
		"-kernel", c.Kernel,
		"-initrd", c.Initramfs,
		"-append", cmdline,
		"-S",
	)
	return nil
}

// qemuVirtiofs adds the virtio-fs devices. Castor's own are served on one
// end of a socket pair whose other end QEMU gets as its chardev, so there
// is no socket file at all; an external backend is reached by its path.
func qemuVirtiofs(ctx context.Context, m *Machine) error {
	for i, fs := range m.cfg.FS {
		id := fmt.Sprintf("fs%d", i)
		var chardev string
		if fs.NewFS == nil {
			chardev = "socket,id=" + id + ",path=" + fs.Socket
		} else {
			ours, theirs, err := socketPair()
			if err != nil {
				return err
			}
			conn, err := net.FileConn(ours)
			ours.Close()
			if err != nil {
				theirs.Close()
				return err
			}
			fd := m.AddFile(theirs)
			chardev = fmt.Sprintf("socket,id=%s,fd=%d", id, fd)
			newFS, opts := fs.NewFS, withLogger(fs.Options, m.log)
			srv := &vhostuser.Server{Logger: m.log, NewDevice: func(ctx context.Context) (vhostuser.Device, error) {
				f, err := newFS(ctx)
				if err != nil {
					return nil, fmt.Errorf("virtiofs %s: new filesystem: %w", fs.Tag, err)
				}
				return virtiofs.NewDevice(f, opts), nil
			}}
			m.Go(func(ctx context.Context) {
				if err := srv.ServeConn(ctx, conn.(*net.UnixConn)); err != nil {
					m.log.Warn("vmm: virtiofs backend", "tag", fs.Tag, "err", err)
					m.noteBackendErr(fmt.Errorf("virtiofs %s: %w", fs.Tag, err))
				}
			})
		}
		m.AddArgs("-chardev", chardev,
			"-device", fmt.Sprintf("vhost-user-fs-device,chardev=%s,tag=%s,queue-size=1024", id, fs.Tag))
	}
	return nil
}

// withLogger returns a copy of o whose Logger is log unless o has one.
func withLogger(o *virtiofs.Options, log *slog.Logger) *virtiofs.Options {
	r := virtiofs.Options{}
	if o != nil {
		r = *o
	}
	if r.Logger == nil {
		r.Logger = log
	}
	return &r
}

// qemuVsock gives the guest castor's vhost-user-vsock backend (QEMU has no
// host vsock here), with the hybrid unix socket Cloud Hypervisor would
// have at Config.Vsock.Socket.
func qemuVsock(ctx context.Context, m *Machine) error {
	v := m.cfg.Vsock
	if v == nil {
		return nil
	}
	b, err := vsock.New(vsock.Config{GuestCID: uint64(v.CID), Socket: v.Socket, Logger: m.log})
	if err != nil {
		return err
	}
	m.OnClose(b.Close)
	ours, theirs, err := socketPair()
	if err != nil {
		return err
	}
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return err
	}
	fd := m.AddFile(theirs)
	srv := &vhostuser.Server{Logger: m.log, NewDevice: b.NewDevice}
	m.Go(func(ctx context.Context) {
		if err := srv.ServeConn(ctx, conn.(*net.UnixConn)); err != nil {
			m.log.Warn("vmm: vsock backend", "err", err)
			m.noteBackendErr(fmt.Errorf("vsock: %w", err))
		}
	})
	m.AddArgs("-chardev", fmt.Sprintf("socket,id=vsock,fd=%d", fd),
		"-device", "vhost-user-vsock-device,chardev=vsock")
	return nil
}

// qemuNet adds user-mode networking when asked for.
func qemuNet(ctx context.Context, m *Machine) error {
	if !m.cfg.Net {
		return nil
	}
	m.AddArgs("-netdev", "user,id=net0", "-device", "virtio-net-device,netdev=net0")
	return nil
}

// qemuQMPFile hands QEMU one end of a socket pair as its QMP monitor.
func qemuQMPFile(ctx context.Context, m *Machine) error {
	ours, theirs, err := socketPair()
	if err != nil {
		return err
	}
	m.qemu = &qemuState{qmpFile: ours, events: make(chan struct{})}
	m.OnClose(func() error {
		if m.qemu.qmp != nil {
			m.qemu.qmp.Close()
		} else {
			m.qemu.qmpFile.Close()
		}
		return nil
	})
	fd := m.AddFile(theirs)
	m.AddArgs("-chardev", fmt.Sprintf("socket,id=qmp,fd=%d", fd), "-mon", "chardev=qmp,mode=control")
	return nil
}

// qemuConnect negotiates QMP and follows QEMU's events: the last
// SHUTDOWN's reason says how the VM ended.
func qemuConnect(ctx context.Context, m *Machine) error {
	conn, err := net.FileConn(m.qemu.qmpFile)
	m.qemu.qmpFile.Close()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-m.proc.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	c, err := qmp.New(ctx, conn)
	if err != nil {
		if werr := m.exitedErr(); werr != nil {
			return fmt.Errorf("QEMU exited at start-up: %w", werr)
		}
		return err
	}
	m.qemu.qmp = c
	go func() {
		defer close(m.qemu.events)
		for ev := range c.Events {
			m.log.Debug("vmm: QMP event", "event", ev.Name, "data", string(ev.Data))
			if ev.Name == "SHUTDOWN" {
				var d qmp.ShutdownData
				if json.Unmarshal(ev.Data, &d) == nil {
					m.setExitReason(d.Reason)
				}
			}
		}
	}()
	st, err := c.QueryStatus(ctx)
	if err != nil {
		return err
	}
	if st.Running {
		return fmt.Errorf("QEMU runs the guest before being told to (status %s)", st.Status)
	}
	return nil
}

func qemuCont(ctx context.Context, m *Machine) error {
	return m.qemu.qmp.Execute(ctx, "cont", nil, nil)
}

func (m *Machine) qemuPowerdown(ctx context.Context) error {
	if m.qemu == nil || m.qemu.qmp == nil {
		return ErrState
	}
	return m.qemu.qmp.Execute(ctx, "system_powerdown", nil, nil)
}

func (m *Machine) qemuQuit(ctx context.Context) error {
	if m.qemu == nil || m.qemu.qmp == nil {
		return ErrState
	}
	err := m.qemu.qmp.Execute(ctx, "quit", nil, nil)
	if err != nil && strings.Contains(err.Error(), qmp.ErrClosed.Error()) {
		return nil
	}
	return err
}
