package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// AgentPackage is the guest agent's main package, relative to the module
// root.
const AgentPackage = "./images/agent/castor-agent"

// AgentEnv names a prebuilt guest agent binary to use instead of building
// one (for installations without the Go toolchain or castor's source).
const AgentEnv = "CASTOR_AGENT"

// ErrNoAgent is wrapped when no guest agent can be found or built.
var ErrNoAgent = errors.New("no guest agent")

var agentMu sync.Mutex

// BuildAgent returns the path of castor's guest agent, a static binary
// for the guest's /init: the file $CASTOR_AGENT names, else a
// castor-agent next to the running executable, else one built with `go
// build` (CGO_ENABLED=0, -trimpath) from castor's source. A built agent
// is cached in cacheDir under a key naming the running executable (path,
// size, modification time) and the source directory, so each castor
// binary builds its agent once and later calls cost a stat; the agent's
// bytes then key the initramfs (Build caches by content digest).
func BuildAgent(ctx context.Context, cacheDir string) (string, error) {
	if p := os.Getenv(AgentEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: $%s: %v", ErrNoAgent, AgentEnv, err)
		}
		return p, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoAgent, err)
	}
	if p := filepath.Join(filepath.Dir(exe), "castor-agent"); isFile(p) {
		return p, nil
	}
	src, err := sourceRoot()
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(exe)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoAgent, err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00agent\x00%s\x00%d\x00%d\x00%s\x00%s", formatVersion, exe, fi.Size(), fi.ModTime().UnixNano(), src, runtime.Version())
	key := hex.EncodeToString(h.Sum(nil))[:32]
	out := filepath.Join(cacheDir, "agent-"+key, "castor-agent")
	agentMu.Lock()
	defer agentMu.Unlock()
	if isFile(out) {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), ".build-*")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", tmp.Name(), AgentPackage)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: building %s in %s: %v: %s", ErrNoAgent, AgentPackage, src, err, strings.TrimSpace(stderr.String()))
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	pruneAgents(cacheDir, keepAgents)
	return out, nil
}

// keepAgents is how many built agents the cache keeps (one per castor
// binary that ran; the oldest go, but none built in the last hour, which
// another castor may be about to read).
const keepAgents = 4

// pruneAgents removes all but the keep most recently built agents, and
// none younger than an hour.
func pruneAgents(cacheDir string, keep int) {
	dirs, _ := filepath.Glob(filepath.Join(cacheDir, "agent-*"))
	type aged struct {
		dir string
		t   int64
	}
	var all []aged
	for _, d := range dirs {
		if fi, err := os.Stat(filepath.Join(d, "castor-agent")); err == nil {
			all = append(all, aged{d, fi.ModTime().UnixNano()})
		}
	}
	if len(all) <= keep {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i].t > all[j].t })
	cutoff := time.Now().Add(-time.Hour).UnixNano()
	for _, a := range all[keep:] {
		if a.t < cutoff {
			os.RemoveAll(a.dir)
		}
	}
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// sourceRoot finds castor's module root: where this file was compiled
// from (development builds, tests), else the module of the working
// directory if it is castor.
func sourceRoot() (string, error) {
	var candidates []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		candidates = append(candidates, filepath.Dir(filepath.Dir(file)))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			candidates = append(candidates, d)
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, d := range candidates {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/castor-nix/castor\n")) {
			if _, err := exec.LookPath("go"); err != nil {
				return "", fmt.Errorf("%w: castor's source is at %s but the Go toolchain is not on PATH; build the agent with `CGO_ENABLED=0 go build -o castor-agent %s` and set $%s", ErrNoAgent, d, AgentPackage, AgentEnv)
			}
			return d, nil
		}
	}
	return "", fmt.Errorf("%w: castor's source is not around and $%s is unset; build it with `CGO_ENABLED=0 go build -o castor-agent %s` in castor's source and put it next to castor or name it in $%s", ErrNoAgent, AgentEnv, AgentPackage, AgentEnv)
}

// AgentModules are the modules the agent's guests load: GuestModules and
// virtio-net for builds that may use the network.
var AgentModules = append(append([]string(nil), GuestModules...), "virtio_net")

