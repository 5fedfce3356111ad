package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"

	"github.com/castor-nix/castor/store/nar"
)

// ModuleList is where the initramfs lists the kernel modules to load, in
// order (images.ModuleList; repeated here so that the agent binary does
// not link the image builder).
const ModuleList = "/etc/castor/modules"

// Main is the agent's entry point as the guest's /init. It never
// returns: whatever happens, it ends by powering the VM off, so the VMM
// exits and the host sees the end.
func Main() {
	g := &guest{initStart: uptime()}
	if err := g.run(); err != nil {
		g.consolef("castor-agent: %v", err)
	}
	g.powerOff()
}

type guest struct {
	initStart time.Duration

	wmu  sync.Mutex // serialises frames on ctl
	ctl  net.Conn
	reap *reaper

	dataOnce sync.Once
}

func uptime() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}

// consolef writes to the serial console (the kernel's log on the host).
func (g *guest) consolef(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// logf sends a diagnostic line to the host (and the console when the
// host is not connected yet).
func (g *guest) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if g.ctl == nil {
		g.consolef("castor-agent: %s", msg)
		return
	}
	g.send(msgLog, []byte(msg))
}

func (g *guest) send(typ byte, payload []byte) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	return writeFrame(g.ctl, typ, payload)
}

func (g *guest) sendJSON(typ byte, v any) error {
	g.wmu.Lock()
	defer g.wmu.Unlock()
	return writeJSON(g.ctl, typ, v)
}

func (g *guest) run() error {
	if err := earlyMounts(); err != nil {
		return err
	}
	t0 := time.Now()
	modTimes, err := loadModules(ModuleList, skippedModules())
	if err != nil {
		return err
	}
	tMods := time.Since(t0)
	g.reap = newReaper()
	go g.reap.loop()

	conn, err := dialHost()
	if err != nil {
		return err
	}
	g.ctl = conn
	defer conn.Close()
	var uts unix.Utsname
	unix.Uname(&uts)
	if err := g.sendJSON(msgHello, Hello{
		Version:   Version,
		Kernel:    unix.ByteSliceToString(uts.Release[:]),
		Uptime:    int64(uptime()),
		InitStart: int64(g.initStart),
	}); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	g.logf("modules loaded in %v:%s", tMods.Round(time.Millisecond), modTimes)

	br := bufio.NewReaderSize(conn, 64<<10)
	var buf []byte
	for {
		typ, payload, err := readFrame(br, buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("the host closed the control connection")
			}
			return fmt.Errorf("control connection: %w", err)
		}
		buf = payload[:0]
		switch typ {
		case msgSetup:
			var s Setup
			if err := decode(typ, payload, &s); err != nil {
				return err
			}
			res := Result{}
			if err := g.setup(&s); err != nil {
				res.Error = err.Error()
			} else {
				g.dataOnce.Do(func() { go g.serveData() })
			}
			if err := g.sendJSON(msgSetupDone, res); err != nil {
				return err
			}
		case msgRun:
			var r Run
			if err := decode(typ, payload, &r); err != nil {
				return err
			}
			ex := g.runCommand(&r)
			if err := g.sendJSON(msgExit, ex); err != nil {
				return err
			}
		case msgPowerOff:
			return nil
		default:
			return fmt.Errorf("%w: unexpected message %q", ErrProtocol, typ)
		}
	}
}

// earlyMounts gives the agent /dev (and a console on fds 0-2 when the
// kernel found no /dev/console to open) and /proc.
func earlyMounts() error {
	os.MkdirAll("/dev", 0o755)
	if err := unix.Mount("devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"); err != nil && err != unix.EBUSY {
		return fmt.Errorf("mount /dev: %w", err)
	}
	if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err != nil {
		if fd, err := unix.Open("/dev/console", unix.O_RDWR, 0); err == nil {
			for i := 0; i < 3; i++ {
				unix.Dup3(fd, i, 0)
			}
			if fd > 2 {
				unix.Close(fd)
			}
		}
	}
	os.MkdirAll("/proc", 0o555)
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil && err != unix.EBUSY {
		return fmt.Errorf("mount /proc: %w", err)
	}
	return nil
}

