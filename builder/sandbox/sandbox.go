package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/castor-nix/castor/builder"
	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/store/castore"
)

// Identity of the builder inside its user namespace, as in Nix's sandbox.
const (
	SandboxUID = 1000
	SandboxGID = 100
)

// Options configure an Executor.
type Options struct {
	// Directories and Blobs serve the builds' inputs.
	Directories castore.DirectoryGetter
	Blobs       castore.BlobOpener
	// ScratchDir holds each build's root while it runs, and its outputs
	// until they are ingested (os.TempDir() when empty).
	ScratchDir string
	// Shell is the static shell provided as /bin/sh to builds that ask for
	// one (the first busybox found on PATH, /bin or /usr/bin when empty).
	Shell string
	// HostUID and HostGID are the host identity builders run as (65534,
	// nobody/nogroup, when zero). Set RunAsRoot to map them to root
	// instead, as Nix does without build users.
	HostUID, HostGID int
	RunAsRoot        bool
	// Systems this executor builds for (the host's, e.g. x86_64-linux,
	// when empty).
	Systems []string
	// KeepFailed leaves the root of a failed build in ScratchDir.
	KeepFailed bool
	// Logger receives debug lines and FUSE errors (slog.Default() when nil).
	Logger *slog.Logger
}

// Executor runs builds in Linux namespaces. It needs root and /dev/fuse.
type Executor struct {
	opts Options
	log  *slog.Logger
}

var _ builder.Executor = (*Executor)(nil)

// HostSystem is the Nix system name of this machine.
func HostSystem() string {
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i686", "riscv64": "riscv64"}[runtime.GOARCH]
	if arch == "" {
		arch = runtime.GOARCH
	}
	return arch + "-" + runtime.GOOS
}

