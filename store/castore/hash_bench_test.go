package castore_test

// Hash throughput per core, to choose the BLAKE3 implementation by
// measurement. Run with one core so the figures are per core:
//
//	go test ./store/castore -run '^$' -bench Hash -cpu 1
//
// SHA-256 is here because every NAR hash is one; it sets the pace the
// BLAKE3 passes of the write path have to keep up with.

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"math/rand/v2"
	"testing"

	lblake3 "lukechampine.com/blake3"

	zblake3 "github.com/zeebo/blake3"
)

// hashSizes cover a small file, a chunk of the 256 KiB-average chunker, and
// a large streamed blob.
var hashSizes = []int{4 << 10, 256 << 10, 16 << 20}

func hashInput(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// benchHash measures streaming through a hash.Hash in 64 KiB writes (how
// the write path feeds it), then Sum.
func benchHash(b *testing.B, newHash func() hash.Hash) {
	for _, n := range hashSizes {
		data := hashInput(n)
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			h := newHash()
			var sum [64]byte
			for b.Loop() {
				h.Reset()
				for rest := data; len(rest) > 0; {
					k := min(len(rest), 64<<10)
					h.Write(rest[:k])
					rest = rest[k:]
				}
				h.Sum(sum[:0])
			}
		})
	}
}

func BenchmarkHashBLAKE3Zeebo(b *testing.B) {
	benchHash(b, func() hash.Hash { return zblake3.New() })
}

func BenchmarkHashBLAKE3Lukechampine(b *testing.B) {
	benchHash(b, func() hash.Hash { return lblake3.New(32, nil) })
}

func BenchmarkHashSHA256(b *testing.B) {
	benchHash(b, sha256.New)
}

// One-shot sums, as used for whole small blobs and single chunks.
func BenchmarkHashSumBLAKE3Zeebo(b *testing.B) {
	for _, n := range hashSizes {
		data := hashInput(n)
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				zblake3.Sum256(data)
			}
		})
	}
}

func BenchmarkHashSumBLAKE3Lukechampine(b *testing.B) {
	for _, n := range hashSizes {
		data := hashInput(n)
		b.Run(fmt.Sprintf("%dKiB", n>>10), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				lblake3.Sum256(data)
			}
		})
	}
}