// SkipModulesParam is the kernel command-line parameter listing modules
// the agent need not load ("castor.skipmod=virtio_pci,virtio_net"): the
// host knows which buses and devices the VM has, and every module loaded
// under TCG costs tens of milliseconds.
const SkipModulesParam = "castor.skipmod"

func skippedModules() map[string]bool {
	b, _ := os.ReadFile("/proc/cmdline")
	skip := map[string]bool{}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, SkipModulesParam+"="); ok {
			for _, m := range strings.Split(v, ",") {
				skip[strings.ReplaceAll(m, "-", "_")] = true
			}
		}
	}
	return skip
}

// loadModules loads the modules listed in path, in order, except those in
// skip; one already loaded (or built in) is fine. It returns how long each
// took, for the host's debug log.
func loadModules(path string, skip map[string]bool) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	var times strings.Builder
	for _, m := range strings.Fields(string(b)) {
		name := strings.TrimSuffix(filepath.Base(m), ".ko")
		if skip[name] {
			continue
		}
		t0 := time.Now()
		fd, err := unix.Open(m, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", fmt.Errorf("module %s: %w", m, err)
		}
		err = unix.FinitModule(fd, "", 0)
		unix.Close(fd)
		if err != nil && err != unix.EEXIST {
			return "", fmt.Errorf("loading module %s: %w", m, err)
		}
		fmt.Fprintf(&times, " %s=%dms", name, time.Since(t0).Milliseconds())
	}
	return times.String(), nil
}

