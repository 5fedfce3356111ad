package microvm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/builder/sandbox"
	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/images"
	"github.com/castor-nix/castor/images/agent"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/vmm"
	"github.com/castor-nix/castor/vmm/agentvm"
	"github.com/castor-nix/castor/vmm/vmcmd"
)

// Identity of the builder in the guest, as in Nix's sandbox.
const (
	BuilderUID = 1000
	BuilderGID = 100
)

// Derivation attributes (environment variables of a Build) that size a
// build's VM.
const (
	AttrCPUs   = "castorVmCpus"
	AttrMemory = "castorVmMemory"
)

// Options configure an Executor.
type Options struct {
	// Directories and Blobs serve the builds' inputs.
	Directories castore.DirectoryGetter
	Blobs       castore.BlobOpener
	// Hypervisor for builds without network ("" for vmm.Select's choice).
	Hypervisor vmm.Hypervisor
	// CPUs (default 1) and MemoryMiB (default 1024) of each build's VM.
	CPUs      int
	MemoryMiB int
	// ScratchMiB bounds what a build may write (its root, outputs
	// included): a tmpfs in the guest's memory (default MemoryMiB/2).
	ScratchMiB int
	// Image is what builds boot; nil builds the agent image
	// (images.AgentImage with Kernel and CacheDir) on first use.
	Image    *images.Image
	Kernel   string
	CacheDir string
	// KernelArgs are added to the guest kernel's command line.
	KernelArgs string
	// Systems this executor builds for (the host's when empty).
	Systems []string
	// Logger receives debug lines (slog.Default() when nil).
	Logger *slog.Logger
}

// Executor runs each build in a micro-VM of its own.
type Executor struct {
	opts Options
	log  *slog.Logger

	imgMu sync.Mutex
	img   *images.Image
}

var _ builder.Executor = (*Executor)(nil)