// New checks what builds will need and returns an executor.
func New(opts Options) (*Executor, error) {
	if opts.Directories == nil || opts.Blobs == nil {
		return nil, errors.New("sandbox: needs a directory getter and a blob opener")
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: the namespace sandbox needs root (mount namespaces, FUSE mounts)", builder.ErrUnsupported)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("%w: the namespace sandbox needs /dev/fuse: %v", builder.ErrUnsupported, err)
	}
	if opts.ScratchDir == "" {
		opts.ScratchDir = os.TempDir()
	}
	if opts.Shell == "" {
		opts.Shell = FindShell()
	}
	if !opts.RunAsRoot {
		if opts.HostUID == 0 {
			opts.HostUID = 65534
		}
		if opts.HostGID == 0 {
			opts.HostGID = 65534
		}
	} else {
		opts.HostUID, opts.HostGID = 0, 0
	}
	if len(opts.Systems) == 0 {
		opts.Systems = []string{HostSystem()}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	removeStale(opts.ScratchDir, opts.Logger)
	return &Executor{opts: opts, log: opts.Logger}, nil
}

// FindShell returns the path of a static busybox to serve as /bin/sh, or
// "" if there is none.
func FindShell() string {
	if p, err := exec.LookPath("busybox"); err == nil {
		return p
	}
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Run implements builder.Executor.
func (e *Executor) Run(ctx context.Context, b *builder.Build, log io.Writer) (builder.Outputs, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if !slices.Contains(e.opts.Systems, b.Constraints.System) {
		return nil, fmt.Errorf("%w: a %s build, and this sandbox builds for %v", builder.ErrUnsupported, b.Constraints.System, e.opts.Systems)
	}
	if b.Constraints.ProvideBinSh && e.opts.Shell == "" {
		return nil, fmt.Errorf("%w: the build needs /bin/sh and no static shell (busybox) was found", builder.ErrUnsupported)
	}
	scratch, err := os.MkdirTemp(e.opts.ScratchDir, scratchPrefix)
	if err != nil {
		return nil, err
	}
	lock, err := lockScratch(scratch)
	if err != nil {
		os.RemoveAll(scratch)
		return nil, err
	}
	success := false
	defer func() {
		if success {
			return
		}
		if e.opts.KeepFailed {
			e.log.Info("keeping the failed build's root", "dir", scratch)
		} else {
			os.RemoveAll(scratch)
		}
		lock.Close()
	}()
	l := &layout{e: e, b: b, scratch: scratch, root: filepath.Join(scratch, "root")}
	tp := time.Now()
	cfg, err := l.prepare()
	if err != nil {
		return nil, fmt.Errorf("preparing the sandbox: %w", err)
	}
	e.log.Debug("sandbox root prepared", "dir", scratch, "took", time.Since(tp))
	res, err := e.runHelper(ctx, b, cfg, log)
	if err != nil {
		return nil, err
	}
	if res.Exit != 0 || res.Signal != "" {
		return nil, &builder.ExitError{Code: res.Exit, Signal: res.Signal}
	}
	success = true
	return &builder.DirOutputs{Root: l.root, Paths: b.Outputs, Cleanup: func() error {
		err := os.RemoveAll(scratch)
		lock.Close()
		return err
	}}, nil
}

// A build's scratch directory is named scratchPrefix… and holds a lock
// file, locked for as long as the directory is in use, so that a later
// executor can tell the directories a killed castor left behind.
const (
	scratchPrefix = "castor-build-"
	lockName      = ".lock"
)

func lockScratch(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return f, nil
}

// removeStale deletes the scratch directories in dir whose lock nobody
// holds: left by a castor that was killed (its mounts and processes died
// with it; the files stay).
func removeStale(dir string, log *slog.Logger) {
	matches, _ := filepath.Glob(filepath.Join(dir, scratchPrefix+"*"))
	for _, m := range matches {
		f, err := os.Open(filepath.Join(m, lockName))
		if err != nil {
			// No lock yet: a build being set up right now, or not ours.
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			if err := os.RemoveAll(m); err == nil {
				log.Info("removed a build directory left by an earlier castor", "dir", m)
			}
		}
		f.Close()
	}
}

// runHelper starts the helper, serves the castor filesystem it mounts,
// copies the log, and returns the builder's status.
func (e *Executor) runHelper(ctx context.Context, b *builder.Build, cfg *helperConfig, log io.Writer) (*helperMsg, error) {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer cfgR.Close()
	defer cfgW.Close()
	logR, logW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer logR.Close()
	defer logW.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ctlParent := os.NewFile(uintptr(pair[0]), "control")
	ctlChild := os.NewFile(uintptr(pair[1]), "control-child")
	defer ctlParent.Close()
	defer ctlChild.Close()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()

	flags := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	if !b.Constraints.NetworkAccess {
		flags |= syscall.CLONE_NEWNET
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{"castor-sandbox"},
		Env:        []string{helperEnv + "=1"},
		Stdin:      devNull,
		Stdout:     logW,
		Stderr:     logW,
		ExtraFiles: []*os.File{cfgR, ctlChild}, // fds 3 and 4
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: flags,
			// The helper (and with it the PID namespace) dies with us.
			Pdeathsig: syscall.SIGKILL,
		},
	}

	// Pdeathsig fires when the thread that started the child exits, so
	// the thread is kept until the helper is gone.
	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	t0 := time.Now()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting the sandbox helper: %w", err)
	}
	e.log.Debug("sandbox helper started", "pid", cmd.Process.Pid, "took", time.Since(t0))
	// Only the helper and the builder keep these now.
	logW.Close()
	ctlChild.Close()
	cfgR.Close()

	killed := false
	kill := func() {
		if !killed {
			killed = true
			cmd.Process.Kill()
		}
	}
	var logDone sync.WaitGroup
	logDone.Add(1)
	go func() {
		defer logDone.Done()
		io.Copy(log, logR)
	}()
	var srv *fuse.Server
	var fsys *castorfs.FS
	msgs := make(chan helperRecv, 8)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		readControl(pair[0], msgs)
	}()
	defer func() {
		kill()
		<-exited
		// The helper's end is closed now, so the reader has stopped.
		<-readDone
		logDone.Wait()
		if srv != nil {
			// The kernel aborted the connection when the mount
			// namespace went away; the server's loops have ended.
			srv.Wait()
		}
		if fsys != nil {
			fsys.Close()
		}
		e.log.Debug("sandbox gone", "since start", time.Since(t0))
	}()

	js, _ := json.Marshal(cfg)
	go func() {
		cfgW.Write(js)
		cfgW.Close()
	}()

	for {
		var m helperRecv
		select {
		case <-ctx.Done():
			kill()
			return nil, fmt.Errorf("build cancelled: %w", context.Cause(ctx))
		case m = <-msgs:
		}
		if m.err != nil {
			// The helper died without saying why (killed, crashed).
			werr := <-exited
			return nil, fmt.Errorf("sandbox helper: %v (%v)", m.err, werr)
		}
		if m.msg.FUSE {
			if fsys, srv, err = e.serveFUSE(b, m.fd); err != nil {
				return nil, err
			}
			if err := unix.Sendmsg(pair[0], []byte("served"), nil, nil, 0); err != nil {
				return nil, fmt.Errorf("sandbox helper: %w", err)
			}
			e.log.Debug("sandbox FUSE mount served", "since start", time.Since(t0))
			continue
		}
		if m.msg.Setup != "" {
			return nil, fmt.Errorf("setting up the sandbox: %s", m.msg.Setup)
		}
		if m.msg.Done {
			e.log.Debug("build finished", "since start", time.Since(t0), "exit", m.msg.Exit, "signal", m.msg.Signal)
			msg := m.msg
			return &msg, nil
		}
	}
}