// dialHost connects to the host's control port. The vsock transport is
// up once its module is loaded; a few retries cover a device still
// settling.
func dialHost() (net.Conn, error) {
	var err error
	for i := 0; i < 100; i++ {
		var c *vsock.Conn
		c, err = vsock.Dial(vsock.Host, ControlPort, nil)
		if err == nil {
			return c, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("connecting to the host over vsock (port %d): %w", ControlPort, err)
}

func (g *guest) powerOff() {
	unix.Sync()
	// As PID 1: this powers the machine off (the VMM exits).
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	for {
		time.Sleep(time.Hour)
	}
}

// setup performs the set-up steps in order.
func (g *guest) setup(s *Setup) error {
	host := s.Hostname
	if host == "" {
		host = "localhost"
	}
	if err := unix.Sethostname([]byte(host)); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	if err := ifUp("lo"); err != nil {
		return fmt.Errorf("loopback interface: %w", err)
	}
	if s.Net {
		if err := configureNet(); err != nil {
			return fmt.Errorf("network: %w", err)
		}
	}
	for i, st := range s.Steps {
		var err error
		switch {
		case st.Mkdir != nil:
			err = mkdir(st.Mkdir)
		case st.Mount != nil:
			err = mount(st.Mount)
		case st.File != nil:
			err = writeFile(st.File)
		case st.Symlink != nil:
			err = os.Symlink(st.Symlink.Target, st.Symlink.Path)
		default:
			err = fmt.Errorf("%w: empty step", ErrProtocol)
		}
		if err != nil {
			return fmt.Errorf("set-up step %d: %w", i, err)
		}
	}
	return nil
}

func mkdir(d *Dir) error {
	if err := os.MkdirAll(d.Path, 0o755); err != nil {
		return err
	}
	if err := unix.Chmod(d.Path, d.Mode); err != nil {
		return fmt.Errorf("chmod %s: %w", d.Path, err)
	}
	if err := unix.Lchown(d.Path, d.UID, d.GID); err != nil {
		return fmt.Errorf("chown %s: %w", d.Path, err)
	}
	return nil
}

func writeFile(f *File) error {
	if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(f.Path, f.Data, 0o600); err != nil {
		return err
	}
	if err := unix.Chmod(f.Path, f.Mode); err != nil {
		return fmt.Errorf("chmod %s: %w", f.Path, err)
	}
	if err := unix.Lchown(f.Path, f.UID, f.GID); err != nil {
		return fmt.Errorf("chown %s: %w", f.Path, err)
	}
	return nil
}

func mount(m *Mount) error {
	var flags uintptr
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	source, fstype := m.Source, m.Type
	switch m.Type {
	case "bind":
		st, err := os.Stat(m.Source)
		if err != nil {
			return err
		}
		if st.IsDir() {
			err = os.MkdirAll(m.Target, 0o755)
		} else if _, serr := os.Lstat(m.Target); serr != nil {
			err = writeFile(&File{Path: m.Target, Mode: 0o444})
		}
		if err != nil {
			return err
		}
		if err := unix.Mount(m.Source, m.Target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s on %s: %w", m.Source, m.Target, err)
		}
		if m.ReadOnly {
			if err := unix.Mount("", m.Target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("read-only bind %s: %w", m.Target, err)
			}
		}
		return nil
	case "virtiofs":
		flags |= unix.MS_NODEV
	case "tmpfs", "proc", "sysfs", "devtmpfs", "devpts":
		if source == "" {
			source = m.Type
		}
		flags |= unix.MS_NOSUID
		if m.Type != "devtmpfs" && m.Type != "devpts" {
			flags |= unix.MS_NODEV
		}
	default:
		return fmt.Errorf("mount type %q not supported", m.Type)
	}
	if err := os.MkdirAll(m.Target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(source, m.Target, fstype, flags, m.Data); err != nil {
		return fmt.Errorf("mount %s %s on %s: %w", fstype, source, m.Target, err)
	}
	if m.Type == "virtiofs" {
		raiseReadAhead(m.Target, VirtiofsReadAheadKB)
	}
	return nil
}

// raiseReadAhead sets the read_ahead_kb of the filesystem mounted at
// target, best effort (it only makes reads faster). The setting lives in
// sysfs, which the commands run here do not see: it is mounted for the
// purpose on a directory of its own and unmounted again.
func raiseReadAhead(target string, kb int) {
	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		return
	}
	dir, err := os.MkdirTemp("/", ".sysfs-")
	if err != nil {
		return
	}
	defer os.Remove(dir)
	if err := unix.Mount("sysfs", dir, "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	bdi := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)))
	os.WriteFile(filepath.Join(dir, "class", "bdi", bdi, "read_ahead_kb"), []byte(strconv.Itoa(kb)), 0)
}

// runCommand runs r, streaming its output, and returns how it ended.
// When the program exits, every other process left in the guest is
// killed, so nothing of a command outlives it (as a sandbox's PID
// namespace does).
func (g *guest) runCommand(r *Run) Exit {
	if len(r.Command) == 0 {
		return Exit{Code: 127, Error: "empty command"}
	}
	devnull, err := os.Open("/dev/null")
	if err != nil {
		return Exit{Code: 127, Error: err.Error()}
	}
	defer devnull.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return Exit{Code: 127, Error: err.Error()}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return Exit{Code: 127, Error: err.Error()}
	}
	argv0 := r.Argv0
	if argv0 == "" {
		argv0 = r.Command[0]
	}
	dir := r.Dir
	if dir == "" {
		dir = "/"
	}
	prog := r.Command[0]
	if !strings.Contains(prog, "/") {
		found, err := lookPath(prog, r.Env, r.Chroot)
		if err != nil {
			outR.Close()
			errR.Close()
			outW.Close()
			errW.Close()
			return Exit{Code: 127, Error: err.Error()}
		}
		prog = found
	}
	g.reap.forget()
	p, err := os.StartProcess(prog, append([]string{argv0}, r.Command[1:]...), &os.ProcAttr{
		Dir:   dir,
		Env:   r.Env,
		Files: []*os.File{devnull, outW, errW},
		Sys: &syscall.SysProcAttr{
			Chroot:     r.Chroot,
			Credential: &syscall.Credential{Uid: uint32(r.UID), Gid: uint32(r.GID), Groups: []uint32{}},
			Setsid:     true,
		},
	})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // "no such file or directory", as Nix says it
		}
		return Exit{Code: 127, Error: err.Error()}
	}
	pid := p.Pid
	p.Release()
	var wg sync.WaitGroup
	wg.Add(2)
	go g.pump(&wg, outR, msgStdout)
	go g.pump(&wg, errR, msgStderr)
	ws := <-g.reap.wait(pid)
	// Kill whatever the command left behind; the pipes then reach EOF.
	unix.Kill(-1, unix.SIGKILL)
	wg.Wait()
	switch {
	case ws.Exited():
		return Exit{Code: ws.ExitStatus()}
	case ws.Signaled():
		return Exit{Code: -1, Signal: unix.SignalName(ws.Signal())}
	}
	return Exit{Code: -1, Error: fmt.Sprintf("unexpected wait status %#x", uint32(ws))}
}