// New returns an executor. The image is built on the first Run.
func New(opts Options) (*Executor, error) {
	if opts.Directories == nil || opts.Blobs == nil {
		return nil, errors.New("microvm: needs a directory getter and a blob opener")
	}
	if opts.CPUs <= 0 {
		opts.CPUs = 1
	}
	if opts.MemoryMiB <= 0 {
		opts.MemoryMiB = 1024
	}
	if opts.ScratchMiB <= 0 {
		opts.ScratchMiB = opts.MemoryMiB / 2
	}
	if len(opts.Systems) == 0 {
		opts.Systems = []string{sandbox.HostSystem()} // guests run the host's architecture
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if _, err := vmm.Select(opts.Hypervisor); err != nil {
		return nil, err
	}
	return &Executor{opts: opts, log: opts.Logger, img: opts.Image}, nil
}

// image returns the boot files, building them once.
func (e *Executor) image(ctx context.Context) (*images.Image, error) {
	e.imgMu.Lock()
	defer e.imgMu.Unlock()
	if e.img != nil {
		return e.img, nil
	}
	cache := e.opts.CacheDir
	if cache == "" {
		cache = images.DefaultCacheDir()
	}
	img, err := images.AgentImage(ctx, cache, e.opts.Kernel)
	if err != nil {
		return nil, fmt.Errorf("microvm: the build image: %w", err)
	}
	e.img = img
	return img, nil
}

// InputsTag is the virtio-fs tag of a build's inputs.
const InputsTag = "castor-inputs"

// Where the agent puts things in the guest.
const (
	inputsMount = "/inputs" // the inputs' filesystem, outside the root
	root        = "/r"      // the build's root
)

// Run implements builder.Executor.
func (e *Executor) Run(ctx context.Context, b *builder.Build, log io.Writer) (builder.Outputs, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if !slices.Contains(e.opts.Systems, b.Constraints.System) {
		return nil, fmt.Errorf("%w: a %s build, and this executor builds for %v", builder.ErrUnsupported, b.Constraints.System, e.opts.Systems)
	}
	if len(b.Constraints.AvailableReadOnlyPaths) > 0 {
		return nil, fmt.Errorf("%w: the build wants host paths %v, which a micro-VM cannot show", builder.ErrUnsupported, b.Constraints.AvailableReadOnlyPaths)
	}
	cpus, mem, err := e.size(b)
	if err != nil {
		return nil, err
	}
	if err := e.checkInputs(ctx, b); err != nil {
		return nil, err
	}
	img, err := e.image(ctx)
	if err != nil {
		return nil, err
	}
	hv := e.opts.Hypervisor
	if b.Constraints.NetworkAccess {
		// Only QEMU has user-mode networking.
		hv = vmm.QEMU
	}
	roots := castorfs.Roots{}
	for _, in := range b.Inputs {
		roots[in.Name] = in.Node
	}
	t0 := time.Now()
	vm, err := agentvm.Boot(ctx, agentvm.Options{
		Image:      img,
		Hypervisor: hv,
		CPUs:       cpus,
		MemoryMiB:  mem,
		Net:        b.Constraints.NetworkAccess,
		KernelArgs: e.opts.KernelArgs,
		Logger:     e.log,
		FS: []vmm.FS{{Tag: InputsTag, NewFS: func(ctx context.Context) (fuse.RawFileSystem, error) {
			return castorfs.New(roots, e.opts.Directories, e.opts.Blobs, castorfs.Options{ListRoot: true, Logger: e.log})
		}}},
	})
	if err != nil {
		return nil, e.fail(ctx, log, nil, fmt.Errorf("booting the build's VM: %w", err))
	}
	e.log.Debug("microvm: VM up", "took", time.Since(t0), "cpus", cpus, "memory_mib", mem)
	done := false
	defer func() {
		if !done {
			vm.Close()
		}
	}()
	if err := vm.Setup(ctx, e.setup(b)); err != nil {
		return nil, e.fail(ctx, log, vm, fmt.Errorf("setting up the build's VM: %w", err))
	}
	env := make([]string, len(b.Env))
	for i, v := range b.Env {
		env[i] = v.Key + "=" + v.Value
	}
	ex, err := vm.Run(ctx, &agent.Run{
		Command: b.Command,
		Argv0:   path.Base(b.Command[0]),
		Env:     env,
		Dir:     "/" + b.WorkingDir,
		UID:     BuilderUID,
		GID:     BuilderGID,
		Chroot:  root,
	}, log, log)
	if err != nil {
		return nil, e.fail(ctx, log, vm, err)
	}
	e.log.Debug("microvm: builder exited", "code", ex.Code, "signal", ex.Signal, "since boot", time.Since(t0))
	if ex.Error != "" {
		// As Nix (and the sandbox) report it: in the log, status 1.
		fmt.Fprintf(log, "executing '%s': %s\n", b.Command[0], ex.Error)
		ex.Code = 1
	}
	if ex.Code != 0 || ex.Signal != "" {
		e.shutdown(vm)
		done = true
		return nil, &builder.ExitError{Code: ex.Code, Signal: ex.Signal}
	}
	done = true
	return &outputs{vm: vm, paths: b.Outputs, e: e}, nil
}

// fail turns a VM-level failure into the build's error: the context's
// cause when it ended the build, and otherwise the VM's error. The end of
// the VM's console (a kernel panic's trace) goes to the build log, then a
// line saying what happened, so the log's tail shows both.
func (e *Executor) fail(ctx context.Context, log io.Writer, vm *agentvm.VM, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("build cancelled: %w", context.Cause(ctx))
	}
	if vm != nil {
		if tail := vm.ConsoleTail(20); tail != "" {
			fmt.Fprintf(log, "castor: the last lines of the build VM's console:\n%s\n", tail)
		}
	}
	first, _, _ := strings.Cut(strings.TrimSpace(err.Error()), "\n")
	fmt.Fprintf(log, "castor: the build's VM failed: %s\n", first)
	return fmt.Errorf("micro-VM: %w", err)
}

