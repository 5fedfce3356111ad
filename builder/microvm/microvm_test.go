package microvm_test

import (
	"bytes"
	"context"
	"fmt"
	"github.com/castor-nix/castor/builder/buildertest"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/builder/microvm"
	"github.com/castor-nix/castor/builder/sandbox"
	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/images"
	"github.com/castor-nix/castor/images/imagestest"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/memory"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var (
	imgOnce sync.Once
	img     *images.Image
	imgErr  error
)

// agentImage builds the agent image once per test binary, skipping
// without QEMU, the kernel or busybox.
func agentImage(t testing.TB) *images.Image {
	t.Helper()
	testenv.RequireBinary(t, "qemu-system-x86_64")
	testenv.RequireBinary(t, "busybox")
	if _, _, err := images.DebianKernel(); err != nil {
		t.Skipf("needs Debian's cloud kernel (install linux-image-cloud-amd64; .ci/run does): %v", err)
	}
	imgOnce.Do(func() { img, imgErr = images.AgentImage(context.Background(), imagestest.CacheDir(), "") })
	if imgErr != nil {
		t.Fatal(imgErr)
	}
	return img
}

type env struct {
	blobs *memory.BlobService
	dirs  *memory.DirectoryService
	exec  *microvm.Executor
}

func newEnv(t testing.TB, mod func(*microvm.Options)) *env {
	t.Helper()
	e := &env{blobs: memory.NewBlobService(), dirs: memory.NewDirectoryService()}
	opts := microvm.Options{Directories: e.dirs, Blobs: e.blobs, Image: agentImage(t), MemoryMiB: 512, Logger: quiet}
	if mod != nil {
		mod(&opts)
	}
	x, err := microvm.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.exec = x
	return e
}

const (
	outName   = "3397qmq3n19sjnh2wjg8avv536284bys-out"
	bbName    = buildertest.BusyboxName
	dataName  = buildertest.DataName
	linkName  = "2wq5cv0y6xd4pd9rxhv1i4i7jdmfm1xk-link"
	otherName = buildertest.OtherName
)

// shBuild is a build running a shell script with one output, $out.
func shBuild(script string, env ...builder.EnvVar) *builder.Build {
	b := &builder.Build{
		InputsDir:    "nix/store",
		Command:      []string{"/bin/sh", "-c", script},
		WorkingDir:   "build",
		ScratchPaths: []string{"build", "nix/store"},
		Outputs:      []string{"nix/store/" + outName},
		Constraints:  builder.Constraints{System: sandbox.HostSystem(), ProvideBinSh: true},
	}
	b.Env = append([]builder.EnvVar{
		{Key: "HOME", Value: "/homeless-shelter"},
		{Key: "PATH", Value: "/path-not-set"},
		{Key: "out", Value: "/nix/store/" + outName},
	}, env...)
	slices.SortFunc(b.Env, func(a, b builder.EnvVar) int { return strings.Compare(a.Key, b.Key) })
	return b
}

// inputs makes the shared busybox and data input trees plus a symlink
// into the data tree.
func (e *env) inputs(t *testing.T) []castore.NamedNode {
	return append(buildertest.Inputs(t, e.blobs, e.dirs),
		castore.NamedNode{Name: linkName, Node: castore.Node{Kind: castore.KindSymlink, Target: "/nix/store/" + dataName + "/file"}})
}

func narOf(t *testing.T, outs builder.Outputs, i int) []byte { return buildertest.NAROf(t, outs, i) }

func narFiles(t *testing.T, data []byte) map[string]string { return buildertest.NARFiles(t, data) }

// probe runs script as a build with the test inputs and returns the
// contents of the files it wrote in $out (a directory).
func (e *env) probe(t *testing.T, script string, network bool, env ...builder.EnvVar) (map[string]string, *builder.Build) {
	t.Helper()
	b := shBuild("set -u; mkdir $out; "+script, env...)
	b.Command[0] = "/nix/store/" + bbName + "/bin/sh"
	b.Inputs = e.inputs(t)
	b.Constraints.NetworkAccess = network
	b.Constraints.ProvideBinSh = false
	var log bytes.Buffer
	outs, err := e.exec.Run(context.Background(), b, &log)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	defer outs.Close()
	res := map[string]string{}
	for p, v := range narFiles(t, narOf(t, outs, 0)) {
		if k, ok := strings.CutPrefix(v, "regular:"); ok {
			res[strings.TrimPrefix(p, "/")] = strings.TrimSpace(k)
		}
	}
	return res, b
}

func sortedNames(names ...string) []string {
	sort.Strings(names)
	return names
}