// lookPath finds a program named without a slash in the PATH of env, as
// seen from root (chroot), as a shell would.
func lookPath(name string, env []string, root string) (string, error) {
	path := ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(filepath.Join("/", root, p)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found in PATH=%s", name, path)
}

// pump sends what the command writes to the host as it comes.
func (g *guest) pump(wg *sync.WaitGroup, r *os.File, typ byte) {
	defer wg.Done()
	defer r.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if g.send(typ, buf[:n]) != nil {
				io.Copy(io.Discard, r)
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// reaper reaps every child of PID 1 (orphans included) and hands the
// status of the command being run to whoever waits for it.
type reaper struct {
	mu       sync.Mutex
	statuses map[int]unix.WaitStatus
	waiters  map[int]chan unix.WaitStatus
	sig      chan os.Signal
}

func newReaper() *reaper {
	r := &reaper{statuses: map[int]unix.WaitStatus{}, waiters: map[int]chan unix.WaitStatus{}, sig: make(chan os.Signal, 16)}
	signal.Notify(r.sig, unix.SIGCHLD)
	return r
}

func (r *reaper) loop() {
	for range r.sig {
		r.reapAll()
	}
}

func (r *reaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.mu.Lock()
		if w, ok := r.waiters[pid]; ok {
			w <- ws
			delete(r.waiters, pid)
		} else {
			r.statuses[pid] = ws
		}
		r.mu.Unlock()
	}
}

// forget drops the statuses of processes nobody waited for (before a
// new command starts, so its own status is never among them).
func (r *reaper) forget() {
	r.mu.Lock()
	clear(r.statuses)
	r.mu.Unlock()
}

// wait returns a channel that gets pid's status.
func (r *reaper) wait(pid int) <-chan unix.WaitStatus {
	ch := make(chan unix.WaitStatus, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ws, ok := r.statuses[pid]; ok {
		delete(r.statuses, pid)
		ch <- ws
		return ch
	}
	r.waiters[pid] = ch
	// A SIGCHLD may have come before the waiter was registered and been
	// handled already; reap again to be sure.
	go r.reapAll()
	return ch
}

// serveData answers SendDir requests from the host on DataPort.
func (g *guest) serveData() {
	l, err := vsock.Listen(DataPort, nil)
	if err != nil {
		g.logf("listening on vsock port %d: %v", DataPort, err)
		return
	}
	for {
		c, err := l.Accept()
		if err != nil {
			g.logf("vsock accept: %v", err)
			return
		}
		if a, ok := c.RemoteAddr().(*vsock.Addr); !ok || a.ContextID != vsock.Host {
			// Only the host may ask for files.
			c.Close()
			continue
		}
		go g.handleData(c)
	}
}

func (g *guest) handleData(c net.Conn) {
	defer c.Close()
	typ, payload, err := readFrame(c, nil)
	if err != nil {
		return
	}
	if typ != msgSendDir {
		writeJSON(c, msgEnd, Result{Error: fmt.Sprintf("unexpected request %q", typ)})
		return
	}
	var req DirRequest
	if err := decode(typ, payload, &req); err != nil {
		writeJSON(c, msgEnd, Result{Error: err.Error()})
		return
	}
	fw := &frameWriter{w: c}
	bw := bufio.NewWriterSize(fw, 256<<10)
	err = dumpNAR(context.Background(), req.Path, bw)
	if err == nil {
		err = bw.Flush()
	}
	res := Result{}
	if err != nil {
		res.Error = err.Error()
		res.NotExist = errors.Is(err, fs.ErrNotExist)
	}
	writeJSON(c, msgEnd, res)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	// Wait for the host to close, so the last bytes are not reset away.
	io.Copy(io.Discard, c)
}

// frameWriter turns writes into msgData frames.
type frameWriter struct{ w io.Writer }

func (f *frameWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 1<<20)
		if err := writeFrame(f.w, msgData, p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// ErrNoTree is in the error for a SendDir whose path does not exist.
const ErrNoTree = "no such file or directory"

// dumpNAR writes the tree at p as a NAR, as nix-store --dump does: a file
// is executable when its owner may execute it; modes, times and owners
// are not recorded; sockets, devices and FIFOs are errors.
func dumpNAR(ctx context.Context, p string, w io.Writer) error {
	return nar.DumpPath(ctx, w, p, nil)
}