func (e *Executor) shutdown(vm *agentvm.VM) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := vm.Shutdown(ctx); err != nil {
		e.log.Debug("microvm: VM shutdown", "err", err)
	}
	vm.Close()
}

// size returns the VM's CPUs and memory for b: the options, the
// derivation's castorVmCpus and castorVmMemory, and at least MinMemory
// plus room for the kernel and the scratch space.
func (e *Executor) size(b *builder.Build) (int, int, error) {
	cpus, mem := e.opts.CPUs, e.opts.MemoryMiB
	if v, ok := b.Getenv(AttrCPUs); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > 64 {
			return 0, 0, fmt.Errorf("%w: %s = %q: want 1 to 64", builder.ErrInvalid, AttrCPUs, v)
		}
		cpus = n
	}
	if v, ok := b.Getenv(AttrMemory); ok {
		n, err := vmcmd.ParseMemory(v)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: %s: %v", builder.ErrInvalid, AttrMemory, err)
		}
		mem = n
	}
	if need := int(b.Constraints.MinMemory>>20) + 128; b.Constraints.MinMemory > 0 && mem < need {
		mem = need
	}
	return cpus, mem, nil
}

// checkInputs makes sure each input's root (its top directory, or the
// file itself, when the blob service can say) is in the store before a VM
// boots for nothing: the guest would only see I/O errors.
func (e *Executor) checkInputs(ctx context.Context, b *builder.Build) error {
	stater, canStat := e.opts.Blobs.(castore.BlobStater)
	for _, in := range b.Inputs {
		switch {
		case in.Kind == castore.KindDirectory:
			if _, err := e.opts.Directories.GetDirectory(ctx, in.Digest); err != nil {
				return fmt.Errorf("input %s: directory %s: %w", in.Name, in.Digest, err)
			}
		case in.Kind == castore.KindFile && canStat:
			if _, err := stater.StatBlob(ctx, in.Digest); err != nil {
				return fmt.Errorf("input %s: blob %s: %w", in.Name, in.Digest, err)
			}
		}
	}
	return nil
}

