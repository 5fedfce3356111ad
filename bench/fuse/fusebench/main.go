// Command fusebench measures castor's FUSE mount against tmpfs. Run it
// through bench/fuse/run.sh, which puts it in a private mount namespace.
//
// Every figure is the median of -runs runs. "cold" is the first read
// through a fresh mount with a fresh blob store (empty chunk cache, empty
// kernel page cache for the mount; the chunk files themselves are in the
// host's page cache unless -drop-caches); "warm" is the read after it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/fs/storeroots"
	"github.com/castor-nix/castor/store/boltdb"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/boltdir"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/castore/objectstore"
	"github.com/castor-nix/castor/store/fsimport"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
	"github.com/castor-nix/castor/store/pathinfo/boltinfo"
)

var (
	workDir    = flag.String("work", "/var/tmp", "directory for the on-disk store")
	sizeFlag   = flag.String("size", "1G", "size of the sequentially read file (K, M, G)")
	files      = flag.Int("files", 100_000, "files in the find+stat tree")
	paths      = flag.Int("paths", 10_000, "store paths to list")
	runs       = flag.Int("runs", 3, "runs per figure (median)")
	only       = flag.String("only", "seq,tree,list", "benchmarks to run")
	prefetch   = flag.Int("prefetch", 0, "the filesystem's own read-ahead in bytes (0: off, the default)")
	storeRA    = flag.Int("store-readahead", -1, "blob store read-ahead in chunks (-1: its default)")
	readAhead  = flag.Int("readahead-kb", 0, "kernel read_ahead_kb of the mount (0: castor's default, -1: the kernel's 128)")
	cpuProfile = flag.String("cpuprofile", "", "write a CPU profile of the cold reads to this file")
	ceiling    = flag.Bool("ceiling", false, "also read through a mount whose blobs come from memory unverified: the FUSE transport's own ceiling")
	dropCaches = flag.Bool("drop-caches", false, "drop the host's page cache before cold reads (slow; affects the whole machine)")
)

func main() {
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("fusebench: needs root (FUSE mounts); run bench/fuse/run.sh as root")
	}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	if os.Getenv("FUSEBENCH_ANY_NAMESPACE") == "" && !privateNamespace(self) {
		fail("fusebench: run it through bench/fuse/run.sh (a private mount namespace)")
	}
	work, err := os.MkdirTemp(*workDir, "castor-fusebench-")
	check(err)
	defer os.RemoveAll(work)
	// A tmpfs of our own, in this namespace only, for the baselines.
	tmpfs := filepath.Join(work, "tmpfs")
	check(os.Mkdir(tmpfs, 0o755))
	check(syscall.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=80%"))
	defer syscall.Unmount(tmpfs, syscall.MNT_DETACH)

	fmt.Printf("fusebench: %d CPUs, kernel %s, work dir %s, runs %d\n", runtime.NumCPU(), kernel(), *workDir, *runs)
	for _, b := range strings.Split(*only, ",") {
		switch b {
		case "seq":
			benchSeq(work, tmpfs)
		case "tree":
			benchTree(work, tmpfs)
		case "list":
			benchList(work)
		default:
			fail("unknown benchmark " + b)
		}
	}
}

// store is a fresh embedded store: chunked blobs on disk, directories and
// path infos in bbolt.
type store struct {
	blobs *objectstore.Store
	dirs  *boltdir.Service
	infos *boltinfo.Service
	close func()
}

func openStore(dir string) *store {
	var opts []objectstore.Option
	if *storeRA >= 0 {
		opts = append(opts, objectstore.WithReadAhead(*storeRA))
	}
	blobs, err := objectstore.Open(filepath.Join(dir, "castore"), opts...)
	check(err)
	db, err := boltdb.Open(filepath.Join(dir, "castor.db"), false)
	check(err)
	dirs, err := boltdir.New(db)
	check(err)
	infos, err := boltinfo.New(db)
	check(err)
	return &store{blobs: blobs, dirs: dirs, infos: infos, close: func() { blobs.Close(); db.Close() }}
}

