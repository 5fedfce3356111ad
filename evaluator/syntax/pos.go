package syntax

import (
	"sort"
	"strconv"
	"sync"
)

// Pos is a compact source position: an offset into a FileSet's address
// space. The zero Pos is "no position".
type Pos int32

// NoPos is the zero position, printed as "undefined position".
const NoPos Pos = 0

// IsValid reports whether p refers to a source position.
func (p Pos) IsValid() bool { return p != NoPos }

// File is one source text registered in a FileSet.
type File struct {
	// Name is what positions print: an absolute path for files, or a
	// marker such as "«string»" or "«stdin»" for sources without a file.
	Name string
	// Path is the file system path for files (empty otherwise); it is
	// what `path` of unsafeGetAttrPos and __curPos reports.
	Path string
	// Src is the full source text.
	Src []byte
	// NoExcerpt marks a source whose lines error reports do not quote:
	// Nix cannot read back its built-in sources (//builtin/derivation.nix),
	// so it prints only their position.
	NoExcerpt bool
	base      int

	once  sync.Once
	lines []int // offsets of line starts, computed lazily
}

// IsFile reports whether the source came from a file (not -E or stdin).
func (f *File) IsFile() bool { return f.Path != "" }

// Base is the Pos of the file's first byte.
func (f *File) Base() Pos { return Pos(f.base) }

// Pos returns the position of byte offset off in the file.
func (f *File) Pos(off int) Pos { return Pos(f.base + off) }

// Offset returns the byte offset of p within the file.
func (f *File) Offset(p Pos) int { return int(p) - f.base }

func (f *File) computeLines() {
	f.once.Do(func() {
		lines := []int{0}
		src := f.Src
		for i := 0; i < len(src); i++ {
			switch src[i] {
			case '\n':
				lines = append(lines, i+1)
			case '\r':
				if i+1 < len(src) && src[i+1] == '\n' {
					i++
				}
				lines = append(lines, i+1)
			}
		}
		f.lines = lines
	})
}

// LineCol returns the 1-based line and column (in bytes) of offset off.
func (f *File) LineCol(off int) (line, col int) {
	f.computeLines()
	i := sort.Search(len(f.lines), func(i int) bool { return f.lines[i] > off }) - 1
	if i < 0 {
		i = 0
	}
	return i + 1, off - f.lines[i] + 1
}

// Line returns the text of the 1-based line n without its line break, and
// whether it exists.
func (f *File) Line(n int) ([]byte, bool) {
	f.computeLines()
	if n < 1 || n > len(f.lines) {
		return nil, false
	}
	// The empty "line" after a final line break does not exist.
	if n == len(f.lines) && n > 1 && f.lines[n-1] == len(f.Src) {
		return nil, false
	}
	start := f.lines[n-1]
	end := len(f.Src)
	if n < len(f.lines) {
		end = f.lines[n]
	}
	l := f.Src[start:end]
	for len(l) > 0 && (l[len(l)-1] == '\n' || l[len(l)-1] == '\r') {
		l = l[:len(l)-1]
	}
	return l, true
}

// Position is a resolved source position.
type Position struct {
	File   *File
	Line   int
	Column int
}

// IsValid reports whether the position refers to a source.
func (p Position) IsValid() bool { return p.File != nil }

// String prints file:line:col the way Nix prints a position in a message
// header ("«string»:1:2", "/abs/path.nix:3:4").
func (p Position) String() string {
	if p.File == nil {
		return "undefined position"
	}
	return p.File.Name + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Column)
}

// Inline prints the position as Nix 2.8 prints it inside messages, where a
// source without a file shows as "(string)" rather than "«string»".
func (p Position) Inline() string {
	if p.File == nil {
		return "undefined position"
	}
	name := p.File.Name
	if !p.File.IsFile() {
		switch name {
		case "«string»":
			name = "(string)"
		case "«stdin»":
			name = "(stdin)"
		}
	}
	return name + ":" + strconv.Itoa(p.Line) + ":" + strconv.Itoa(p.Column)
}

// FileSet hands out disjoint Pos ranges to source files and resolves Pos
// values back to files. It is safe for concurrent use.
type FileSet struct {
	mu    sync.RWMutex
	base  int
	files []*File
}

// NewFileSet returns an empty FileSet.
func NewFileSet() *FileSet { return &FileSet{base: 1} }

// AddFile registers a source. name is what positions print; path is the
// file's path (empty for -E expressions and stdin).
func (s *FileSet) AddFile(name, path string, src []byte) *File {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &File{Name: name, Path: path, Src: src, base: s.base}
	// One extra offset so that the end-of-file position is inside the range.
	s.base += len(src) + 1
	s.files = append(s.files, f)
	return f
}

// File returns the file containing p, or nil.
func (s *FileSet) File(p Pos) *File {
	if p == NoPos {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	i := sort.Search(len(s.files), func(i int) bool { return s.files[i].base > int(p) }) - 1
	if i < 0 {
		return nil
	}
	return s.files[i]
}

// Position resolves p.
func (s *FileSet) Position(p Pos) Position {
	f := s.File(p)
	if f == nil {
		return Position{}
	}
	l, c := f.LineCol(f.Offset(p))
	return Position{File: f, Line: l, Column: c}
}