// setup is the guest's preparation of b's root (see the package
// documentation), the namespace sandbox's layout.
func (e *Executor) setup(b *builder.Build) *agent.Setup {
	var st []agent.Step
	mkdir := func(p string, mode uint32, uid, gid int) {
		st = append(st, agent.Step{Mkdir: &agent.Dir{Path: root + "/" + p, Mode: mode, UID: uid, GID: gid}})
	}
	mount := func(m agent.Mount) { st = append(st, agent.Step{Mount: &m}) }
	file := func(p string, data []byte, mode uint32, uid, gid int) {
		st = append(st, agent.Step{File: &agent.File{Path: root + "/" + p, Mode: mode, UID: uid, GID: gid, Data: data}})
	}
	symlink := func(p, target string) {
		st = append(st, agent.Step{Symlink: &agent.Symlink{Path: root + "/" + p, Target: target}})
	}

	mount(agent.Mount{Type: "tmpfs", Target: root, Data: fmt.Sprintf("size=%dm,mode=0750,gid=%d", e.opts.ScratchMiB, BuilderGID)})
	mount(agent.Mount{Type: "virtiofs", Source: InputsTag, Target: inputsMount, ReadOnly: true})
	for _, s := range b.ScratchPaths {
		for d := path.Dir(s); d != "."; d = path.Dir(d) {
			mkdir(d, 0o755, 0, 0)
		}
		if s == b.InputsDir {
			mkdir(s, 0o1775, 0, BuilderGID)
		} else {
			mkdir(s, 0o700, BuilderUID, BuilderGID)
		}
	}
	mkdir(b.InputsDir, 0o1775, 0, BuilderGID)
	for _, f := range b.AdditionalFiles {
		file(f.Path, f.Contents, 0o644, BuilderUID, BuilderGID)
	}
	for _, in := range b.Inputs {
		rel := path.Join(b.InputsDir, in.Name)
		if in.Kind == castore.KindSymlink {
			symlink(rel, in.Target)
			continue
		}
		mount(agent.Mount{Type: "bind", Source: inputsMount + "/" + in.Name, Target: root + "/" + rel, ReadOnly: true})
	}

	// /etc as Nix writes it.
	file("etc/passwd", []byte(fmt.Sprintf(
		"root:x:0:0:Nix build user:/%[3]s:/noshell\nnixbld:x:%[1]d:%[2]d:Nix build user:/%[3]s:/noshell\nnobody:x:65534:65534:Nobody:/:/noshell\n",
		BuilderUID, BuilderGID, b.WorkingDir)), 0o444, 0, 0)
	file("etc/group", []byte(fmt.Sprintf("root:x:0:\nnixbld:!:%d:\nnogroup:x:65534:\n", BuilderGID)), 0o444, 0, 0)
	if b.Constraints.NetworkAccess {
		file("etc/nsswitch.conf", []byte("hosts: files dns\nservices: files\n"), 0o444, 0, 0)
		file("etc/resolv.conf", []byte("nameserver "+agent.DNS+"\n"), 0o444, 0, 0)
		file("etc/hosts", []byte("127.0.0.1 localhost\n::1 localhost\n"), 0o444, 0, 0)
		if services, err := os.ReadFile("/etc/services"); err == nil {
			file("etc/services", services, 0o444, 0, 0)
		}
	} else {
		file("etc/hosts", []byte("127.0.0.1 localhost\n::1 localhost\n"), 0o444, 0, 0)
	}
	mkdir("etc", 0o555, 0, 0)

	// A minimal /dev, as the sandbox's.
	mount(agent.Mount{Type: "tmpfs", Target: root + "/dev", Data: "mode=0755,size=64k"})
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		mount(agent.Mount{Type: "bind", Source: "/dev/" + d, Target: root + "/dev/" + d})
	}
	mount(agent.Mount{Type: "devpts", Target: root + "/dev/pts", Data: "newinstance,ptmxmode=0666,mode=0620"})
	mount(agent.Mount{Type: "tmpfs", Target: root + "/dev/shm", Data: "mode=1777"})
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "/dev/pts/ptmx"} {
		symlink("dev/"+name, target)
	}
	mount(agent.Mount{Type: "proc", Target: root + "/proc"})
	mkdir("tmp", 0o1777, 0, 0)
	if b.Constraints.ProvideBinSh {
		mkdir("bin", 0o755, 0, 0)
		mount(agent.Mount{Type: "bind", Source: "/bin/busybox", Target: root + "/bin/sh", ReadOnly: true})
	}
	return &agent.Setup{Steps: st, Net: b.Constraints.NetworkAccess}
}

// outputs are a finished build's trees, still in its VM.
type outputs struct {
	e     *Executor
	vm    *agentvm.VM
	paths []string
	once  sync.Once
}

var _ builder.Outputs = (*outputs)(nil)

// WriteNAR implements builder.Outputs: the agent sends the tree over a
// vsock connection of its own, so several may run at once.
func (o *outputs) WriteNAR(ctx context.Context, i int, w io.Writer) error {
	if i < 0 || i >= len(o.paths) {
		return fmt.Errorf("%w: no output %d", builder.ErrInvalid, i)
	}
	err := o.vm.SendDir(ctx, root+"/"+o.paths[i], w)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %s", builder.ErrNoOutput, path.Base(o.paths[i]))
	}
	return err
}

// Close implements builder.Outputs: the VM powers off.
func (o *outputs) Close() error {
	o.once.Do(func() { o.e.shutdown(o.vm) })
	return nil
}
