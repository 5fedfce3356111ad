package objectstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/castorepb"
	"github.com/castor-nix/castor/store/castore/castoretest"
)

// readBack decompresses a chunk file with an independent decoder.
func readBack(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	out, err := dec.DecodeAll(b, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// The files are where Snix puts them, with Snix's contents, but for two
// measured departures: shards are named by one byte, not two, and a
// one-chunk blob is its chunk file alone, without an empty chunk list.
func TestLayout(t *testing.T) {
	s := openTest(t, WithLayout(LayoutFiles))
	hexPath := func(dir string, d castore.Digest) string {
		return filepath.Join(s.Root(), dir, d.Hex()[:shardHex], d.Hex())
	}

	small := []byte("Hello World!")
	d := castoretest.PutBlob(t, s, small)
	if _, err := os.Stat(hexPath("blobs/b3", d)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("one-chunk blob has a chunk list file: %v", err)
	}
	if got := readBack(t, hexPath("chunks/b3", d)); !bytes.Equal(got, small) {
		t.Errorf("chunk file decompresses to %q", got)
	}

	large := castoretest.Pattern(3<<20, 9)
	d = castoretest.PutBlob(t, s, large)
	b, err := os.ReadFile(hexPath("blobs/b3", d))
	if err != nil {
		t.Fatal(err)
	}
	var list castorepb.StatBlobResponse
	if err := proto.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Chunks) < 2 {
		t.Fatalf("3 MiB blob listed as %d chunks", len(list.Chunks))
	}
	var joined []byte
	for _, c := range list.Chunks {
		cd, err := castore.DigestFromBytes(c.Digest)
		if err != nil {
			t.Fatal(err)
		}
		data := readBack(t, hexPath("chunks/b3", cd))
		if uint64(len(data)) != c.Size || castore.Sum(data) != cd {
			t.Fatalf("chunk %s: %d bytes, listed as %d", cd, len(data), c.Size)
		}
		joined = append(joined, data...)
	}
	if !bytes.Equal(joined, large) {
		t.Fatal("chunks do not add up to the blob")
	}
	// Nothing left in tmp.
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(ents) != 0 {
		t.Errorf("%d files left in tmp", len(ents))
	}
}

// The pipeline cuts exactly where the library's own reader interface
// does, whatever the sizes of the writes, and chunks have the sizes
// asked for.
func TestChunking(t *testing.T) {
	data := randomData(8<<20, 5)
	var want []int
	c, err := chunkers.NewChunker(chunkerAlgorithm, bytes.NewReader(data), &chunkers.ChunkerOpts{
		MinSize: MinChunkSize, NormalSize: AvgChunkSize, MaxSize: MaxChunkSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	for {
		ch, err := c.Next()
		if len(ch) > 0 {
			want = append(want, len(ch))
		}
		if err != nil {
			break
		}
	}
	for i, n := range want {
		if n > MaxChunkSize || (n < MinChunkSize && i != len(want)-1) {
			t.Errorf("chunk %d has %d bytes", i, n)
		}
	}
	avg := len(data) / len(want)
	if avg < AvgChunkSize*3/4 || avg > AvgChunkSize*3/2 {
		t.Errorf("average chunk %d bytes, want about %d", avg, AvgChunkSize)
	}

	for _, piece := range []int{1 << 10, 7919, 1 << 20, len(data)} {
		s := openTest(t)
		w, err := s.NewBlobWriter(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for rest := data; len(rest) > 0; {
			n := min(piece, len(rest))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatal(err)
			}
			rest = rest[n:]
		}
		d, err := w.Commit()
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.StatBlob(t.Context(), d)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, c := range st.Chunks {
			got = append(got, int(c.Size))
		}
		if !equalInts(got, want) {
			t.Errorf("writes of %d bytes: chunk sizes %v, want %v", piece, got, want)
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Content-defined chunking is the point: bytes inserted near the start of
// a blob leave the later chunks unchanged, and they are not written again.
func TestChunkingDedup(t *testing.T) {
	s := openTest(t)
	data := randomData(8<<20, 6)
	castoretest.PutBlob(t, s, data)
	before := s.Stats()
	edited := append(append(append([]byte{}, data[:1000]...), "an insertion"...), data[1000:]...)
	castoretest.PutBlob(t, s, edited)
	after := s.Stats()
	written := after.ChunksWritten - before.ChunksWritten
	skipped := after.ChunksSkipped - before.ChunksSkipped
	if written > 2 || skipped < 20 {
		t.Errorf("after a small insertion: %d chunks written, %d skipped; want at most 2 written", written, skipped)
	}
	// The same blob again writes nothing.
	castoretest.PutBlob(t, s, edited)
	if again := s.Stats(); again.ChunksWritten != after.ChunksWritten {
		t.Errorf("storing a blob again wrote %d chunks", again.ChunksWritten-after.ChunksWritten)
	}
}

// Pinned chunk boundaries: if a new version of the chunker cut elsewhere,
// stores would stop sharing chunks with what they hold. This test says so.
func TestChunkingStable(t *testing.T) {
	s := openTest(t)
	d := castoretest.PutBlob(t, s, castoretest.Pattern(4<<20, 42))
	st, err := s.StatBlob(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	b, err := marshalChunkList(st.Chunks)
	if err != nil {
		t.Fatal(err)
	}
	const want = "blake3-mRUI8Vq+vEEeMg2CaOYsUAl0RZ/JtQGbY51agrQTSaQ="
	if got := castore.Sum(b).String(); got != want {
		var sizes []uint64
		for _, c := range st.Chunks {
			sizes = append(sizes, c.Size)
		}
		t.Errorf("chunk list digest %s, want %s (sizes %v): chunk boundaries changed", got, want, sizes)
	}
}

// A store written the way Snix writes it reads fine: one-chunk blobs listed
// as one chunk, chunks compressed as a stream (no content size in the
// frame header).
func TestReadsSnixLayout(t *testing.T) {
	s := openTest(t)
	put := func(dir string, d castore.Digest, b []byte) {
		p := shardPath(s.Root(), dir, d)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o444); err != nil {
			t.Fatal(err)
		}
	}
	streamed := func(data []byte) []byte {
		var buf bytes.Buffer
		enc, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		// Flushing before the end makes the encoder write the frame
		// header before it knows the size, as a streaming writer does.
		enc.Write(data[:len(data)/2])
		enc.Flush()
		enc.Write(data[len(data)/2:])
		enc.Close()
		if _, ok := contentSize(buf.Bytes()); ok {
			t.Fatal("streamed frame declares its size; the test wants one that does not")
		}
		return buf.Bytes()
	}
	list := func(chunks ...[]byte) []byte {
		var metas []castore.ChunkMeta
		for _, c := range chunks {
			metas = append(metas, castore.ChunkMeta{Digest: castore.Sum(c), Size: uint64(len(c))})
		}
		b, err := marshalChunkList(metas)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	one := castoretest.Pattern(100<<10, 1)
	d1 := castore.Sum(one)
	put("chunks/b3", d1, streamed(one))
	put("blobs/b3", d1, list(one))

	a, b := castoretest.Pattern(300<<10, 2), castoretest.Pattern(200<<10, 3)
	whole := append(append([]byte{}, a...), b...)
	d2 := castore.Sum(whole)
	put("chunks/b3", castore.Sum(a), streamed(a))
	put("chunks/b3", castore.Sum(b), streamed(b))
	put("blobs/b3", d2, list(a, b))

	for _, c := range []struct {
		d      castore.Digest
		data   []byte
		chunks int
	}{{d1, one, 0}, {d2, whole, 2}} {
		st, err := s.StatBlob(t.Context(), c.d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size != uint64(len(c.data)) || len(st.Chunks) != c.chunks {
			t.Errorf("stat: %+v, want size %d and %d chunks", st, len(c.data), c.chunks)
		}
		if got := castoretest.ReadBlob(t, s, c.d); !bytes.Equal(got, c.data) {
			t.Errorf("read %d bytes, not the data", len(got))
		}
	}
	// A one-chunk blob whose chunk frame does not declare its size:
	// stat must decompress it. (A Store without a cache: replacing the
	// cache under the read-ahead still running was a data race.)
	s = openTestDir(t, s.Root(), WithCacheSize(0))
	blob3 := castoretest.Pattern(50<<10, 4)
	d3 := castore.Sum(blob3)
	put("chunks/b3", d3, streamed(blob3))
	put("blobs/b3", d3, nil)
	if st, err := s.StatBlob(t.Context(), d3); err != nil || st.Size != uint64(len(blob3)) {
		t.Errorf("stat of streamed one-chunk blob: %+v, %v", st, err)
	}
}

// Like Snix's Read, OpenBlob opens a chunk by its own digest; so does
// StatBlob: a chunk is the blob of its own contents.
func TestOpenChunk(t *testing.T) {
	s := openTest(t)
	data := castoretest.Pattern(2<<20, 11)
	d := castoretest.PutBlob(t, s, data)
	st, err := s.StatBlob(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	var off uint64
	for _, c := range st.Chunks {
		got := castoretest.ReadBlob(t, s, c.Digest)
		if !bytes.Equal(got, data[off:off+c.Size]) {
			t.Fatalf("chunk %s read as %d bytes, not its contents", c.Digest, len(got))
		}
		off += c.Size
		if st, err := s.StatBlob(t.Context(), c.Digest); err != nil || st.Size != c.Size {
			t.Errorf("StatBlob of a chunk: %+v, %v; want its size %d", st, err, c.Size)
		}
	}
}

// A damaged chunk is reported, moved aside (files) or dropped and marked
// (pack records), and writing the content again repairs the blob. Check
// sees the damage and then sees none.
func TestDamageAndRepair(t *testing.T) {
	for _, c := range []struct {
		name      string
		size      int
		filesOnly bool
		damage    func(t *testing.T, s *Store, d castore.Digest)
	}{
		{"flipped byte", 2 << 20, false, func(t *testing.T, s *Store, d castore.Digest) { damageChunk(t, s, middleChunk(t, s, d)) }},
		{"flipped byte one chunk", 10 << 10, false, func(t *testing.T, s *Store, d castore.Digest) { damageChunk(t, s, d) }},
		{"emptied chunk", 2 << 20, false, func(t *testing.T, s *Store, d castore.Digest) {
			// What a power loss leaves of a chunk written without sync:
			// an empty file, or zeros in a pack.
			rewriteChunk(t, s, middleChunk(t, s, d), func(b []byte) []byte {
				if s.cfg.layout == LayoutFiles {
					return b[:0]
				}
				return make([]byte, len(b))
			})
		}},
		{"flipped header", 2 << 20, false, func(t *testing.T, s *Store, d castore.Digest) {
			rewriteChunk(t, s, middleChunk(t, s, d), func(b []byte) []byte {
				b[6] ^= 1 // in the frame header (the content size of a raw frame)
				return b
			})
		}},
		{"removed chunk", 2 << 20, true, func(t *testing.T, s *Store, d castore.Digest) {
			rewriteChunk(t, s, middleChunk(t, s, d), func([]byte) []byte { return nil })
		}},
		{"emptied chunk list", 2 << 20, false, func(t *testing.T, s *Store, d castore.Digest) {
			if err := os.Truncate(s.blobPath(d), 0); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		for _, layout := range []Layout{LayoutPacks, LayoutFiles} {
			if c.filesOnly && layout != LayoutFiles {
				continue
			}
			for _, comp := range []Compression{CompressNone, CompressFastest} {
				t.Run(c.name+"/"+layout.String()+"/"+comp.String(), func(t *testing.T) {
					s := openTest(t, WithCacheSize(0), WithCompression(comp), WithLayout(layout))
					data := castoretest.Pattern(c.size, 12)
					d := castoretest.PutBlob(t, s, data)
					c.damage(t, s, d)
					if p, err := s.Check(t.Context(), true); err != nil || len(p) != 1 || p[0].Blob != d || !errors.Is(p[0].Err, castore.ErrCorrupt) {
						t.Errorf("Check after damage: %v, %v; want one problem with %s", p, err, d)
					}
					for range 2 {
						got, err := readAll(s, d)
						if !errors.Is(err, castore.ErrCorrupt) {
							t.Fatalf("read of damaged blob: %v, want ErrCorrupt", err)
						}
						if !bytes.Equal(got, data[:len(got)]) {
							t.Fatal("damaged blob returned wrong bytes")
						}
					}
					castoretest.PutBlob(t, s, data)
					if got, err := readAll(s, d); err != nil || !bytes.Equal(got, data) {
						t.Fatalf("after writing again: %d bytes, %v", len(got), err)
					}
					if p, err := s.Check(t.Context(), true); err != nil || len(p) != 0 {
						t.Errorf("Check after repair: %v, %v", p, err)
					}
					// A new Store skips the marked record and finds the new copy.
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s2, err := Open(s.Root(), WithCacheSize(0), WithLogger(testLogger(t)))
					if err != nil {
						t.Fatal(err)
					}
					defer s2.Close()
					if got, err := readAll(s2, d); err != nil || !bytes.Equal(got, data) {
						t.Fatalf("reopened after repair: %d bytes, %v", len(got), err)
					}
				})
			}
		}
	}
}

func readAll(s *Store, d castore.Digest) ([]byte, error) {
	r, err := s.OpenBlob(context.Background(), d)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// A chunk list naming the right chunks in the wrong order: every chunk
// verifies, the whole does not, and a sequential reader is told so
// instead of getting the last bytes.
func TestWholeBlobCheck(t *testing.T) {
	s := openTest(t)
	data := castoretest.Pattern(3<<20, 13)
	d := castoretest.PutBlob(t, s, data)
	st, err := s.StatBlob(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	chunks := st.Chunks
	chunks[0], chunks[1] = chunks[1], chunks[0]
	b, err := marshalChunkList(chunks)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.publish(s.blobPath(d), b, false); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(s, d)
	if !errors.Is(err, castore.ErrCorrupt) {
		t.Fatalf("read of reordered blob: %d bytes, %v; want ErrCorrupt", len(got), err)
	}
	if len(got) >= len(data) {
		t.Errorf("read returned all %d bytes before the error", len(got))
	}
}

// Sequential reads load the next chunks in the background; random ones do
// not. The cache stays within its budget.
func TestReadAhead(t *testing.T) {
	s := openTest(t, WithCacheSize(2<<20), WithReadAhead(3))
	data := randomData(8<<20, 14)
	d := castoretest.PutBlob(t, s, data)
	st, err := s.StatBlob(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.OpenBlob(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	buf := make([]byte, 4096)
	// A read in the middle: random, no read-ahead.
	mid := len(st.Chunks) / 2
	if _, err := r.ReadAt(buf, int64(len(data)/2)); err != nil {
		t.Fatal(err)
	}
	s.bgWG.Wait()
	for _, c := range st.Chunks[mid+1:] {
		if s.cache.has(c.Digest) {
			t.Fatalf("a random read loaded chunks after it")
		}
	}
	// From the start: once the reads are seen to be in order, the next
	// three chunks are loaded without being read.
	for range 2 {
		if _, err := r.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	s.bgWG.Wait()
	for i := 1; i <= 3; i++ {
		if !s.cache.has(st.Chunks[i].Digest) {
			t.Errorf("chunk %d not loaded ahead of a sequential read", i)
		}
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	s.cache.mu.Lock()
	used := s.cache.used
	s.cache.mu.Unlock()
	if used > 2<<20 {
		t.Errorf("cache holds %d bytes, budget 2 MiB", used)
	}
}

// Open removes temporary files of dead writers and old ones, and keeps
// those that may belong to a live writer.
func TestTempCleanup(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A pid that certainly died: a finished child's.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	dead := cmd.Process.Pid
	ns := pidNamespace()
	if ns == 0 {
		t.Skip("no /proc/self/ns/pid")
	}
	tmp := filepath.Join(dir, "tmp")
	files := map[string]bool{ // name -> removed?
		name(ns, dead, "a"):           true,  // dead writer of our namespace
		name(ns, os.Getpid(), "b"):    false, // live writer (us)
		name(ns+1, dead, "c"):         false, // other namespace: can't tell, fresh
		name(ns+1, dead, "old"):       true,  // other namespace, old
		"not-a-temp-name":             false, // unknown, fresh
		name(ns, os.Getpid(), "oldb"): true,  // live but older than the limit
	}
	for n := range files {
		p := filepath.Join(tmp, n)
		if err := os.WriteFile(p, []byte("partial"), 0o444); err != nil {
			t.Fatal(err)
		}
		if filepath.Ext(n) == ".old" || len(n) > 3 && n[len(n)-3:] == "old" || n[len(n)-4:] == "oldb" {
			old := time.Now().Add(-2 * time.Hour)
			os.Chtimes(p, old, old)
		}
	}
	s, err = Open(dir, WithTempMaxAge(time.Hour), WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for n, removed := range files {
		_, err := os.Stat(filepath.Join(tmp, n))
		if gone := errors.Is(err, os.ErrNotExist); gone != removed {
			t.Errorf("%s: removed=%v, want %v", n, gone, removed)
		}
	}
}

func name(ns uint64, pid int, tag string) string {
	return filepath.Base(filepath.Join("x", itoa(ns)+"-"+itoa(uint64(pid))+"-r-"+tag))
}

func itoa(n uint64) string { return filepath.Base(string(appendUint(nil, n))) }

func appendUint(b []byte, n uint64) []byte {
	if n >= 10 {
		b = appendUint(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

// Misuse and shutdown: errors, not hangs or leaks.
func TestWriterLifecycle(t *testing.T) {
	s := openTest(t)
	base := runtime.NumGoroutine()

	// Large writer closed without Commit: its goroutines end.
	w, err := s.NewBlobWriter(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	data := castoretest.Pattern(5<<20, 15)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w.Close()
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if _, err := w.Commit(); err == nil {
		t.Error("Commit after Close succeeded")
	}

	// Context cancelled in the middle of a large blob.
	ctx, cancel := context.WithCancel(t.Context())
	w, _ = s.NewBlobWriter(ctx)
	w.Write(data[:3<<20])
	cancel()
	w.Write(data[3<<20:])
	if _, err := w.Commit(); !errors.Is(err, context.Canceled) {
		t.Errorf("Commit after cancel: %v, want context.Canceled", err)
	}
	w.Close()
	if _, err := s.StatBlob(t.Context(), castore.Sum(data)); !errors.Is(err, castore.ErrNotFound) {
		t.Errorf("cancelled blob visible: %v", err)
	}

	// Commit then Write.
	w, _ = s.NewBlobWriter(t.Context())
	w.Write([]byte("done"))
	if _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("more")); err == nil {
		t.Error("Write after Commit succeeded")
	}
	w.Close()

	// io.Copy from a plain reader goes through ReadFrom.
	w, _ = s.NewBlobWriter(t.Context())
	if _, err := io.Copy(w, struct{ io.Reader }{bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	if d, err := w.Commit(); err != nil || d != castore.Sum(data) {
		t.Errorf("ReadFrom commit: %s, %v", d, err)
	}
	w.Close()

	for i := 0; runtime.NumGoroutine() > base && i < 100; i++ {
		time.Sleep(10 * time.Millisecond) // goroutines exiting after Close returned
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("%d goroutines left running, %d before", n, base)
	}

	if err := s.Sync(t.Context()); err != nil {
		t.Errorf("Sync: %v", err)
	}
	cctx, ccancel := context.WithCancel(t.Context())
	ccancel()
	if err := s.Sync(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Sync with a cancelled context: %v", err)
	}

	// A closed store refuses work.
	s.Close()
	if _, err := s.NewBlobWriter(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("NewBlobWriter on closed store: %v", err)
	}
	if _, err := s.OpenBlob(t.Context(), castore.Sum(data)); !errors.Is(err, ErrClosed) {
		t.Errorf("OpenBlob on closed store: %v", err)
	}
}

// Writers in many goroutines, through two Stores on one directory, store
// the same blobs at once while readers read them.
func TestConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	var stores []*Store
	for range 2 {
		s, err := Open(dir, WithLogger(testLogger(t)))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores = append(stores, s)
	}
	const n = 8
	blobs := make([][]byte, n)
	for i := range blobs {
		blobs[i] = workload(i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := range 8 {
		wg.Go(func() {
			s := stores[g%2]
			for k := range n {
				i := (k + g) % n
				w, err := s.NewBlobWriter(t.Context())
				if err != nil {
					errs <- err
					return
				}
				w.Write(blobs[i])
				d, err := w.Commit()
				w.Close()
				if err != nil {
					errs <- err
					return
				}
				// Read back any blob already committed by anyone.
				j := (i + 3) % n
				if got, err := readAll(s, castore.Sum(blobs[j])); err == nil && !bytes.Equal(got, blobs[j]) {
					errs <- fmt.Errorf("blob %d read wrong", j)
				} else if err != nil && !errors.Is(err, castore.ErrNotFound) {
					errs <- err
				}
				if d != castore.Sum(blobs[i]) {
					errs <- fmt.Errorf("blob %d: digest %s", i, d)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if p, err := stores[0].Check(t.Context(), true); err != nil || len(p) > 0 {
		t.Errorf("Check: %v, %v", p, err)
	}
}

// A chunk list giving a chunk the wrong size is damage of the list, not of
// the chunk: reads fail, the chunk stays where other blobs find it.
func TestWrongSizeInList(t *testing.T) {
	for _, layout := range []Layout{LayoutPacks, LayoutFiles} {
		for _, comp := range []Compression{CompressNone, CompressFastest} {
			t.Run(layout.String()+"/"+comp.String(), func(t *testing.T) {
				s := openTest(t, WithCacheSize(0), WithCompression(comp), WithLayout(layout))
				data := castoretest.Pattern(2<<20, 16)
				d := castoretest.PutBlob(t, s, data)
				st, err := s.StatBlob(t.Context(), d)
				if err != nil {
					t.Fatal(err)
				}
				st.Chunks[1].Size += 1000
				b, err := marshalChunkList(st.Chunks)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.publish(s.blobPath(d), b, false); err != nil {
					t.Fatal(err)
				}
				if _, err := readAll(s, d); !errors.Is(err, castore.ErrCorrupt) {
					t.Fatalf("read with a wrong chunk size: %v, want ErrCorrupt", err)
				}
				if _, err := os.Stat(s.chunkPath(st.Chunks[1].Digest)); err != nil && !s.packs.has(st.Chunks[1].Digest) {
					t.Errorf("the chunk was moved aside: %v", err)
				}
				if got := castoretest.ReadBlob(t, s, st.Chunks[1].Digest); len(got) != int(st.Chunks[1].Size)-1000 {
					t.Errorf("chunk reads as %d bytes", len(got))
				}
			})
		}
	}
}
