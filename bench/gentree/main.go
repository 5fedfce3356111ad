// Command gentree writes a deterministic mixed file tree for benchmarks:
// many small text-like files, some medium ones, a few large binaries (half
// compressible, half random), executables, symlinks and empty directories,
// in nested directories, adding up to about -size bytes.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	size := flag.String("size", "1G", "total size of file contents (K, M, G suffixes)")
	seed := flag.Uint64("seed", 1, "random seed")
	single := flag.Bool("single", false, "write one file of -size random bytes instead of a tree")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: gentree [-size 1G] [-seed N] [-single] DIR\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	total, err := parseSize(*size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gentree:", err)
		os.Exit(2)
	}
	rng := rand.New(rand.NewPCG(*seed, *seed*7+1))
	if *single {
		err = writeFile(flag.Arg(0), total, rng, false, 0o644)
	} else {
		err = genTree(flag.Arg(0), total, rng)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gentree:", err)
		os.Exit(1)
	}
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
	if err != nil {
		return 0, fmt.Errorf("size %q: %v", s, err)
	}
	return n * mult, nil
}

// genTree spends about 15% of the bytes on small files (0.1–16 KiB), 25% on
// medium ones (64 KiB–2 MiB) and the rest on large ones (16–128 MiB).
func genTree(root string, total int64, rng *rand.Rand) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	budgets := []struct {
		bytes    int64
		min, max int64
	}{
		{total * 15 / 100, 100, 16 << 10},
		{total * 25 / 100, 64 << 10, 2 << 20},
		{total * 60 / 100, 16 << 20, 128 << 20},
	}
	n := 0
	for _, b := range budgets {
		for left := b.bytes; left > 0; n++ {
			sz := min(left, b.min+rng.Int64N(b.max-b.min))
			left -= sz
			dir := filepath.Join(root, fmt.Sprintf("d%02d", rng.IntN(24)), fmt.Sprintf("sub%d", rng.IntN(8)))
			if rng.IntN(5) == 0 {
				dir = filepath.Join(dir, "deep", "er", "still")
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if rng.IntN(10) == 0 {
				mode = 0o755
			}
			name := filepath.Join(dir, fmt.Sprintf("file-%d.%s", n, []string{"c", "h", "txt", "bin", "so"}[rng.IntN(5)]))
			if err := writeFile(name, sz, rng, sz < 64<<10 || rng.IntN(2) == 0, mode); err != nil {
				return err
			}
			if rng.IntN(20) == 0 {
				if err := os.Symlink(filepath.Base(name), name+".link"); err != nil {
					return err
				}
			}
		}
	}
	for i := range 20 {
		if err := os.MkdirAll(filepath.Join(root, "empty", strconv.Itoa(i)), 0o755); err != nil {
			return err
		}
	}
	return os.Symlink("/nix/store/dangling-target", filepath.Join(root, "dangling"))
}

var words = strings.Fields("the of and to in is that for it as with was on be at by this had not are but from or have an they which one you were her all she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last")

// writeFile writes size bytes: text-like when compressible, random otherwise.
func writeFile(name string, size int64, rng *rand.Rand, compressible bool, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		chunk := buf[:min(int64(len(buf)), left)]
		if compressible {
			i := 0
			for i < len(chunk) {
				i += copy(chunk[i:], words[rng.IntN(len(words))]+" ")
			}
		} else {
			for i := 0; i+8 <= len(chunk); i += 8 {
				v := rng.Uint64()
				for j := range 8 {
					chunk[i+j] = byte(v >> (8 * j))
				}
			}
		}
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return err
		}
		left -= int64(len(chunk))
	}
	return f.Close()
}
