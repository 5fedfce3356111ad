package realisecmd

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/spf13/pflag"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/builder/microvm"
	"github.com/castor-nix/castor/builder/sandbox"
	"github.com/castor-nix/castor/vmm"
	"github.com/castor-nix/castor/vmm/vmcmd"
)

// The builders `castor realise --builder` knows.
const (
	BuilderSandbox = "sandbox"
	BuilderMicroVM = "microvm"
)

// ConfigFile is the name of a store's configuration file, in the store's
// directory.
const ConfigFile = "castor.toml"

// StoreConfig is the part of a store's configuration file that the
// builder commands read:
//
//	[build]
//	builder = "microvm"   # or "sandbox", the default
type StoreConfig struct {
	Build struct {
		Builder string `toml:"builder"`
	} `toml:"build"`
}

// ReadStoreConfig reads dir/castor.toml; a store without one has the
// defaults. A key castor does not know is an error (a typo should not
// silently build elsewhere), as is an unknown builder.
func ReadStoreConfig(dir string) (StoreConfig, error) {
	var c StoreConfig
	p := filepath.Join(dir, ConfigFile)
	md, err := toml.DecodeFile(p, &c)
	if errors.Is(err, fs.ErrNotExist) {
		return StoreConfig{}, nil
	}
	if err != nil {
		return StoreConfig{}, fmt.Errorf("store configuration %s: %w", p, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return StoreConfig{}, fmt.Errorf("store configuration %s: unknown key %s", p, und[0])
	}
	switch c.Build.Builder {
	case "", BuilderSandbox, BuilderMicroVM:
	default:
		return StoreConfig{}, fmt.Errorf("store configuration %s: [build] builder = %q: want %q or %q", p, c.Build.Builder, BuilderSandbox, BuilderMicroVM)
	}
	return c, nil
}

// BuilderOptions choose and configure the executor of `castor realise`.
type BuilderOptions struct {
	// Builder is "sandbox" or "microvm"; empty takes the store's
	// configured default, then "sandbox".
	Builder string
	// Micro-VM builds: the hypervisor ("" automatic), CPUs, memory and
	// scratch space per VM ("1G"; empty for the executor's defaults), and
	// a kernel other than Debian's cloud kernel.
	Hypervisor string
	VMCPUs     int
	VMMemory   string
	VMScratch  string
	Kernel     string
}

func addBuilderFlags(f *pflag.FlagSet, o *BuilderOptions) {
	f.StringVar(&o.Builder, "builder", "", "where builds run: sandbox or microvm (default: the store's castor.toml [build] builder, else sandbox)")
	f.StringVar(&o.Hypervisor, "hypervisor", "", "micro-VM builds: qemu or cloud-hypervisor (default: Cloud Hypervisor when KVM works and it is installed, else QEMU)")
	f.IntVar(&o.VMCPUs, "vm-cpus", 0, "micro-VM builds: CPUs per VM (default 1; a derivation's castorVmCpus overrides)")
	f.StringVar(&o.VMMemory, "vm-memory", "", "micro-VM builds: memory per VM (default 1G; a derivation's castorVmMemory overrides)")
	f.StringVar(&o.VMScratch, "vm-scratch", "", "micro-VM builds: how much a build may write, outputs included (default: half the memory)")
	f.StringVar(&o.Kernel, "kernel", "", "micro-VM builds: the kernel to boot (default: Debian's cloud kernel in /boot)")
}

// newExecutor makes the builder that opts, or else the store's
// configuration, names.
func newExecutor(st Store, bo BuilderOptions, so sandbox.Options) (builder.Executor, error) {
	name := bo.Builder
	if name == "" {
		name = st.Config.Build.Builder
	}
	if name == "" {
		name = BuilderSandbox
	}
	switch name {
	case BuilderSandbox:
		return sandbox.New(so)
	case BuilderMicroVM:
		hv, err := vmm.ParseHypervisor(bo.Hypervisor)
		if err != nil {
			return nil, err
		}
		mo := microvm.Options{Directories: st.Directories, Blobs: st.Blobs, Hypervisor: hv, CPUs: bo.VMCPUs, Kernel: bo.Kernel}
		if bo.VMMemory != "" {
			if mo.MemoryMiB, err = vmcmd.ParseMemory(bo.VMMemory); err != nil {
				return nil, fmt.Errorf("--vm-memory: %w", err)
			}
		}
		if bo.VMScratch != "" {
			if mo.ScratchMiB, err = parseScratch(bo.VMScratch); err != nil {
				return nil, fmt.Errorf("--vm-scratch: %w", err)
			}
		}
		return microvm.New(mo)
	}
	return nil, fmt.Errorf("--builder %q: want %q or %q", name, BuilderSandbox, BuilderMicroVM)
}

// parseScratch parses a scratch size like a memory size, but from 1M.
func parseScratch(s string) (int, error) {
	if n, err := vmcmd.ParseMemory(s); err == nil {
		return n, nil
	}
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "IB"), "B")
	v, err := strconv.Atoi(strings.TrimSuffix(t, "M"))
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q: want a size (64M, 1G)", s)
	}
	return v, nil
}