// AgentSpec returns the spec of a VM image whose /init is the agent at
// agentPath: Debian's cloud kernel (or kernel, when not empty) with the
// modules the agent loads (AgentModules), and static busybox for builds
// that want /bin/sh.
func AgentSpec(agentPath, kernel string) (Spec, error) {
	agent, err := os.ReadFile(agentPath)
	if err != nil {
		return Spec{}, fmt.Errorf("%w: %v", ErrNoAgent, err)
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return Spec{}, fmt.Errorf("images: static busybox not found (install busybox-static): %w", err)
	}
	spec := Spec{Init: agent, Busybox: bb, StripModuleSignatures: true}
	if kernel == "" {
		k, rel, err := DebianKernel()
		if err != nil {
			return Spec{}, fmt.Errorf("images: %w", err)
		}
		spec.Kernel, spec.ModulesDir, spec.Modules = k, filepath.Join("/lib/modules", rel), AgentModules
	} else {
		spec.Kernel = kernel
		spec.ModulesDir, spec.Modules = modulesFor(kernel)
	}
	return spec, nil
}

// modulesFor guesses the module tree of a kernel given by path: the one
// matching its vmlinuz-<release> name, if present. A kernel with the
// drivers built in needs none.
func modulesFor(kernel string) (string, []string) {
	base := filepath.Base(kernel)
	for _, prefix := range []string{"vmlinuz-", "vmlinux-"} {
		if rel, ok := strings.CutPrefix(base, prefix); ok {
			d := filepath.Join("/lib/modules", rel)
			if isFile(filepath.Join(d, "modules.dep")) {
				return d, AgentModules
			}
		}
	}
	return "", nil
}

// AgentImage builds (or finds cached) the boot files of an agent VM:
// BuildAgent, then Build with AgentSpec. kernel overrides Debian's cloud
// kernel when not empty.
//
// Build hashes every input's contents (some 15 MB: tens of milliseconds,
// on every VM's start). In front of it, an index keyed by the inputs'
// paths, sizes and modification times (agent, kernel, busybox, the module
// tree's modules.dep) remembers what Build returned, so an unchanged
// installation costs a few stats; any change goes through Build again.
func AgentImage(ctx context.Context, cacheDir, kernel string) (*Image, error) {
	agent, err := BuildAgent(ctx, cacheDir)
	if err != nil {
		return nil, err
	}
	index := agentIndexPath(cacheDir, agent, kernel)
	if index != "" {
		if b, err := os.ReadFile(index); err == nil {
			var img Image
			if json.Unmarshal(b, &img) == nil && isFile(img.Kernel) && isFile(img.Initramfs) {
				return &img, nil
			}
		}
	}
	spec, err := AgentSpec(agent, kernel)
	if err != nil {
		return nil, err
	}
	img, err := Build(ctx, cacheDir, spec)
	if err != nil {
		return nil, err
	}
	if index != "" {
		if b, err := json.Marshal(img); err == nil {
			writeAtomic(index, b, 0o644)
		}
	}
	return img, nil
}

// agentIndexPath names the index entry for the inputs AgentSpec would
// read, from their metadata; "" when one cannot be stat'ed (Build then
// reports the problem).
func agentIndexPath(cacheDir, agent, kernel string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00agent-index\x00%q\x00", formatVersion, AgentModules)
	files := []string{agent}
	if kernel == "" {
		k, rel, err := DebianKernel()
		if err != nil {
			return ""
		}
		files = append(files, k, filepath.Join("/lib/modules", rel, "modules.dep"))
	} else {
		files = append(files, kernel)
		if d, _ := modulesFor(kernel); d != "" {
			files = append(files, filepath.Join(d, "modules.dep"))
		}
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return ""
	}
	files = append(files, bb)
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return ""
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return filepath.Join(cacheDir, "index", hex.EncodeToString(h.Sum(nil))[:32]+".json")
}

// DefaultCacheDir is where images are cached: $XDG_CACHE_HOME/castor/images
// (~/.cache/castor/images).
func DefaultCacheDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "castor", "images")
}