func fsOptions() castorfs.Options {
	return castorfs.Options{Prefetch: *prefetch, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
}

func mount(mp string, roots castorfs.RootResolver, st *store, opts castorfs.Options) (*castorfs.Server, *castorfs.FS) {
	fsys, err := castorfs.New(roots, st.dirs, st.blobs, opts)
	check(err)
	check(os.MkdirAll(mp, 0o755))
	srv, err := castorfs.Mount(mp, fsys, castorfs.MountOptions{ReadAheadKB: *readAhead})
	check(err)
	return srv, fsys
}

// benchSeq: sequential read of one big file, through the mount (cold and
// warm) and from tmpfs.
func benchSeq(work, tmpfs string) {
	size, err := parseSize(*sizeFlag)
	check(err)
	dir := filepath.Join(work, "seq")
	st := openStore(dir)
	base := filepath.Join(tmpfs, "big")
	f, err := os.Create(base)
	check(err)
	w, err := st.blobs.NewBlobWriter(context.Background())
	check(err)
	bw := bufio.NewWriterSize(f, 1<<20)
	var raw []byte
	genData(size, func(p []byte) {
		bw.Write(p)
		w.Write(p)
		if *ceiling {
			raw = append(raw, p...)
		}
	})
	check(bw.Flush())
	check(f.Close())
	d, err := w.Commit()
	check(err)
	st.close()
	node := castore.Node{Kind: castore.KindFile, Digest: d, Size: uint64(size)}
	fmt.Printf("\nsequential read of a %s file (half compressible), dd bs=1M (second reads and tmpfs interleaved, twice per run):\n", *sizeFlag)

	var cold, warm, base1, coldCPU []float64
	mp := filepath.Join(work, "mnt")
	for i := range *runs {
		if *dropCaches {
			syscall.Sync()
			os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
		}
		st := openStore(dir) // empty chunk cache
		srv, _ := mount(mp, castorfs.Roots{"big": node}, st, fsOptions())
		if *cpuProfile != "" {
			pf, err := os.Create(*cpuProfile)
			check(err)
			check(pprof.StartCPUProfile(pf))
		}
		cpu0 := cpuSeconds()
		cold = append(cold, ddRate(filepath.Join(mp, "big"), size))
		coldCPU = append(coldCPU, cpuSeconds()-cpu0)
		if *cpuProfile != "" {
			pprof.StopCPUProfile()
		}
		// Warm and tmpfs reads alternate, in both orders, so that load
		// from elsewhere on the host hits both alike.
		for j := range 2 {
			if (i+j)%2 == 0 {
				warm = append(warm, ddRate(filepath.Join(mp, "big"), size))
				base1 = append(base1, ddRate(base, size))
			} else {
				base1 = append(base1, ddRate(base, size))
				warm = append(warm, ddRate(filepath.Join(mp, "big"), size))
			}
		}
		check(srv.Unmount())
		st.close()
	}
	var ceil []float64
	if *ceiling {
		for range *runs {
			fsys, err := castorfs.New(castorfs.Roots{"big": node}, memory.NewDirectoryService(), rawBlobs{d: d, data: raw}, fsOptions())
			check(err)
			srv, err := castorfs.Mount(mp, fsys, castorfs.MountOptions{ReadAheadKB: *readAhead})
			check(err)
			ceil = append(ceil, ddRate(filepath.Join(mp, "big"), size))
			check(srv.Unmount())
		}
	}
	c, wm, t := median(cold), median(warm), median(base1)
	fmt.Printf("  tmpfs          %7.0f MB/s\n", t)
	fmt.Printf("  mount, first   %7.0f MB/s   %3.0f%% of tmpfs (target >= 70%%); server CPU %.2f s/GB\n", c, 100*c/t, median(coldCPU)/(float64(size)/1e9))
	fmt.Printf("  mount, second  %7.0f MB/s   %3.0f%% of tmpfs (target >= 95%%)\n", wm, 100*wm/t)
	if *ceiling {
		cl := median(ceil)
		fmt.Printf("  FUSE ceiling   %7.0f MB/s   %3.0f%% of tmpfs (first read, blobs from memory, unverified)\n", cl, 100*cl/t)
	}
}

// rawBlobs serves one blob from memory without verifying it: only to
// measure what FUSE itself costs.
type rawBlobs struct {
	d    castore.Digest
	data []byte
}

func (r rawBlobs) OpenBlob(ctx context.Context, d castore.Digest) (castore.BlobReader, error) {
	if d != r.d {
		return nil, castore.ErrNotFound
	}
	return &rawReader{Reader: bytes.NewReader(r.data)}, nil
}

type rawReader struct{ *bytes.Reader }

func (r *rawReader) Close() error { return nil }

// cpuSeconds is the CPU time (user and system) this process has used: the
// server's share of the work, independent of what else runs on the host.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// ddRate reads p with dd and returns MB/s.
func ddRate(p string, size int64) float64 {
	start := time.Now()
	out, err := exec.Command("dd", "if="+p, "of=/dev/null", "bs=1M").CombinedOutput()
	if err != nil {
		fail(fmt.Sprintf("dd %s: %v\n%s", p, err, out))
	}
	return float64(size) / time.Since(start).Seconds() / 1e6
}

// genData produces size bytes in 64 KiB blocks, alternately random and
// text-like (compressible about 3x by zstd), as binaries in a store are.
func genData(size int64, emit func([]byte)) {
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"lib", "nix", "store", "castor", "blake3", "chunk", "0x7f", "ELF", "main", "\x00\x00\x00\x00", "printf", "__libc_start_main"}
	buf := make([]byte, 64<<10)
	for i := int64(0); size > 0; i++ {
		n := min(int64(len(buf)), size)
		b := buf[:n]
		if i%2 == 0 {
			for j := 0; j+8 <= len(b); j += 8 {
				v := rng.Uint64()
				for k := range 8 {
					b[j+k] = byte(v >> (8 * k))
				}
			}
		} else {
			j := 0
			for j < len(b) {
				j += copy(b[j:], words[rng.IntN(len(words))])
			}
		}
		emit(b)
		size -= n
	}
}

