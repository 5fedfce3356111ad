package nartest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Names that stress sorting and validity: all valid castore and NAR names.
var oddNames = []string{
	"with space", "ünïcödé", "日本語", "emoji-🦫", "tab\there", "new\nline",
	"\x01ctl", "\xff\xfe-not-utf8", "...", ".hidden", "a..b", "-dash", "A", "B",
	"a", "a-", "a.b", "a0", "Z~", "quote\"'", "back\\slash", "*?[glob]",
	strings.Repeat("n", 255),
}

// TreeOptions shapes a generated tree.
type TreeOptions struct {
	// Entries is roughly how many entries to create (default 60).
	Entries int
	// MaxDepth bounds directory nesting below the root (default 6); one
	// chain always reaches it.
	MaxDepth int
	// LargeFiles adds a few files spanning several 256 KiB chunks.
	LargeFiles bool
}

type gen struct {
	t    testing.TB
	rng  *rand.Rand
	opt  TreeOptions
	left int
}

// GenTree creates a random tree at root (which must not exist) from seed:
// the same seed gives the same tree. It covers regular, executable
// (0755 and owner-only 0744), group-only-executable (0654, not executable
// to Nix) and empty files; symlinks relative, absolute, dangling and to
// directories; empty directories, one chain MaxDepth deep, and odd names.
func GenTree(t testing.TB, root string, seed uint64, opt TreeOptions) {
	t.Helper()
	if opt.Entries == 0 {
		opt.Entries = 60
	}
	if opt.MaxDepth == 0 {
		opt.MaxDepth = 6
	}
	g := &gen{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), opt: opt, left: opt.Entries}
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	// Fixed corners first, so every tree has them.
	g.file(filepath.Join(root, "empty"), 0, 0o644)
	g.file(filepath.Join(root, "exec"), 100, 0o755)
	g.file(filepath.Join(root, "owner-x"), 9, 0o744)
	g.file(filepath.Join(root, "group-x"), 17, 0o654)
	g.symlink(filepath.Join(root, "dangling"), "does/not/exist")
	g.symlink(filepath.Join(root, "absolute"), "/nix/store/00000000000000000000000000000000-x")
	g.symlink(filepath.Join(root, "to-dir"), "emptydir")
	g.mkdir(filepath.Join(root, "emptydir"))
	if opt.LargeFiles {
		g.file(filepath.Join(root, "large"), 3*256<<10+12345, 0o644)
		g.file(filepath.Join(root, "large-exec"), 5*256<<10+7, 0o755)
	}
	deep := root
	for i := range opt.MaxDepth {
		deep = filepath.Join(deep, fmt.Sprintf("d%d", i))
		g.mkdir(deep)
	}
	g.file(filepath.Join(deep, "bottom"), 33, 0o644)
	g.fill(root, 0)
}

func (g *gen) fill(dir string, depth int) {
	n := 2 + g.rng.IntN(8)
	for i := 0; i < n && g.left > 0; i++ {
		g.left--
		name := g.name()
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		switch r := g.rng.IntN(10); {
		case r < 5:
			mode := os.FileMode(0o644)
			if g.rng.IntN(4) == 0 {
				mode = 0o755
			}
			g.file(p, g.size(), mode)
		case r < 7:
			targets := []string{"../x", "/etc/passwd", name, "a b/c", strings.Repeat("t/", 300)}
			g.symlink(p, targets[g.rng.IntN(len(targets))])
		default:
			g.mkdir(p)
			if depth < g.opt.MaxDepth && g.rng.IntN(3) > 0 {
				g.fill(p, depth+1)
			}
		}
	}
}

func (g *gen) name() string {
	if g.rng.IntN(3) == 0 {
		return oddNames[g.rng.IntN(len(oddNames))]
	}
	return fmt.Sprintf("f%d", g.rng.IntN(1000))
}

func (g *gen) size() int {
	switch r := g.rng.IntN(20); {
	case r == 0:
		return 0
	case r < 15:
		return g.rng.IntN(2000)
	default:
		return g.rng.IntN(70000)
	}
}

func (g *gen) file(p string, size int, mode os.FileMode) {
	data := make([]byte, size)
	fillRandom(g.rng, data)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		g.t.Fatal(err)
	}
	// WriteFile's mode is masked by umask; set it exactly.
	if err := os.Chmod(p, mode); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gen) symlink(p, target string) {
	if err := os.Symlink(target, p); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gen) mkdir(p string) {
	if err := os.Mkdir(p, 0o755); err != nil {
		g.t.Fatal(err)
	}
}

// fillRandom fills b with bytes that are half random, half repetitive, like
// real files (so chunkers and compressors see both).
func fillRandom(rng *rand.Rand, b []byte) {
	for i := 0; i < len(b); {
		run := min(len(b)-i, 1+rng.IntN(4096))
		if rng.IntN(2) == 0 {
			for j := range run {
				b[i+j] = byte(rng.Uint32())
			}
		} else {
			c := byte(rng.Uint32())
			for j := range run {
				b[i+j] = c + byte(j%7)
			}
		}
		i += run
	}
}
