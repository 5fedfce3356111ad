package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"github.com/castor-nix/castor/builder/buildertest"
	"strings"
	"sync"
	"testing"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/builder/sandbox"
	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/castore/memory"
)

type env struct {
	blobs *memory.BlobService
	dirs  *memory.DirectoryService
	exec  *sandbox.Executor
}

func newEnv(t testing.TB, mod func(*sandbox.Options)) *env {
	t.Helper()
	testenv.RequireFUSE(t)
	testenv.RequireBinary(t, "busybox")
	e := &env{blobs: memory.NewBlobService(), dirs: memory.NewDirectoryService()}
	opts := sandbox.Options{Directories: e.dirs, Blobs: e.blobs, ScratchDir: t.TempDir()}
	if mod != nil {
		mod(&opts)
	}
	x, err := sandbox.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.exec = x
	return e
}

const outName = "3397qmq3n19sjnh2wjg8avv536284bys-out"

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
	return b
}

func TestHello(t *testing.T) {
	e := newEnv(t, nil)
	var log bytes.Buffer
	outs, err := e.exec.Run(context.Background(), shBuild(`echo building; mkdir $out; echo hello > $out/f; echo to stderr >&2`), &log)
	if err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	defer outs.Close()
	if !strings.Contains(log.String(), "building") || !strings.Contains(log.String(), "to stderr") {
		t.Errorf("log %q", log.String())
	}
	files := narFiles(t, narOf(t, outs, 0))
	if files["/f"] != "regular:hello\n" {
		t.Errorf("output %v", files)
	}
}

func TestFailure(t *testing.T) {
	e := newEnv(t, nil)
	var log bytes.Buffer
	_, err := e.exec.Run(context.Background(), shBuild(`echo about to fail; exit 3`), &log)
	var ee *builder.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 {
		t.Fatalf("error %v, want exit code 3", err)
	}
	if !strings.Contains(log.String(), "about to fail") {
		t.Errorf("log %q", log.String())
	}
	_, err = e.exec.Run(context.Background(), shBuild(`kill -9 $$`), &log)
	if !errors.As(err, &ee) || ee.Signal != "SIGKILL" {
		t.Fatalf("error %v, want SIGKILL", err)
	}
}

// syncWriter lets a test read a log while a build writes it.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

func narOf(t *testing.T, outs builder.Outputs, i int) []byte { return buildertest.NAROf(t, outs, i) }

func narFiles(t *testing.T, data []byte) map[string]string { return buildertest.NARFiles(t, data) }