type helperRecv struct {
	msg helperMsg
	fd  int
	err error
}

// readControl reads the helper's messages until the socket closes.
func readControl(fd int, out chan<- helperRecv) {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err == nil && n == 0 {
			err = io.EOF
		}
		if err != nil {
			out <- helperRecv{err: fmt.Errorf("control socket: %w", err)}
			return
		}
		r := helperRecv{fd: -1}
		if err := json.Unmarshal(buf[:n], &r.msg); err != nil {
			out <- helperRecv{err: fmt.Errorf("control message %q: %w", buf[:n], err)}
			return
		}
		if oobn > 0 {
			if scms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(scms) > 0 {
				if fds, err := unix.ParseUnixRights(&scms[0]); err == nil && len(fds) > 0 {
					r.fd = fds[0]
				}
			}
		}
		out <- r
		if r.msg.Done {
			return
		}
	}
}

// maxRead matches what fs.Mount negotiates.
const maxRead = castorfs.DefaultMaxRead

// serveFUSE serves the castor filesystem, showing exactly the build's
// inputs, on the /dev/fuse descriptor the helper mounted.
func (e *Executor) serveFUSE(b *builder.Build, fd int) (*castorfs.FS, *fuse.Server, error) {
	if fd < 0 {
		return nil, nil, errors.New("sandbox helper sent no FUSE descriptor")
	}
	roots := castorfs.Roots{}
	for _, in := range b.Inputs {
		roots[in.Name] = in.Node
	}
	fsys, err := castorfs.New(roots, e.opts.Directories, e.opts.Blobs, castorfs.Options{Logger: e.log})
	if err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	srv, err := fuse.NewServer(fsys, "/dev/fd/"+strconv.Itoa(fd), &fuse.MountOptions{
		FsName:               "castor",
		Name:                 "castor",
		MaxWrite:             maxRead,
		MaxReadAhead:         maxRead,
		MaxBackground:        64,
		EnableSymlinkCaching: true,
		ExtraCapabilities:    fuse.CAP_READDIRPLUS_AUTO,
		IgnoreSecurityLabels: true,
		Logger:               slog.NewLogLogger(e.log.Handler(), slog.LevelWarn),
	})
	if err != nil {
		unix.Close(fd)
		fsys.Close()
		return nil, nil, fmt.Errorf("serving the sandbox's FUSE mount: %w", err)
	}
	go srv.Serve()
	return fsys, srv, nil
}

