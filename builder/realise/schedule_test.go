package realise_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/builder/realise"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/castoretest"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/derivation"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/pathinfo"
	pimemory "github.com/castor-nix/castor/store/pathinfo/memory"
)

// fakeExecutor "builds" by writing each output as a file naming the
// derivation, records which builds overlap, and fails builds whose
// command says so.
type fakeExecutor struct {
	t       *testing.T
	jobs    int
	mu      sync.Mutex
	running int
	max     int
	order   []string
	second  chan struct{} // closed when two builds run at once
	once    sync.Once
}

func (f *fakeExecutor) Run(ctx context.Context, b *builder.Build, log io.Writer) (builder.Outputs, error) {
	name := b.Command[len(b.Command)-1]
	f.mu.Lock()
	f.running++
	f.max = max(f.max, f.running)
	if f.running >= 2 {
		f.once.Do(func() { close(f.second) })
	}
	f.order = append(f.order, name)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running--
		f.mu.Unlock()
	}()
	if f.jobs > 1 {
		// Wait (bounded) for a second build to overlap with this one.
		select {
		case <-f.second:
		case <-time.After(10 * time.Second):
		}
	}
	io.WriteString(log, "building "+name+"\n")
	if strings.HasPrefix(name, "fail") {
		return nil, &builder.ExitError{Code: 1}
	}
	root := f.t.TempDir()
	for _, o := range b.Outputs {
		p := filepath.Join(root, o)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(name), 0o644)
	}
	return &builder.DirOutputs{Root: root, Paths: b.Outputs}, nil
}

// addDrv writes a derivation into the store as Nix would (a text path).
func addDrv(t *testing.T, st realise.Store, name string, deps ...string) string {
	t.Helper()
	ctx := context.Background()
	d := &derivation.Derivation{
		Name:             name,
		Outputs:          map[string]derivation.Output{"out": {}},
		InputDerivations: map[string][]string{},
		System:           "x86_64-linux",
		Builder:          "/bin/sh",
		Args:             []string{"-c", name},
		Env:              map[string]string{"name": name, "out": "", "builder": "/bin/sh", "system": "x86_64-linux"},
	}
	for _, dep := range deps {
		d.InputDerivations[dep] = []string{"out"}
	}
	h := derivation.NewHasher(&derivation.Store{PathInfos: st.PathInfos, Blobs: st.Blobs})
	if err := h.FillOutputPaths(ctx, d); err != nil {
		t.Fatal(err)
	}
	p, err := d.Path()
	if err != nil {
		t.Fatal(err)
	}
	data := d.Bytes()
	dg := castoretest.PutBlob(t, st.Blobs, data)
	var narBuf bytes.Buffer
	w := nar.NewWriter(&narBuf)
	w.WriteHeader(&nar.Header{Path: "/", Type: nar.TypeRegular, Size: int64(len(data))})
	w.Write(data)
	w.Close()
	refs, _ := d.References()
	info := &pathinfo.PathInfo{StorePath: p, Node: castore.Node{Kind: castore.KindFile, Digest: dg, Size: uint64(len(data))},
		References: refs, NarSize: uint64(narBuf.Len()), NarSHA256: sha256.Sum256(narBuf.Bytes())}
	if _, err := st.PathInfos.Put(ctx, info); err != nil {
		t.Fatal(err)
	}
	return p.Absolute()
}

func newMemStore() realise.Store {
	return realise.Store{Blobs: memory.NewBlobService(), Directories: memory.NewDirectoryService(), PathInfos: pimemory.New()}
}

// TestSchedule checks dependency order, the -j bound and that two
// independent builds do run at once.
func TestSchedule(t *testing.T) {
	st := newMemStore()
	a := addDrv(t, st, "a")
	b := addDrv(t, st, "b")
	c := addDrv(t, st, "c")
	d := addDrv(t, st, "d", a, b)
	e := addDrv(t, st, "e", d, c)
	x := &fakeExecutor{t: t, jobs: 2, second: make(chan struct{})}
	var out bytes.Buffer
	r := realise.New(st, realise.Options{Executor: x, Jobs: 2, Output: &out})
	res, err := r.Realise(context.Background(), []string{e})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || !res[0].Built {
		t.Fatalf("results %+v", res)
	}
	if x.max != 2 {
		t.Errorf("at most %d builds ran at once, want 2 (-j 2)", x.max)
	}
	pos := map[string]int{}
	for i, n := range x.order {
		pos[n] = i
	}
	if len(x.order) != 5 || pos["d"] < pos["a"] || pos["d"] < pos["b"] || pos["e"] < pos["d"] || pos["e"] < pos["c"] {
		t.Errorf("build order %v", x.order)
	}
	for _, want := range []string{"d> building d\n", "[5 done, 0 running, 0 left] built '" + e + "'"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	// -j 1 never overlaps.
	st = newMemStore()
	top := addDrv(t, st, "top", addDrv(t, st, "p"), addDrv(t, st, "q"), addDrv(t, st, "s"))
	x = &fakeExecutor{t: t, jobs: 1, second: make(chan struct{})}
	if _, err := realise.New(st, realise.Options{Executor: x, Jobs: 1}).Realise(context.Background(), []string{top}); err != nil {
		t.Fatal(err)
	}
	if x.max != 1 || len(x.order) != 4 {
		t.Errorf("-j 1: %d at once, order %v", x.max, x.order)
	}
}

func TestStopAfterFailure(t *testing.T) {
	st := newMemStore()
	f := addDrv(t, st, "fail-first")
	later := addDrv(t, st, "later")
	dep := addDrv(t, st, "dep", f)
	x := &fakeExecutor{t: t, jobs: 1, second: make(chan struct{})}
	// Sorted by .drv path the order of the independent builds is fixed but
	// arbitrary; ask for the failing one alone first.
	_, err := realise.New(st, realise.Options{Executor: x, Jobs: 1}).Realise(context.Background(), []string{dep, later})
	if !errors.Is(err, realise.ErrDependencyFailed) {
		t.Fatalf("error %v", err)
	}
	for _, n := range x.order {
		if n == "dep" {
			t.Error("built a dependent of a failed build")
		}
	}
	x2 := &fakeExecutor{t: t, jobs: 1, second: make(chan struct{})}
	_, err = realise.New(st, realise.Options{Executor: x2, Jobs: 1, KeepGoing: true}).Realise(context.Background(), []string{dep, later})
	if err == nil || len(x2.order) != 2 {
		t.Errorf("keep-going: %v, built %v", err, x2.order)
	}
}
