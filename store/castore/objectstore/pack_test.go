package objectstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/castoretest"
)

// withPackTarget makes packs seal at n bytes (tests only).
func withPackTarget(n int64) Option { return func(o *config) { o.packTarget = n } }

// sealedPacks returns the names of the sealed packs under root.
func sealedPacks(t *testing.T, root string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, packsDir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), packSuffix) {
			names = append(names, e.Name())
		}
	}
	return names
}

// With LayoutPacks, chunks go to pack files whose records decode to the
// chunks and whose index lists them; chunk lists stay files; chunk files
// are made only for packs of spillMax chunks or fewer; nothing stays in
// tmp/.
func TestPackLayout(t *testing.T) {
	s := openTest(t, WithWorkers(1)) // one lane for the large blob's chunks
	small := []byte("Hello World!")
	ds := castoretest.PutBlob(t, s, small)
	large := castoretest.Pattern(3<<20, 9)
	dl := castoretest.PutBlob(t, s, large)
	if err := s.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), tmpDir)); len(ents) != 0 {
		t.Errorf("%d files left in tmp", len(ents))
	}
	if _, err := os.Stat(s.blobPath(dl)); err != nil {
		t.Errorf("multi-chunk blob has no chunk list file: %v", err)
	}
	chunks := make(map[castore.Digest][]byte)
	for _, name := range sealedPacks(t, s.Root()) {
		path := filepath.Join(s.Root(), packsDir, name)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		idx, err := readPackIndex(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		c := newTestCodec(t)
		for _, e := range idx {
			data, err := c.decode(raw[e.off:e.off+int64(e.frameLen)], e.digest, int64(e.size))
			if err != nil {
				t.Fatalf("%s: record of %s: %v", name, e.digest, err)
			}
			chunks[e.digest] = data
		}
	}
	// Chunks spilled from small packs are chunk files.
	shards, _ := os.ReadDir(filepath.Join(s.Root(), chunksDir))
	spilled := 0
	for _, sh := range shards {
		names, _ := os.ReadDir(filepath.Join(s.Root(), chunksDir, sh.Name()))
		for _, n := range names {
			d, err := castore.ParseDigest(n.Name())
			if err != nil {
				t.Fatal(err)
			}
			chunks[d] = readBack(t, filepath.Join(s.Root(), chunksDir, sh.Name(), n.Name()))
			spilled++
		}
	}
	if spilled > spillMax {
		t.Errorf("%d chunks spilled to files, at most %d could be", spilled, spillMax)
	}
	if !bytes.Equal(chunks[ds], small) {
		t.Errorf("small blob's record holds %q", chunks[ds])
	}
	st, err := openStat(t, s.Root(), dl)
	if err != nil {
		t.Fatal(err)
	}
	var joined []byte
	for _, c := range st.Chunks {
		joined = append(joined, chunks[c.Digest]...)
	}
	if !bytes.Equal(joined, large) {
		t.Error("the packed chunks do not add up to the large blob")
	}
}

