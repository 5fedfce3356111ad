package objectstore

// Throughput benchmarks. Per-core figures: -cpu 1; the pipeline's: the
// default (all cores). For example:
//
//	go test ./store/castore/objectstore -run '^$' -bench . -benchtime 3x
//
// "random" data is incompressible; "real" data is the Go toolchain's
// binaries and sources (compressible about 3:1, like a Nix store).

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	chunkers "github.com/PlakarKorp/go-cdc-chunkers"

	"github.com/castor-nix/castor/store/castore"
)

const benchBlobSize = 128 << 20

// randomData returns n incompressible bytes.
func randomData(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1})
	_, _ = r.Read(b)
	return b
}

var realDataOnce = sync.OnceValues(func() ([]byte, error) {
	// Files of the Go installation: compiled tools and sources, an
	// honest stand-in for a store's mix of binaries and text.
	root := runtime.GOROOT()
	var buf bytes.Buffer
	for _, sub := range []string{"pkg/tool", "src", "bin"} {
		err := filepath.WalkDir(filepath.Join(root, sub), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !d.Type().IsRegular() || buf.Len() >= benchBlobSize {
				return nil
			}
			b, err := os.ReadFile(p)
			if err == nil {
				buf.Write(b)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if buf.Len() < benchBlobSize {
		return nil, fmt.Errorf("only %d bytes of files under GOROOT %s", buf.Len(), root)
	}
	return buf.Bytes()[:benchBlobSize], nil
})

func benchData(b *testing.B, kind string) []byte {
	if kind == "random" {
		return randomData(benchBlobSize, 1)
	}
	d, err := realDataOnce()
	if err != nil {
		b.Skip(err)
	}
	return d
}

// BenchmarkChunker is FastCDC alone (the library's pull interface).
func BenchmarkChunker(b *testing.B) {
	for _, kind := range []string{"random", "real"} {
		data := benchData(b, kind)
		b.Run(kind, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			n := 0
			for b.Loop() {
				c, err := chunkers.NewChunker(chunkerAlgorithm, bytes.NewReader(data), &chunkers.ChunkerOpts{
					MinSize: MinChunkSize, NormalSize: AvgChunkSize, MaxSize: MaxChunkSize,
				})
				if err != nil {
					b.Fatal(err)
				}
				n = 0
				for {
					ch, err := c.Next()
					if len(ch) > 0 {
						n++
					}
					if err != nil {
						break
					}
				}
			}
			b.ReportMetric(float64(len(data))/float64(n)/1024, "KiB/chunk")
		})
	}
}

// BenchmarkCodec is chunk encoding and decoding (with verification) alone.
func BenchmarkCodec(b *testing.B) {
	for _, kind := range []string{"random", "real"} {
		data := benchData(b, kind)[:32<<20]
		for _, lvl := range []Compression{CompressFastest, CompressDefault, CompressNone} {
			c, err := newCodec(levelOf(lvl))
			if err != nil {
				b.Fatal(err)
			}
			compress := lvl != CompressNone
			b.Run(fmt.Sprintf("encode/%s/%s", kind, lvl), func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				dst := make([]byte, 0, rawFrameSize(AvgChunkSize))
				stored := 0
				for b.Loop() {
					stored = 0
					for off := 0; off < len(data); off += AvgChunkSize {
						dst = c.encode(dst[:0], data[off:off+AvgChunkSize], compress)
						stored += len(dst)
					}
				}
				b.ReportMetric(float64(stored)/float64(len(data)), "ratio")
			})
			var frames [][]byte
			var digests []castore.Digest
			for off := 0; off < len(data); off += AvgChunkSize {
				frames = append(frames, c.encode(nil, data[off:off+AvgChunkSize], compress))
				digests = append(digests, castore.Sum(data[off:off+AvgChunkSize]))
			}
			b.Run(fmt.Sprintf("decode/%s/%s", kind, lvl), func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					for i, f := range frames {
						if _, err := c.decode(f, digests[i], AvgChunkSize); err != nil {
							b.Fatal(err)
						}
					}
				}
			})
		}
	}
}

func (c Compression) String() string {
	switch c {
	case CompressAuto:
		return "auto"
	case CompressFastest:
		return "fastest"
	case CompressDefault:
		return "default"
	case CompressNone:
		return "none"
	}
	return fmt.Sprintf("Compression(%d)", int(c))
}

// cpuTime is the process's user+system CPU time so far. Benchmarks report
// CPU seconds per GiB besides wall-clock throughput: on a shared 2-core
// machine the former is the steadier figure.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports CPU seconds per GiB processed.
func reportCPU(b *testing.B, cpu time.Duration, bytes int64) {
	b.ReportMetric(cpu.Seconds()/(float64(bytes)/(1<<30)), "cpu-s/GiB")
}

