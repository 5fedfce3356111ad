package sandbox_test

import (
	"bytes"
	"context"
	"fmt"
	"github.com/castor-nix/castor/builder/buildertest"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/store/castore"
)

const (
	bbName    = buildertest.BusyboxName
	dataName  = buildertest.DataName
	otherName = buildertest.OtherName
)

// probe runs script as a build with the test inputs and returns the
// contents of the files it wrote in $out (a directory).
func (e *env) probe(t *testing.T, script string, network bool) (map[string]string, *builder.Build) {
	t.Helper()
	b := shBuild("set -u; mkdir $out; " + script)
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

func TestHermeticFilesystem(t *testing.T) {
	e := newEnv(t, nil)
	secret := filepath.Join(t.TempDir(), "host-secret")
	os.WriteFile(secret, []byte("host secret"), 0o644)
	store := "/nix/store/"
	res, _ := e.probe(t, strings.Join([]string{
		`cd $out`,
		`ls -a / > root`,
		`ls -a /nix/store > store`,
		`ls /dev > dev`,
		`ls /etc > etc`,
		`cat /etc/passwd > passwd`,
		`cat ` + secret + ` > secret 2>&1; echo $? > secret.rc`,
		`cat ` + store + otherName + `/secret > other 2>&1; echo $? > other.rc`,
		`cat ` + store + dataName + `/file > data`,
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
		`cat /proc/$$/cwd 2>/dev/null; readlink /proc/1/cwd > helper.cwd 2>&1; echo $? > helper.cwd.rc`,
		`ps -o pid,comm | wc -l > nprocs`,
		`cat /proc/self/uid_map | tr -s ' ' > uid_map`,
	}, "\n"), false)

	want := map[string]string{
		"store":       strings.Join(sortedNames(bbName, dataName, outName, ".", ".."), "\n"),
		"secret.rc":   "1",
		"other.rc":    "1",
		"data":        "input data",
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
		"etc":         "group\nhosts\npasswd",
	}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s = %q, want %q", k, res[k], v)
		}
	}
	if got := strings.Fields(res["root"]); !slices.Equal(got, []string{".", "..", "bin", "build", "dev", "etc", "nix", "proc", "tmp"}) &&
		!slices.Equal(got, []string{".", "..", "build", "dev", "etc", "nix", "proc", "tmp"}) {
		t.Errorf("/ holds %v", got)
	}
	if got := strings.Fields(res["dev"]); !slices.Equal(got, []string{"fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero"}) {
		t.Errorf("/dev holds %v", got)
	}
	for _, k := range []string{"mount.rc", "umount.rc", "helper.cwd.rc"} {
		if res[k] == "0" || res[k] == "" {
			t.Errorf("%s = %q, want failure", k, res[k])
		}
	}
	if strings.Contains(res["secret"], "host secret") || strings.Contains(res["other"], "not for this build") {
		t.Errorf("read what it should not: %q %q", res["secret"], res["other"])
	}
	// The helper, the shell, ps and wc (and the header line).
	if res["nprocs"] != "5" {
		t.Errorf("processes visible: %s lines of ps", res["nprocs"])
	}
	if !strings.Contains(res["uid_map"], "1000 65534 1") {
		t.Errorf("uid_map %q", res["uid_map"])
	}
}

func sortedNames(names ...string) []string {
	sort.Strings(names)
	return names
}

// TestEnvironmentExact checks that the builder sees exactly the Build's
// environment, nothing from castor's.
func TestEnvironmentExact(t *testing.T) {
	e := newEnv(t, nil)
	t.Setenv("CASTOR_LEAK_CHECK", "leaked")
	res, b := e.probe(t, `cd /build; env > $out/env`, false)
	got := strings.Split(res["env"], "\n")
	var want []string
	for _, v := range b.Env {
		want = append(want, v.Key+"="+v.Value)
	}
	// The shell adds SHLVL and keeps PWD.
	want = append(want, "SHLVL=1", "PWD=/build", "OLDPWD=/build")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("environment\n%q\nwant\n%q", got, want)
	}
}

// TestNetwork checks that a build without network access cannot reach a
// server on the host's loopback, and one with it (fixed-output) can.
func TestNetwork(t *testing.T) {
	e := newEnv(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "reached the host") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/"
	script := `cd $out; wget -q -O body ` + url + ` 2>err; echo $? > rc; ip -o link 2>/dev/null | wc -l > links; cat /etc/hosts > hosts`

	res, _ := e.probe(t, script, false)
	if res["rc"] == "0" || strings.Contains(res["body"], "reached") {
		t.Errorf("sandboxed build reached the host: rc %s, body %q", res["rc"], res["body"])
	}
	if res["hosts"] != "127.0.0.1 localhost\n::1 localhost" {
		t.Errorf("/etc/hosts %q", res["hosts"])
	}
	res, _ = e.probe(t, script, true)
	if res["rc"] != "0" || res["body"] != "reached the host" {
		t.Errorf("fixed-output build could not reach the host: rc %s, body %q, err %q", res["rc"], res["body"], res["err"])
	}
}

// inputs makes the shared busybox and data input trees.
func (e *env) inputs(t *testing.T) []castore.NamedNode {
	return buildertest.Inputs(t, e.blobs, e.dirs)
}