// openStat opens the store at root anew and stats d.
func openStat(t *testing.T, root string, d castore.Digest) (*castore.BlobStat, error) {
	t.Helper()
	s, err := Open(root, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	return s.StatBlob(t.Context(), d)
}

// Another Store on the same directory (another process) sees a blob once
// its writer synced, finding the new pack on a miss; the writer itself
// sees it at once.
func TestPackVisibility(t *testing.T) {
	dir := t.TempDir()
	w, err := Open(dir, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := Open(dir, WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i, data := range [][]byte{[]byte("small"), castoretest.Pattern(2<<20, 3)} {
		d := castoretest.PutBlob(t, w, data)
		if got := castoretest.ReadBlob(t, w, d); !bytes.Equal(got, data) {
			t.Fatalf("blob %d: its writer reads %d bytes back", i, len(got))
		}
		if err := w.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := castoretest.ReadBlob(t, r, d); !bytes.Equal(got, data) {
			t.Fatalf("blob %d: another store reads %d bytes after Sync", i, len(got))
		}
	}
}

// The open pack is sealed when it reaches the target size, and a blob
// whose chunks span packs reads back from a new Store.
func TestPackRollover(t *testing.T) {
	s := openTest(t, withPackTarget(1<<20), WithCompression(CompressNone))
	var ds []castore.Digest
	var blobs [][]byte
	for i := range 40 {
		data := castoretest.Pattern(50<<10+i, uint64(i))
		blobs = append(blobs, data)
		ds = append(ds, castoretest.PutBlob(t, s, data))
	}
	large := castoretest.Pattern(5<<20, 77)
	dl := castoretest.PutBlob(t, s, large)
	// 2 MiB of small blobs fill two packs; the large blob's chunks, four
	// to a 1 MiB pack, are spilled to chunk files.
	if n := len(sealedPacks(t, s.Root())); n < 2 {
		t.Errorf("%d sealed packs after 2 MiB of small blobs with a 1 MiB target", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openTestDir(t, s.Root())
	for i, d := range ds {
		if got := castoretest.ReadBlob(t, s2, d); !bytes.Equal(got, blobs[i]) {
			t.Fatalf("blob %d reads back as %d bytes", i, len(got))
		}
	}
	if got := castoretest.ReadBlob(t, s2, dl); !bytes.Equal(got, large) {
		t.Fatal("large blob does not read back")
	}
	if p, err := s2.Check(t.Context(), true); err != nil || len(p) != 0 {
		t.Fatalf("Check: %v, %v", p, err)
	}
}

// openTestDir opens the store at dir, closed at the end of the test.
func openTestDir(t *testing.T, dir string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(dir, append([]Option{WithLogger(testLogger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A pack whose index is damaged is moved aside when loaded: its blobs are
// missing (never wrong bytes), and writing them again repairs them.
func TestPackIndexDamage(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(b []byte) []byte
	}{
		{"flipped index byte", func(b []byte) []byte { b[len(b)-packFooterSize-10] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-7] }},
		{"bad count", func(b []byte) []byte { b[len(b)-packFooterSize+8]++; return b }},
		{"zeroed", func(b []byte) []byte { return make([]byte, len(b)) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestDir(t, dir)
			data := []byte("a blob in a pack")
			d := castoretest.PutBlob(t, s, data)
			for i := range spillMax { // enough for a pack, not spilled
				castoretest.PutBlob(t, s, fmt.Appendf(nil, "another blob %d", i))
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			names := sealedPacks(t, dir)
			if len(names) != 1 {
				t.Fatalf("%d packs", len(names))
			}
			path := filepath.Join(dir, packsDir, names[0])
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			os.Remove(path)
			if err := os.WriteFile(path, c.edit(b), 0o444); err != nil {
				t.Fatal(err)
			}
			s2 := openTestDir(t, dir)
			if _, err := s2.StatBlob(t.Context(), d); !errors.Is(err, castore.ErrNotFound) {
				t.Errorf("stat of a blob in a damaged pack: %v, want not found", err)
			}
			if _, err := os.Stat(filepath.Join(dir, quarantineDir, names[0])); err != nil {
				t.Errorf("damaged pack not moved aside: %v", err)
			}
			castoretest.PutBlob(t, s2, data)
			if got := castoretest.ReadBlob(t, s2, d); !bytes.Equal(got, data) {
				t.Errorf("after writing again: %q", got)
			}
		})
	}
}

// Writers in many goroutines share the open pack; every blob reads back.
func TestPackConcurrentWriters(t *testing.T) {
	s := openTest(t, withPackTarget(256<<10))
	const n = 64
	ds := make([]castore.Digest, n)
	done := make(chan int)
	for i := range n {
		go func() {
			ds[i] = castoretest.PutBlob(t, s, castoretest.Pattern(1000+i*997, uint64(i%16)))
			done <- i
		}()
	}
	for range n {
		<-done
	}
	if err := s.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	s2 := openTestDir(t, s.Root())
	for i, d := range ds {
		if got := castoretest.ReadBlob(t, s2, d); !bytes.Equal(got, castoretest.Pattern(1000+i*997, uint64(i%16))) {
			t.Fatalf("blob %d reads back wrong", i)
		}
	}
}

func FuzzReadPackIndex(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(dir, withPackTarget(4<<10))
	if err != nil {
		f.Fatal(err)
	}
	for i := range 6 {
		castoretest.PutBlob(f, s, castoretest.Pattern(900*i+1, uint64(i)))
	}
	if err := s.Close(); err != nil {
		f.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, packsDir))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, packsDir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "p.pack")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		fd, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer fd.Close()
		idx, err := readPackIndex(fd)
		if err != nil {
			if !errors.Is(err, castore.ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		for _, e := range idx {
			if e.off < 8 || e.off+int64(e.frameLen) > int64(len(b)) {
				t.Fatalf("entry out of the file: %+v", e)
			}
		}
	})
}

// A pack of at most spillMax chunks is sealed as chunk files: one
// small path per Sync leaves no pack behind. The chunks read back, from
// this Store and a new one, and writing them again writes nothing.
func TestSmallPackSpills(t *testing.T) {
	s := openTest(t)
	var ds []castore.Digest
	for i := range 20 {
		ds = append(ds, castoretest.PutBlob(t, s, fmt.Appendf(nil, "derivation %d", i)))
		if err := s.Sync(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(sealedPacks(t, s.Root())); n != 0 {
		t.Errorf("%d packs after 20 one-blob Syncs, want 0", n)
	}
	for _, d := range ds {
		if _, err := os.Stat(s.chunkPath(d)); err != nil {
			t.Errorf("no chunk file for %s: %v", d, err)
		}
	}
	written := s.Stats().ChunksWritten
	for i, d := range ds {
		if got := castoretest.ReadBlob(t, s, d); string(got) != fmt.Sprintf("derivation %d", i) {
			t.Fatalf("blob %d reads %q", i, got)
		}
		castoretest.PutBlob(t, s, fmt.Appendf(nil, "derivation %d", i))
	}
	if s.Stats().ChunksWritten != written {
		t.Error("writing spilled chunks again wrote them again")
	}
	if p, err := s.Check(t.Context(), true); err != nil || len(p) != 0 {
		t.Fatalf("Check: %v, %v", p, err)
	}
	s2 := openTestDir(t, s.Root())
	for i, d := range ds {
		if got := castoretest.ReadBlob(t, s2, d); string(got) != fmt.Sprintf("derivation %d", i) {
			t.Fatalf("blob %d reads %q from a new store", i, got)
		}
	}
}

// A store of more packs than maxOpenPacks reads every blob while keeping
// at most maxOpenPacks descriptors open.
func TestPackDescriptorsBounded(t *testing.T) {
	// Blobs of about 1 KiB in packs sealed at 5 KiB: packs of 5 or 6
	// chunks, too many to spill.
	s := openTest(t, withPackTarget(5<<10), WithCompression(CompressNone))
	n := 6 * (maxOpenPacks + 60)
	blob := func(i int) []byte { return castoretest.Pattern(1000+i%50, uint64(i)) }
	ds := make([]castore.Digest, n)
	for i := range n {
		ds[i] = castoretest.PutBlob(t, s, blob(i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := len(sealedPacks(t, s.Root())); got <= maxOpenPacks {
		t.Fatalf("%d packs, want more than %d", got, maxOpenPacks)
	}
	s2 := openTestDir(t, s.Root(), WithCacheSize(0))
	for round := range 2 {
		for i, d := range ds {
			if got := castoretest.ReadBlob(t, s2, d); !bytes.Equal(got, blob(i)) {
				t.Fatalf("round %d: blob %d reads back wrong", round, i)
			}
			s2.packs.fdMu.Lock()
			open := len(s2.packs.open)
			s2.packs.fdMu.Unlock()
			if open > maxOpenPacks {
				t.Fatalf("%d pack descriptors open", open)
			}
		}
	}
}

// Writers in many goroutines, Syncs and sealing by size, while another
// Store on the same directory (another process) reads every blob once
// its writer synced it: each read returns the blob's bytes.
func TestPackWritersAndReaderStores(t *testing.T) {
	dir := t.TempDir()
	w := openTestDir(t, dir, withPackTarget(512<<10))
	r := openTestDir(t, dir, WithCacheSize(0))
	const writers, perWriter = 4, 40
	blob := func(g, i int) []byte {
		if i%5 == 0 {
			return castoretest.Pattern(600<<10+i, uint64(g*1000+i)) // several chunks
		}
		return castoretest.Pattern(1+(g*7919+i*104729)%(60<<10), uint64(g*1000+i))
	}
	synced := make(chan [2]int, writers*perWriter)
	errs := make(chan error, writers+1)
	for g := range writers {
		go func() {
			var pending [][2]int
			for i := range perWriter {
				wr, err := w.NewBlobWriter(t.Context())
				if err != nil {
					errs <- err
					return
				}
				wr.Write(blob(g, i))
				if _, err := wr.Commit(); err != nil {
					errs <- err
					return
				}
				pending = append(pending, [2]int{g, i})
				if i%7 == 6 {
					if err := w.Sync(t.Context()); err != nil {
						errs <- err
						return
					}
					for _, p := range pending {
						synced <- p
					}
					pending = nil
				}
			}
			if err := w.Sync(t.Context()); err != nil {
				errs <- err
				return
			}
			for _, p := range pending {
				synced <- p
			}
			errs <- nil
		}()
	}
	read := 0
	for done := 0; done < writers; {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
			done++
		case p := <-synced:
			want := blob(p[0], p[1])
			got, err := readAll(r, castore.Sum(want))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("blob %v from the other store: %d bytes, %v", p, len(got), err)
			}
			read++
		}
	}
	for len(synced) > 0 {
		p := <-synced
		want := blob(p[0], p[1])
		if got, err := readAll(r, castore.Sum(want)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("blob %v from the other store: %d bytes, %v", p, len(got), err)
		}
		read++
	}
	if read != writers*perWriter {
		t.Fatalf("read %d blobs, want %d", read, writers*perWriter)
	}
}