// putReader stores all of r through one writer, as io.Copy does.
func putReader(b testing.TB, s *Store, r io.Reader) castore.Digest {
	w, err := s.NewBlobWriter(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		b.Fatal(err)
	}
	d, err := w.Commit()
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkWrite stores a new 128 MiB blob per iteration (the data is
// changed in its first bytes each time, so only the first chunk differs:
// the others are skipped as present, except in the "fresh" variants, which
// start from an empty store each time).
func BenchmarkWrite(b *testing.B) {
	for _, kind := range []string{"random", "real"} {
		data := benchData(b, kind)
		for _, comp := range []Compression{CompressAuto, CompressFastest, CompressNone} {
			b.Run(fmt.Sprintf("%s/%s", kind, comp), func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				var stored, in int64
				var cpu time.Duration
				for b.Loop() {
					b.StopTimer()
					s, err := Open(b.TempDir(), WithCompression(comp))
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					c0 := cpuTime()
					putReader(b, s, bytes.NewReader(data))
					cpu += cpuTime() - c0
					b.StopTimer()
					st := s.Stats()
					stored += st.BytesStored
					in += st.BytesIn
					s.Close()
					b.StartTimer()
				}
				b.ReportMetric(float64(stored)/float64(in), "ratio")
				reportCPU(b, cpu, int64(b.N)*int64(len(data)))
			})
		}
	}
}

// BenchmarkWriteExisting stores content already in the store: hashing and
// chunking only.
func BenchmarkWriteExisting(b *testing.B) {
	data := benchData(b, "random")
	s := openTest(b)
	putReader(b, s, bytes.NewReader(data))
	b.SetBytes(int64(len(data)))
	c0 := cpuTime()
	for b.Loop() {
		putReader(b, s, bytes.NewReader(data))
	}
	reportCPU(b, cpuTime()-c0, int64(b.N)*int64(len(data)))
}

// BenchmarkWriteSmall stores new 4 KiB blobs, the common file size, from
// one goroutine and from several.
func BenchmarkWriteSmall(b *testing.B) {
	for _, mode := range []SyncMode{SyncNone, SyncCommit} {
		for _, par := range []int{1, 4} {
			b.Run(fmt.Sprintf("sync=%d/par=%d", mode, par), func(b *testing.B) {
				s := openTest(b, WithSync(mode))
				var seq sync.Mutex
				n := uint64(0)
				b.SetBytes(4 << 10)
				b.SetParallelism(par)
				b.RunParallel(func(pb *testing.PB) {
					data := make([]byte, 4<<10)
					for pb.Next() {
						seq.Lock()
						n++
						id := n
						seq.Unlock()
						copy(data, fmt.Sprintf("blob %d %d", id, b.N))
						w, _ := s.NewBlobWriter(context.Background())
						w.Write(data)
						if _, err := w.Commit(); err != nil {
							b.Error(err)
						}
						w.Close()
					}
				})
			})
		}
	}
}

// BenchmarkWriteSyncCommit is one large blob committed with SyncCommit.
func BenchmarkWriteSyncCommit(b *testing.B) {
	data := benchData(b, "random")[:64<<20]
	for _, mode := range []SyncMode{SyncNone, SyncCommit} {
		b.Run(fmt.Sprint(mode), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				s, err := Open(b.TempDir(), WithSync(mode))
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				putReader(b, s, bytes.NewReader(data))
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
		})
	}
}

// BenchmarkRead reads a 128 MiB blob: sequentially with Read, through a
// fresh Store each time (cache empty, files in the page cache: "cold") or
// the same one ("warm", the blob fits the cache only partly); and at
// random offsets with ReadAt.
func BenchmarkRead(b *testing.B) {
	for _, kind := range []string{"random", "real"} {
		data := benchData(b, kind)
		dir := b.TempDir()
		s0, err := Open(dir, WithCompression(CompressFastest))
		if err != nil {
			b.Fatal(err)
		}
		d := putReader(b, s0, bytes.NewReader(data))
		s0.Close()
		b.Run(kind+"/sequential/cold", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			buf := make([]byte, 128<<10)
			c0 := cpuTime()
			defer func() { reportCPU(b, cpuTime()-c0, int64(b.N)*int64(len(data))) }()
			for b.Loop() {
				s, err := Open(dir)
				if err != nil {
					b.Fatal(err)
				}
				r, err := s.OpenBlob(context.Background(), d)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
					b.Fatal(err)
				}
				r.Close()
				s.Close()
			}
		})
		// As a FUSE server reads: ReadAt in order, 128 KiB at a time (no
		// whole-blob check).
		b.Run(kind+"/sequentialReadAt/cold", func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			buf := make([]byte, 128<<10)
			c0 := cpuTime()
			defer func() { reportCPU(b, cpuTime()-c0, int64(b.N)*int64(len(data))) }()
			for b.Loop() {
				s, err := Open(dir)
				if err != nil {
					b.Fatal(err)
				}
				r, err := s.OpenBlob(context.Background(), d)
				if err != nil {
					b.Fatal(err)
				}
				for off := int64(0); off < int64(len(data)); off += int64(len(buf)) {
					if _, err := r.ReadAt(buf, off); err != nil && err != io.EOF {
						b.Fatal(err)
					}
				}
				r.Close()
				s.Close()
			}
		})
		for _, size := range []int{4 << 10, 128 << 10} {
			b.Run(fmt.Sprintf("%s/random%dKiB", kind, size>>10), func(b *testing.B) {
				s, err := Open(dir, WithCacheSize(0))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				r, err := s.OpenBlob(context.Background(), d)
				if err != nil {
					b.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(1, 2))
				buf := make([]byte, size)
				b.SetBytes(int64(size))
				for b.Loop() {
					off := rng.Int64N(int64(len(data) - size))
					if _, err := r.ReadAt(buf, off); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkWriteWorkers stores a new 64 MiB blob with more or fewer
// workers: where creating a file waits on the disk (a busy ext4 journal),
// more workers than cores keep hashing while others wait.
func BenchmarkWriteWorkers(b *testing.B) {
	data := benchData(b, "random")[:64<<20]
	for _, n := range []int{2, 4, 8, 16} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				b.StopTimer()
				s, err := Open(b.TempDir(), WithWorkers(n))
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				putReader(b, s, bytes.NewReader(data))
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
		})
	}
}