// benchTree: find + stat of a tree of many small files, warm, through the
// mount and on tmpfs.
func benchTree(work, tmpfs string) {
	src := filepath.Join(tmpfs, "tree")
	nfiles := genTree(src, *files)
	st := openStore(filepath.Join(work, "tree"))
	defer st.close()
	start := time.Now()
	root, _, _, err := fsimport.Import(context.Background(), src, st.blobs, st.dirs, nil)
	check(err)
	fmt.Printf("\nfind + stat of a tree of %d files (find -printf '%%s %%m %%i'); imported in %v:\n", nfiles, time.Since(start).Round(time.Millisecond))
	mp := filepath.Join(work, "mnt")
	srv, fsys := mount(mp, castorfs.Roots{"tree": root}, st, fsOptions())
	defer srv.Unmount()
	tree := filepath.Join(mp, "tree")
	first := findTime(tree, nfiles)
	var warm, base []float64
	for range *runs {
		warm = append(warm, findTime(tree, nfiles))
		base = append(base, findTime(src, nfiles))
	}
	w, b := median(warm), median(base)
	fmt.Printf("  tmpfs          %7.3f s\n", b)
	fmt.Printf("  mount, first   %7.3f s   (%d inodes live after it)\n", first, fsys.LiveInodes())
	fmt.Printf("  mount, warm    %7.3f s   %.2fx tmpfs (target within 2x)\n", w, w/b)
}

func findTime(dir string, want int) float64 {
	start := time.Now()
	cmd := exec.Command("find", dir, "-printf", "%s %m %i\n")
	out, err := cmd.Output()
	if err != nil {
		fail(fmt.Sprintf("find %s: %v", dir, err))
	}
	if n := strings.Count(string(out), "\n"); n < want {
		fail(fmt.Sprintf("find %s: %d entries, want at least %d", dir, n, want))
	}
	return time.Since(start).Seconds()
}