// TestIsolation runs one build that probes its VM (sized by the
// derivation's castorVmCpus and castorVmMemory): it sees exactly its
// inputs in /nix/store (a store path of the castore that is not an input
// is absent), cannot modify them (not even by unmounting or as the owner
// of the tree), runs as uid 1000 in /build with exactly the Build's
// environment, has the sandbox's /, /dev and /etc, and no network
// interface but loopback.
func TestIsolation(t *testing.T) {
	e := newEnv(t, nil)
	store := "/nix/store/"
	res, b := e.probe(t, strings.Join([]string{
		`env | sort > $out/env; pwd > $out/cwd`,
		`cd $out`,
		`ls -a / > root`,
		`ls -a /nix/store > store`,
		`ls /dev > dev`,
		`ls /etc > etc`,
		`cat /etc/passwd > passwd`,
		`cat ` + store + otherName + `/secret > other 2>&1; echo $? > other.rc`,
		`cat ` + store + dataName + `/file > data`,
		`cat ` + store + linkName + ` > via-link`,
		`echo x > ` + store + dataName + `/file 2>/dev/null; echo $? > write.rc`,
		`touch ` + store + dataName + `/new 2>/dev/null; echo $? > create.rc`,
		`chmod 777 ` + store + dataName + `/file 2>/dev/null; echo $? > chmod.rc`,
		`rm -f ` + store + dataName + `/file 2>/dev/null; echo $? > rm.rc`,
		`rm -rf ` + store + dataName + ` 2>/dev/null; echo $? > rmdir.rc`,
		`mv ` + store + bbName + ` /build/x 2>/dev/null; echo $? > mv.rc`,
		`mount -t tmpfs none /build 2>/dev/null; echo $? > mount.rc`,
		`umount ` + store + dataName + ` 2>/dev/null; echo $? > umount.rc`,
		`cat ` + store + dataName + `/file > data.after`,
		`id -u > uid; id -g > gid`,
		`stat -c %U:%G ` + store + dataName + `/file > input.owner`,
		`stat -c %U:%G /build > build.owner`,
		`hostname > hostname`,
		`(cd /build; pwd) > pwd`,
		`cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ' ' > interfaces`,
		`ls /sys 2>/dev/null | wc -l > sys`,
		`nproc > cpus`,
		`sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo > memkb`,
	}, "\n"), false, builder.EnvVar{Key: microvm.AttrCPUs, Value: "2"}, builder.EnvVar{Key: microvm.AttrMemory, Value: "384M"})

	want := map[string]string{
		"store":       strings.Join(sortedNames(bbName, dataName, linkName, outName, ".", ".."), "\n"),
		"other.rc":    "1",
		"data":        "input data",
		"via-link":    "input data",
		"data.after":  "input data",
		"write.rc":    "1",
		"create.rc":   "1",
		"chmod.rc":    "1",
		"rm.rc":       "1",
		"rmdir.rc":    "1",
		"mv.rc":       "1",
		"uid":         "1000",
		"gid":         "100",
		"input.owner": "root:root",
		"build.owner": "nixbld:nixbld",
		"hostname":    "localhost",
		"pwd":         "/build",
		"cwd":         "/build",
		"etc":         "group\nhosts\npasswd",
		"interfaces":  "lo",
		"sys":         "0",
		"cpus":        "2", // castorVmCpus
	}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s = %q, want %q", k, res[k], v)
		}
	}
	// castorVmMemory: 384 MiB, less what the kernel keeps for itself.
	if kb, _ := strconv.Atoi(res["memkb"]); kb < 300<<10 || kb > 384<<10 {
		t.Errorf("MemTotal %s kB, want a 384 MiB VM's", res["memkb"])
	}
	if got := strings.Fields(res["root"]); !slices.Equal(got, []string{".", "..", "build", "dev", "etc", "nix", "proc", "tmp"}) {
		t.Errorf("/ holds %v", got)
	}
	if got := strings.Fields(res["dev"]); !slices.Equal(got, []string{"fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"}) {
		t.Errorf("/dev holds %v", got)
	}
	for _, k := range []string{"mount.rc", "umount.rc"} {
		if res[k] == "0" || res[k] == "" {
			t.Errorf("%s = %q, want failure", k, res[k])
		}
	}
	if strings.Contains(res["other"], "not for this build") {
		t.Errorf("read a store path that is not an input: %q", res["other"])
	}
	var wantEnv []string
	for _, v := range b.Env {
		wantEnv = append(wantEnv, v.Key+"="+v.Value)
	}
	wantEnv = append(wantEnv, "SHLVL=1", "PWD=/build")
	slices.Sort(wantEnv)
	if got := strings.Split(res["env"], "\n"); !slices.Equal(got, wantEnv) {
		t.Errorf("environment\n%q\nwant\n%q", got, wantEnv)
	}
}

// TestNetwork: a build without network access cannot reach a server on
// the host; one with it (fixed-output) reaches it through user-mode
// networking (the host's loopback is 10.0.2.2 in the guest).
func TestNetwork(t *testing.T) {
	e := newEnv(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "reached the host") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	// busybox nc, not wget: Debian's static busybox wget dereferences a
	// null pointer in the guest (whatever the CPU model or /etc holds).
	script := `cd $out; printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 10.0.2.2 ` + fmt.Sprint(ln.Addr().(*net.TCPAddr).Port) + ` > reply 2>err; echo $? > rc; tail -n 1 reply > body; cat /etc/hosts > hosts; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort | tr '\n' ' ' > interfaces`

	res, _ := e.probe(t, script, false)
	if res["rc"] == "0" || strings.Contains(res["body"], "reached") {
		t.Errorf("a build without network reached the host: rc %s, body %q", res["rc"], res["body"])
	}
	if res["interfaces"] != "lo" {
		t.Errorf("interfaces without network: %q", res["interfaces"])
	}
	res, _ = e.probe(t, script, true)
	if res["rc"] != "0" || res["body"] != "reached the host" {
		t.Errorf("a fixed-output build could not reach the host: rc %s, body %q, err %q", res["rc"], res["body"], res["err"])
	}
	if res["interfaces"] != "eth0 lo" {
		t.Errorf("interfaces with network: %q", res["interfaces"])
	}
}
