package fs_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/fs/fstest"
)

// Many readers over many files at once, sequential and random, through the
// kernel: every byte must be right, with and without the filesystem's own
// read-ahead. Run with -race.
func TestParallelReaders(t *testing.T) {
	for _, pf := range []int{0, 2 << 20} {
		t.Run(fmt.Sprintf("prefetch=%d", pf), func(t *testing.T) { testParallelReaders(t, castorfs.Options{Prefetch: pf}) })
	}
}

func testParallelReaders(t *testing.T, opts castorfs.Options) {
	rng := rand.New(rand.NewPCG(7, 7))
	files := map[string][]byte{}
	tree := fstest.Dir{}
	for i := range 120 {
		size := rng.IntN(64 << 10)
		if i%8 == 0 {
			size = 1<<20 + rng.IntN(3<<20) // several prefetch pieces
		}
		data := make([]byte, size)
		var seed [32]byte
		seed[0], seed[1] = byte(i), byte(i>>8)
		rand.NewChaCha8(seed).Read(data)
		dir := fmt.Sprintf("d%d", i%10)
		if tree[dir] == nil {
			tree[dir] = fstest.Dir{}
		}
		name := fmt.Sprintf("f%d", i)
		tree[dir].(fstest.Dir)[name] = fstest.File{Data: data, Executable: i%5 == 0}
		files[filepath.Join(dir, name)] = data
	}
	e := newEnv(t, map[string]fstest.Node{"t": tree}, opts, castorfs.MountOptions{})
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	var wg sync.WaitGroup
	workers, rounds := 16, 60
	if raceEnabled {
		rounds = 20
	}
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			buf := make([]byte, 1<<20)
			for range rounds {
				name := names[rng.IntN(len(names))]
				want := files[name]
				f, err := os.Open(e.path("t", name))
				if err != nil {
					t.Error(err)
					return
				}
				switch rng.IntN(3) {
				case 0: // whole file, in odd-sized reads
					var got bytes.Buffer
					chunk := 1 + rng.IntN(len(buf))
					if _, err := io.CopyBuffer(&got, struct{ io.Reader }{f}, buf[:chunk]); err != nil {
						t.Errorf("%s: %v", name, err)
					} else if !bytes.Equal(got.Bytes(), want) {
						t.Errorf("%s: sequential read differs", name)
					}
				default: // random ranges, some past the end
					for range 8 {
						off := rng.IntN(len(want) + 10)
						n := rng.IntN(len(buf))
						got, err := f.ReadAt(buf[:n], int64(off))
						if err != nil && err != io.EOF {
							t.Errorf("%s at %d: %v", name, off, err)
							continue
						}
						off = min(off, len(want))
						end := min(off+n, len(want))
						if got != end-off || !bytes.Equal(buf[:got], want[off:end]) {
							t.Errorf("%s: %d bytes at %d differ (got %d)", name, n, off, got)
						}
					}
				}
				f.Close()
			}
		})
	}
	// Metadata traffic at the same time.
	for w := range 2 {
		wg.Go(func() {
			for range 20 {
				for _, n := range names[w*len(names)/2 : (w+1)*len(names)/2] {
					var st syscall.Stat_t
					if err := syscall.Lstat(e.path("t", n), &st); err != nil || st.Size != int64(len(files[n])) {
						t.Errorf("stat %s: %v size %d", n, err, st.Size)
					}
				}
			}
		})
	}
	wg.Wait()
	// RELEASE follows close(2) asynchronously.
	if !eventually(func() bool { return e.fsys.OpenFiles() == 0 }) {
		t.Errorf("%d file handles left open", e.fsys.OpenFiles())
	}
}

// A 100k-file tree: the daemon holds an inode per file the kernel caches,
// at a small constant cost, and gives them up when the kernel forgets
// them.
func TestMemoryBounded(t *testing.T) {
	fstest.RequireFUSE(t)
	nFiles := 100_000
	if raceEnabled {
		nFiles = 20_000 // the race detector makes each request ~10x dearer
	}
	tree := fstest.Dir{}
	for i := range nFiles {
		dir := fmt.Sprintf("d%03d", i%1000)
		if tree[dir] == nil {
			tree[dir] = fstest.Dir{}
		}
		tree[dir].(fstest.Dir)[fmt.Sprintf("file-%06d", i)] = fstest.File{Data: fmt.Appendf(nil, "contents of %d\n", i)}
	}
	e := newEnv(t, map[string]fstest.Node{"big": tree}, castorfs.Options{}, castorfs.MountOptions{})
	tree = nil
	base := heapInUse()

	count := 0
	err := filepath.WalkDir(e.path("big"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		if !d.IsDir() {
			count++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count != nFiles {
		t.Fatalf("walked %d files, want %d", count, nFiles)
	}
	live := e.fsys.LiveInodes()
	grown := heapInUse() - base
	perInode := grown / int64(max(live, 1))
	t.Logf("%d files walked: %d live inodes, heap +%d KiB (%d bytes per inode)", nFiles, live, grown>>10, perInode)
	if live > nFiles+1002 {
		t.Errorf("%d live inodes for %d files and 1001 directories", live, nFiles)
	}
	if perInode > 1024 {
		t.Errorf("%d bytes of heap per live inode", perInode)
	}

	// Make the kernel drop its dentries and inodes: every FORGET must
	// come back to us, and the memory with it.
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0); err != nil {
		t.Skipf("cannot drop the kernel's caches: %v", err)
	}
	eventually(func() bool { return e.fsys.LiveInodes() <= 2 }) // FORGETs arrive asynchronously
	after := e.fsys.LiveInodes()
	left := heapInUse() - base
	t.Logf("after the kernel forgot: %d live inodes, heap +%d KiB", after, left>>10)
	if after > live/100 {
		t.Errorf("%d of %d inodes still live after the kernel dropped its caches", after, live)
	}
	if left > grown/4 {
		t.Errorf("heap still +%d KiB of +%d KiB after the inodes were forgotten", left>>10, grown>>10)
	}
}

// eventually waits for cond, which the kernel makes true asynchronously,
// giving up after a minute (a generous bound, not a speed assertion).
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}
