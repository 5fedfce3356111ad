package vmcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/fs/storeroots"
	"github.com/castor-nix/castor/images/agent"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/pathinfo"
	"github.com/castor-nix/castor/vmm"
	"github.com/castor-nix/castor/vmm/agentvm"
)

// Store is what the VM's /nix/store shows.
type Store struct {
	Blobs       castore.BlobOpener
	Directories castore.DirectoryGetter
	PathInfos   pathinfo.Getter
}

// OpenFunc opens the store the command line names; the returned function
// closes it.
type OpenFunc func(cmd *cobra.Command) (Store, func() error, error)

// Options are the command's flags.
type Options struct {
	CPUs       int
	Memory     string // "512M", "2G", or MiB
	Hypervisor string // "qemu", "cloud-hypervisor", "" for the default
	Timeout    time.Duration
	Kernel     string
	Env        []string
	ListRoot   bool
	Net        bool
	Console    bool
	Logger     *slog.Logger
}

// ErrTimeout is wrapped when the command ran past --timeout.
var ErrTimeout = errors.New("timed out")

// ExitStatus is the status castor exits with, and why when it is not the
// command's own.
type ExitStatus struct {
	Code int
	Err  error // nil when Code is the command's status
}

func (e *ExitStatus) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return fmt.Sprintf("command exited with status %d", e.Code)
}

func (e *ExitStatus) Unwrap() error { return e.Err }

// ExitCode is the status castor exits with.
func (e *ExitStatus) ExitCode() int { return e.Code }

// NewCommand returns `vm` with its `run` subcommand.
func NewCommand(open OpenFunc) *cobra.Command {
	vm := &cobra.Command{
		Use:   "vm",
		Short: "Run commands in micro-VMs whose /nix/store is the castor store",
	}
	vm.AddCommand(newRunCommand(open))
	return vm
}