// fuseMountOptions are the mount(2) data the helper passes with fd=N.
func fuseMountOptions() string {
	return "rootmode=40000,user_id=0,group_id=0,allow_other,default_permissions,max_read=" + strconv.Itoa(maxRead)
}

// layout prepares a build's root on the host.
type layout struct {
	e       *Executor
	b       *builder.Build
	scratch string
	root    string
	mounts  []mountSpec
}

func (l *layout) path(rel string) string { return filepath.Join(l.root, filepath.FromSlash(rel)) }

func (l *layout) mkdir(rel string, mode os.FileMode, owned bool) error {
	p := l.path(rel)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(p, mode); err != nil {
		return err
	}
	if owned {
		return os.Chown(p, l.e.opts.HostUID, l.e.opts.HostGID)
	}
	return os.Chown(p, 0, l.e.opts.HostGID)
}

func (l *layout) writeFile(rel string, data []byte, mode os.FileMode, owned bool) error {
	p := l.path(rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(p, mode); err != nil {
		return err
	}
	if owned {
		return os.Chown(p, l.e.opts.HostUID, l.e.opts.HostGID)
	}
	return nil
}

// bindPoint creates an empty file or directory to mount host path src on.
func (l *layout) bindPoint(src, rel string, readOnly, optional bool) error {
	st, err := os.Stat(src)
	if err != nil {
		if optional {
			return nil
		}
		return err
	}
	if st.IsDir() {
		if err := os.MkdirAll(l.path(rel), 0o755); err != nil {
			return err
		}
	} else if err := l.writeFile(rel, nil, 0o444, false); err != nil {
		return err
	}
	l.mounts = append(l.mounts, mountSpec{Kind: mountBind, Source: src, Target: rel, ReadOnly: readOnly, Optional: optional})
	return nil
}

// prepare lays out the root as Nix's sandbox does and returns the helper's
// configuration: / (0750), the scratch paths (the inputs directory 1775,
// others 0700, owned by the builder), the additional files, inputs as
// mountpoints in the inputs directory, /etc with passwd, group and hosts,
// a minimal /dev, /proc, /tmp, and /bin/sh if asked for.
func (l *layout) prepare() (*helperConfig, error) {
	b, o := l.b, &l.e.opts
	fuseDir := filepath.Join(l.scratch, "fuse")
	if err := os.Mkdir(fuseDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Mkdir(l.root, 0o750); err != nil {
		return nil, err
	}
	if err := os.Chown(l.root, 0, o.HostGID); err != nil {
		return nil, err
	}
	for _, s := range b.ScratchPaths {
		mode, owned := os.FileMode(0o700), true
		if s == b.InputsDir {
			mode, owned = 0o775|os.ModeSticky, false
		}
		for d := path.Dir(s); d != "."; d = path.Dir(d) {
			if err := os.MkdirAll(l.path(d), 0o755); err != nil {
				return nil, err
			}
		}
		if err := l.mkdir(s, mode, owned); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(l.path(b.InputsDir), 0o755); err != nil {
		return nil, err
	}
	for _, f := range b.AdditionalFiles {
		if err := l.writeFile(f.Path, f.Contents, 0o644, true); err != nil {
			return nil, err
		}
	}
	for _, in := range b.Inputs {
		rel := path.Join(b.InputsDir, in.Name)
		switch in.Kind {
		case castore.KindSymlink:
			// Nothing to serve: a symlink is its target.
			if err := os.Symlink(in.Target, l.path(rel)); err != nil {
				return nil, err
			}
			continue
		case castore.KindDirectory:
			if err := os.Mkdir(l.path(rel), 0o555); err != nil {
				return nil, err
			}
		default:
			if err := l.writeFile(rel, nil, 0o444, false); err != nil {
				return nil, err
			}
		}
		l.mounts = append(l.mounts, mountSpec{Kind: mountBind, Source: filepath.Join(fuseDir, in.Name), Target: rel, ReadOnly: true})
	}

	// /etc, as Nix writes it; read-only once written.
	if err := l.writeFile("etc/passwd", []byte(fmt.Sprintf(
		"root:x:0:0:Nix build user:/%[3]s:/noshell\nnixbld:x:%[1]d:%[2]d:Nix build user:/%[3]s:/noshell\nnobody:x:65534:65534:Nobody:/:/noshell\n",
		SandboxUID, SandboxGID, b.WorkingDir)), 0o444, false); err != nil {
		return nil, err
	}
	if err := l.writeFile("etc/group", []byte(fmt.Sprintf("root:x:0:\nnixbld:!:%d:\nnogroup:x:65534:\n", SandboxGID)), 0o444, false); err != nil {
		return nil, err
	}
	if b.Constraints.NetworkAccess {
		// Name resolution for fetchers, from the host's configuration.
		if err := l.writeFile("etc/nsswitch.conf", []byte("hosts: files dns\nservices: files\n"), 0o444, false); err != nil {
			return nil, err
		}
		for _, p := range []string{"/etc/resolv.conf", "/etc/services", "/etc/hosts"} {
			if err := l.bindPoint(p, p[1:], true, true); err != nil {
				return nil, err
			}
		}
	} else if err := l.writeFile("etc/hosts", []byte("127.0.0.1 localhost\n::1 localhost\n"), 0o444, false); err != nil {
		return nil, err
	}

	// A minimal /dev.
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := l.bindPoint("/dev/"+d, "dev/"+d, false, d == "tty"); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"dev/shm", "dev/pts", "proc"} {
		if err := os.MkdirAll(l.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "/dev/pts/ptmx"} {
		if err := os.Symlink(target, l.path("dev/"+name)); err != nil {
			return nil, err
		}
	}
	l.mounts = append(l.mounts,
		mountSpec{Kind: mountTmpfs, Target: "dev/shm"},
		mountSpec{Kind: mountDevpts, Target: "dev/pts", Optional: true},
		mountSpec{Kind: mountProc, Target: "proc"},
	)
	if err := l.mkdir("tmp", 0o777|os.ModeSticky, false); err != nil {
		return nil, err
	}
	if b.Constraints.ProvideBinSh {
		if err := l.bindPoint(o.Shell, "bin/sh", true, false); err != nil {
			return nil, fmt.Errorf("/bin/sh: %w", err)
		}
	}
	for _, p := range b.Constraints.AvailableReadOnlyPaths {
		if err := l.bindPoint(p, p[1:], true, false); err != nil {
			return nil, fmt.Errorf("sandbox path %s: %w", p, err)
		}
	}
	if err := os.Chmod(l.path("etc"), 0o555); err != nil {
		return nil, err
	}

	env := make([]string, len(b.Env))
	for i, v := range b.Env {
		env[i] = v.Key + "=" + v.Value
	}
	return &helperConfig{
		Root:         l.root,
		FuseDir:      fuseDir,
		FuseOptions:  fuseMountOptions(),
		Mounts:       l.mounts,
		Command:      b.Command,
		Argv0:        path.Base(b.Command[0]),
		Env:          env,
		Dir:          "/" + b.WorkingDir,
		LoopbackOnly: !b.Constraints.NetworkAccess,
		UID:          SandboxUID,
		GID:          SandboxGID,
		HostUID:      o.HostUID,
		HostGID:      o.HostGID,
	}, nil
}
