package nartest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// MixedStats describes a tree GenMixed made.
type MixedStats struct {
	Files, Dirs, Symlinks int
	Bytes                 int64
}

// GenMixed creates at root (which must not exist) a tree shaped like an
// installed package set, holding about totalBytes of file contents: many
// small files, some medium ones, a few large ones spanning many chunks,
// some executables and symlinks, in directories a few levels deep. Half of
// the data is random and half repetitive. The same seed gives the same tree.
func GenMixed(t testing.TB, root string, totalBytes int64, seed uint64) MixedStats {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 42))
	chacha := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 7})
	var st MixedStats
	buf := make([]byte, 1<<20)
	write := func(p string, size int64, mode os.FileMode) {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
		if err != nil {
			t.Fatal(err)
		}
		for left := size; left > 0; {
			n := min(left, int64(len(buf)))
			b := buf[:n]
			if rng.IntN(2) == 0 {
				chacha.Read(b)
			} else {
				c := byte(rng.Uint32())
				for i := range b {
					b[i] = c + byte(i%13)
				}
			}
			if _, err := f.Write(b); err != nil {
				t.Fatal(err)
			}
			left -= n
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		st.Files++
		st.Bytes += size
	}
	mkdir := func(p string) {
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		st.Dirs++
	}
	mkdir(root)
	dirs := []string{root}
	for i := 0; st.Bytes < totalBytes; i++ {
		// New directories now and then, under a random existing one.
		if rng.IntN(20) == 0 || len(dirs) < 4 {
			parent := dirs[rng.IntN(len(dirs))]
			if strings.Count(parent[len(root):], "/") < 6 {
				p := filepath.Join(parent, fmt.Sprintf("dir%d", i))
				mkdir(p)
				dirs = append(dirs, p)
			}
		}
		dir := dirs[rng.IntN(len(dirs))]
		var size int64
		switch r := rng.IntN(1000); {
		case r < 700:
			size = int64(rng.IntN(4 << 10))
		case r < 950:
			size = int64(4<<10 + rng.IntN(124<<10))
		case r < 995:
			size = int64(128<<10 + rng.IntN(1<<20))
		default:
			size = int64(1<<20 + rng.IntN(32<<20))
		}
		size = min(size, max(totalBytes-st.Bytes, 0))
		p := filepath.Join(dir, fmt.Sprintf("file%d", i))
		if rng.IntN(10) == 0 {
			if err := os.Symlink(fmt.Sprintf("../file%d", i-1), p+".link"); err != nil {
				t.Fatal(err)
			}
			st.Symlinks++
		}
		mode := os.FileMode(0o644)
		if rng.IntN(8) == 0 {
			mode = 0o755
		}
		write(p, size, mode)
	}
	return st
}