func newRunCommand(open OpenFunc) *cobra.Command {
	var o Options
	cmd := &cobra.Command{
		Use:   "run [flags] -- CMD [ARGS...]",
		Short: "Boot a micro-VM with the store as /nix/store, run CMD in it, exit with its status",
		Long: `Run boots a micro-VM (Cloud Hypervisor when KVM works and it is installed,
QEMU otherwise; --hypervisor chooses) whose /nix/store is the castor store,
served read-only over virtio-fs by castor itself; store paths appear on
first access. CMD runs as uid 1000 (gid 100) in /build, a scratch
directory, with PATH=/bin (a static busybox), HOME=/build and TMPDIR=/tmp
plus --env; its standard output and error are streamed back, and castor
exits with its status (128+N when signal N killed it, 124 past --timeout).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, closeStore, err := open(cmd)
			if err != nil {
				return err
			}
			defer closeStore()
			code, err := Run(cmd.Context(), st, args, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil || code != 0 {
				return &ExitStatus{Code: code, Err: err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.CPUs, "cpus", 1, "virtual CPUs")
	f.StringVar(&o.Memory, "memory", "512M", "guest memory (512M, 2G; a plain number is MiB)")
	f.StringVar(&o.Hypervisor, "hypervisor", "", "qemu or cloud-hypervisor (default: Cloud Hypervisor when KVM works and it is installed, else QEMU)")
	f.DurationVar(&o.Timeout, "timeout", 0, "kill the VM if the command runs longer (0: no limit)")
	f.StringVar(&o.Kernel, "kernel", "", "kernel to boot (default: Debian's cloud kernel in /boot)")
	f.StringArrayVarP(&o.Env, "env", "e", nil, "environment variable KEY=VALUE for the command (repeatable)")
	f.BoolVar(&o.ListRoot, "list-root", false, "allow listing /nix/store in the VM (walks the whole store)")
	f.BoolVar(&o.Net, "net", false, "give the VM user-mode networking (QEMU only)")
	f.BoolVar(&o.Console, "console", false, "show the guest's console (kernel log) on stderr")
	return cmd
}

// ParseMemory parses a size: "512M", "512MiB", "2G", "2GiB", or a plain
// number of MiB.
func ParseMemory(s string) (int, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	mul := 1
	switch {
	case strings.HasSuffix(t, "G"):
		mul, t = 1024, strings.TrimSuffix(t, "G")
	case strings.HasSuffix(t, "M"):
		t = strings.TrimSuffix(t, "M")
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 || n*mul < 64 || n*mul > 1<<20 {
		return 0, fmt.Errorf("memory %q: want a size from 64M to 1024G (512M, 2G)", s)
	}
	return n * mul, nil
}

// Guest identity of the command, as in Nix's sandbox.
const (
	UID = 1000
	GID = 100
)

// StoreTag is the virtio-fs tag of the store.
const StoreTag = "castor-store"

// Setup is the guest's set-up for a command: the store read-only at
// /nix/store, /build (the command's, 0700) and /tmp as scratch, /etc
// with passwd, group and hosts, /dev/pts and /dev/shm.
func Setup() *agent.Setup {
	return &agent.Setup{Steps: []agent.Step{
		{Mount: &agent.Mount{Type: "virtiofs", Source: StoreTag, Target: "/nix/store", ReadOnly: true}},
		{Mount: &agent.Mount{Type: "tmpfs", Target: "/build", Data: fmt.Sprintf("mode=0700,uid=%d,gid=%d", UID, GID)}},
		{Mount: &agent.Mount{Type: "tmpfs", Target: "/tmp", Data: "mode=1777"}},
		{Mount: &agent.Mount{Type: "devpts", Target: "/dev/pts", Data: "newinstance,ptmxmode=0666,mode=0620"}},
		{Mount: &agent.Mount{Type: "tmpfs", Target: "/dev/shm", Data: "mode=1777"}},
		{File: &agent.File{Path: "/etc/passwd", Mode: 0o444, Data: []byte(fmt.Sprintf(
			"root:x:0:0:root:/root:/bin/sh\nnixbld:x:%d:%d:Nix build user:/build:/bin/sh\nnobody:x:65534:65534:Nobody:/:/noshell\n", UID, GID))}},
		{File: &agent.File{Path: "/etc/group", Mode: 0o444, Data: []byte(fmt.Sprintf("root:x:0:\nnixbld:!:%d:\nnogroup:x:65534:\n", GID))}},
		{File: &agent.File{Path: "/etc/hosts", Mode: 0o444, Data: []byte("127.0.0.1 localhost\n::1 localhost\n")}},
	}}
}

// Run boots a VM over st, runs argv in it, and returns the command's
// status (128+N for signal N). An error means the command's status is not
// known: the VM failed, or the timeout hit (ErrTimeout, status 124).
// Nothing of the VM is left when Run returns.
func Run(ctx context.Context, st Store, argv []string, o Options, stdout, stderr io.Writer) (int, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	mem, err := ParseMemory(o.Memory)
	if o.Memory == "" {
		mem, err = 512, nil
	}
	if err != nil {
		return 1, fmt.Errorf("--memory: %w", err)
	}
	hv, err := vmm.ParseHypervisor(o.Hypervisor)
	if err != nil {
		return 1, fmt.Errorf("--hypervisor: %w", err)
	}
	if len(argv) == 0 {
		return 1, errors.New("vm run: no command")
	}
	for _, e := range o.Env {
		if !strings.Contains(e, "=") {
			return 1, fmt.Errorf("--env %q: want KEY=VALUE", e)
		}
	}
	roots := &storeroots.Resolver{Infos: st.PathInfos}
	var console io.Writer
	if o.Console {
		console = stderr
	}
	bootCtx := ctx
	var cancel context.CancelFunc
	if o.Timeout > 0 {
		bootCtx, cancel = context.WithTimeoutCause(ctx, o.Timeout, fmt.Errorf("%w after %v", ErrTimeout, o.Timeout))
		defer cancel()
	}
	vm, err := agentvm.Boot(bootCtx, agentvm.Options{
		Kernel:     o.Kernel,
		Hypervisor: hv,
		CPUs:       o.CPUs,
		MemoryMiB:  mem,
		Net:        o.Net,
		Console:    console,
		Logger:     log,
		FS: []vmm.FS{{Tag: StoreTag, NewFS: func(ctx context.Context) (fuse.RawFileSystem, error) {
			return castorfs.New(roots, st.Directories, st.Blobs, castorfs.Options{ListRoot: o.ListRoot, Logger: log})
		}}},
	})
	if err != nil {
		return timeoutOr(bootCtx, 1, err)
	}
	defer vm.Close()
	log.Debug("vm run: agent ready", "after", vm.Timings.AgentReady)
	s := Setup()
	s.Net = o.Net
	if err := vm.Setup(bootCtx, s); err != nil {
		return timeoutOr(bootCtx, 1, err)
	}
	env := []string{"PATH=/bin", "HOME=/build", "TMPDIR=/tmp", "TERM=dumb"}
	env = append(env, o.Env...)
	ex, err := vm.Run(bootCtx, &agent.Run{Command: argv, Env: env, Dir: "/build", UID: UID, GID: GID}, stdout, stderr)
	if err != nil {
		return timeoutOr(bootCtx, 1, err)
	}
	if ex.Error != "" {
		fmt.Fprintf(stderr, "castor: vm run: %s: %s\n", argv[0], ex.Error)
	}
	if err := vm.Shutdown(bootCtx); err != nil {
		log.Warn("vm run: the VM did not power off cleanly", "err", err)
	}
	if ex.Signal != "" {
		if sig := unix.SignalNum(ex.Signal); sig != 0 {
			return 128 + int(sig), nil
		}
		return 128, nil
	}
	return ex.Code, nil
}

// timeoutOr turns an error caused by the timeout into ErrTimeout (status
// 124), and one caused by an interruption (^C) into that (status 130).
func timeoutOr(ctx context.Context, code int, err error) (int, error) {
	if cause := context.Cause(ctx); cause != nil {
		if errors.Is(cause, ErrTimeout) {
			return 124, fmt.Errorf("vm run: %w: the VM was killed", cause)
		}
		return 130, fmt.Errorf("vm run: interrupted (%v): the VM was killed", cause)
	}
	return code, fmt.Errorf("vm run: %w", err)
}
