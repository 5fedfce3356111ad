package sandbox

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// init turns a process started with helperEnv set into the helper, before
// anything else of the program runs: the executor starts its own binary
// (/proc/self/exe) that way, so the castor binary and test binaries alike
// carry the helper without a hook in main.
func init() {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	os.Exit(helperMain())
}

// helperMain runs as PID 1 of the build's PID namespace, in its own mount,
// IPC, UTS and (unless the build may use the network) network namespaces,
// as root of the host: it mounts the castor filesystem, sends its
// descriptor to the executor (which serves it), lays out the build's root
// with bind mounts, pivots into it, starts the builder in a new user
// namespace as UID/GID, reaps every process until the builder exits, and
// reports its status. When it exits, the kernel kills whatever is left in
// the PID namespace and the mount namespace with all its mounts goes away.
func helperMain() int {
	ctl := os.NewFile(fdControl, "control")
	send := func(m helperMsg, fd int) {
		b, _ := json.Marshal(m)
		var oob []byte
		if fd >= 0 {
			oob = unix.UnixRights(fd)
		}
		unix.Sendmsg(fdControl, b, oob, nil, 0)
	}
	var cfg helperConfig
	data, err := io.ReadAll(os.NewFile(fdConfig, "config"))
	if err == nil {
		err = json.Unmarshal(data, &cfg)
	}
	if err != nil {
		send(helperMsg{Done: true, Setup: "reading the sandbox configuration: " + err.Error()}, -1)
		return 1
	}
	builder, err := setup(&cfg, func(fd int) { send(helperMsg{FUSE: true}, fd) })
	if err != nil {
		send(helperMsg{Done: true, Setup: err.Error()}, -1)
		return 1
	}
	msg := waitBuilder(builder)
	send(msg, -1)
	ctl.Close()
	return 0
}

// setup does everything up to starting the builder and returns its pid,
// or -1 when the program could not be executed (reported in the log, as
// Nix does).
func setup(cfg *helperConfig, sendFUSE func(fd int)) (int, error) {
	// Nothing mounted here may propagate to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return 0, fmt.Errorf("making / private: %w", err)
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("opening /dev/fuse: %w", err)
	}
	opts := fmt.Sprintf("fd=%d,%s", fd, cfg.FuseOptions)
	if err := unix.Mount("castor", cfg.FuseDir, "fuse.castor", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_RDONLY, opts); err != nil {
		return 0, fmt.Errorf("mounting the castor filesystem: %w", err)
	}
	sendFUSE(fd)
	unix.Close(fd)
	// Wait until the executor serves the mount: the bind mounts below
	// look inputs up, and the connection must be answered before this
	// namespace can go away.
	var ack [16]byte
	if n, err := unix.Read(fdControl, ack[:]); err != nil || n == 0 {
		return 0, fmt.Errorf("waiting for the executor to serve the FUSE mount: %v", err)
	}

	// pivot_root needs the new root to be a mount point.
	if err := unix.Mount(cfg.Root, cfg.Root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return 0, fmt.Errorf("binding the root: %w", err)
	}
	for _, m := range cfg.Mounts {
		if err := doMount(cfg, m); err != nil && !m.Optional {
			return 0, err
		}
	}
	if cfg.LoopbackOnly {
		if err := loopbackUp(); err != nil {
			return 0, err
		}
	}
	if err := unix.Sethostname([]byte("localhost")); err != nil {
		return 0, fmt.Errorf("setting the host name: %w", err)
	}
	if err := unix.Setdomainname([]byte("(none)")); err != nil {
		return 0, fmt.Errorf("setting the domain name: %w", err)
	}
	if err := pivot(cfg.Root); err != nil {
		return 0, err
	}
	// No core dumps, as in Nix.
	unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: unix.RLIM_INFINITY})

	uids := []syscall.SysProcIDMap{{ContainerID: cfg.UID, HostID: cfg.HostUID, Size: 1}}
	gids := []syscall.SysProcIDMap{{ContainerID: cfg.GID, HostID: cfg.HostGID, Size: 1}}
	if cfg.HostUID != 0 {
		// Show root-owned files (the inputs) as owned by root.
		uids = append([]syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}, uids...)
	}
	if cfg.HostGID != 0 {
		gids = append([]syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}, gids...)
	}
	cmd := &exec.Cmd{
		Path:   cfg.Command[0],
		Args:   append([]string{cfg.Argv0}, cfg.Command[1:]...),
		Env:    cfg.Env,
		Dir:    cfg.Dir,
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:                 syscall.CLONE_NEWUSER,
			UidMappings:                uids,
			GidMappings:                gids,
			GidMappingsEnableSetgroups: false,
			// Become UID/GID inside the new namespace before exec, so the
			// builder keeps no capabilities there.
			Credential: &syscall.Credential{Uid: uint32(cfg.UID), Gid: uint32(cfg.GID), NoSetGroups: true},
		},
	}
	if err := cmd.Start(); err != nil {
		// Nix writes this to the build log and fails the build.
		fmt.Fprintf(os.Stderr, "executing '%s': %v\n", cfg.Command[0], unwrapExec(err))
		return -1, nil
	}
	return cmd.Process.Pid, nil
}

func unwrapExec(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func doMount(cfg *helperConfig, m mountSpec) error {
	target := filepath.Join(cfg.Root, m.Target)
	var err error
	switch m.Kind {
	case mountBind:
		err = unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, "")
		if err == nil && m.ReadOnly {
			err = unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
		}
	case mountTmpfs:
		err = unix.Mount("none", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777")
	case mountDevpts:
		err = unix.Mount("none", target, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
	case mountProc:
		err = unix.Mount("none", target, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	default:
		err = fmt.Errorf("unknown mount kind %q", m.Kind)
	}
	if err != nil {
		return fmt.Errorf("mounting %s %s on /%s: %w", m.Kind, m.Source, m.Target, err)
	}
	return nil
}

// loopbackUp brings up lo, the only interface of a new network namespace.
func loopbackUp() error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(s)
	var req [unix.IFNAMSIZ + 24]byte
	copy(req[:], "lo")
	*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_UP | unix.IFF_LOOPBACK | unix.IFF_RUNNING
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s), unix.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&req[0]))); errno != 0 {
		return fmt.Errorf("bringing up lo: %w", errno)
	}
	return nil
}

// pivot makes root the root of the mount namespace and of the process,
// and detaches the old root, so that nothing of the host stays reachable.
func pivot(root string) error {
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("pivot: %w", err)
	}
	const old = ".castor-old-root"
	if err := unix.Mkdir(old, 0o700); err != nil {
		return fmt.Errorf("pivot: %w", err)
	}
	if err := unix.PivotRoot(".", old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Unmount(old, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the old root: %w", err)
	}
	if err := unix.Rmdir(old); err != nil {
		return fmt.Errorf("removing the old root's mountpoint: %w", err)
	}
	return unix.Chdir("/")
}

// waitBuilder reaps children (as PID 1 must) until the builder exits.
func waitBuilder(pid int) helperMsg {
	if pid < 0 {
		return helperMsg{Done: true, Exit: 1}
	}
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return helperMsg{Done: true, Setup: "waiting for the builder: " + err.Error()}
		}
		if got != pid {
			continue
		}
		if ws.Signaled() {
			return helperMsg{Done: true, Exit: -1, Signal: unix.SignalName(ws.Signal())}
		}
		return helperMsg{Done: true, Exit: ws.ExitStatus()}
	}
}