// genTree writes n small files in directories of 10 to 200 entries, like
// a store's share/ and lib/ trees, and returns n.
func genTree(root string, n int) int {
	rng := rand.New(rand.NewPCG(3, 4))
	check(os.Mkdir(root, 0o755))
	dirs := []string{root}
	written := 0
	for written < n {
		parent := dirs[rng.IntN(len(dirs))]
		d := filepath.Join(parent, fmt.Sprintf("dir%d", len(dirs)))
		check(os.Mkdir(d, 0o755))
		dirs = append(dirs, d)
		for range min(10+rng.IntN(190), n-written) {
			data := make([]byte, rng.IntN(4096))
			for i := range data {
				data[i] = "abcdefghij \n"[rng.IntN(12)]
			}
			mode := os.FileMode(0o644)
			if rng.IntN(10) == 0 {
				mode = 0o755
			}
			check(os.WriteFile(filepath.Join(d, fmt.Sprintf("file%d", written)), data, mode))
			written++
		}
	}
	return written
}

// benchList: mount a store of many store paths with --list-root and list
// it; time and the process's memory.
func benchList(work string) {
	dir := filepath.Join(work, "list")
	st := openStore(dir)
	defer st.close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range *paths {
		w, err := st.blobs.NewBlobWriter(ctx)
		check(err)
		fmt.Fprintf(w, "store path %d\n", i)
		d, err := w.Commit()
		check(err)
		var sp nixpath.StorePath
		for j := range sp.Digest {
			sp.Digest[j] = byte(rng.Uint32())
		}
		sp.Name = fmt.Sprintf("package-%d.drv", i)
		_, err = st.infos.Put(ctx, &pathinfo.PathInfo{StorePath: sp, Node: castore.Node{Kind: castore.KindFile, Digest: d, Size: uint64(len(fmt.Sprintf("store path %d\n", i)))}, NarSize: 128})
		check(err)
	}
	fmt.Printf("\nmount and list a store of %d store paths (--list-root):\n", *paths)
	mp := filepath.Join(work, "mnt")
	var mountT, listT, longT, longNoX []float64
	var heapMount, heapList, heapLong, rssLong int64
	live := 0
	for range *runs {
		for _, xattrs := range []bool{true, false} {
			heap0, rss0 := heapInUse(), rss()
			opts := fsOptions()
			opts.ListRoot = true
			opts.DisableXattrs = !xattrs
			start := time.Now()
			srv, fsys := mount(mp, &storeroots.Resolver{Infos: st.infos}, st, opts)
			if xattrs {
				mountT = append(mountT, time.Since(start).Seconds())
				heapMount = max(heapMount, heapInUse()-heap0)
				start = time.Now()
				out, err := exec.Command("ls", "-f", mp).Output()
				check(err)
				listT = append(listT, time.Since(start).Seconds())
				if n := strings.Count(string(out), "\n") - 2; n != *paths {
					fail(fmt.Sprintf("ls %s: %d entries, want %d", mp, n, *paths))
				}
				heapList = max(heapList, heapInUse()-heap0)
			}
			start = time.Now()
			check(exec.Command("ls", "-l", mp).Run())
			if xattrs {
				longT = append(longT, time.Since(start).Seconds())
				heapLong = max(heapLong, heapInUse()-heap0)
				rssLong = max(rssLong, rss()-rss0)
				live = fsys.LiveInodes()
			} else {
				longNoX = append(longNoX, time.Since(start).Seconds())
			}
			check(srv.Unmount())
		}
	}
	fmt.Printf("  mount until ready   %7.1f ms\n", 1000*median(mountT))
	fmt.Printf("  ls -f (first)       %7.1f ms\n", 1000*median(listT))
	fmt.Printf("  ls -l (first)       %7.1f ms   (two GETXATTR round trips per entry; %.1f ms with --no-xattrs)\n", 1000*median(longT), 1000*median(longNoX))
	fmt.Printf("  memory of the filesystem (Go heap in use, after GC): mounted +%d KiB, listed +%d KiB, after ls -l +%d KiB (%d live inodes); process RSS +%d KiB\n",
		heapMount>>10, heapList>>10, heapLong>>10, live, rssLong>>10)
}

func heapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// rss returns the process's resident set size in bytes.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	check(err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func privateNamespace(self string) bool {
	init, err := os.Readlink("/proc/1/ns/mnt")
	if err == nil {
		return init != self
	}
	// PID 1's namespace is hidden here; trust run.sh's unshare, which
	// makes us the namespace's first process.
	parent, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	return err == nil && parent != self
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	os.Exit(1)
}
