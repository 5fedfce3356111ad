package nar

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// writeBufferSize is the Writer's buffer for tokens; contents written in
// larger pieces go straight to the destination.
const writeBufferSize = 64 << 10

// Writer writes a NAR. WriteHeader starts each node in NAR order (the root
// first, at path "/"; then each entry after its directory, entries of a
// directory in increasing name order); Write supplies a regular file's
// contents, exactly Header.Size bytes of them (empty writes are allowed
// anywhere); Close ends the NAR. The
// Writer checks all of that and returns errors wrapping ErrInvalid instead
// of writing a malformed NAR. Output is buffered: Flush or Close pushes it
// out. Close does not close the destination. After an error every later
// call returns it. A Writer is used by one goroutine.
type Writer struct {
	bw    *bufio.Writer
	stack []openDir // open directories, innermost last
	cur   string    // path of the current node
	err   error

	started   bool
	inFile    bool   // the current node is a regular file
	remaining uint64 // contents the current file still needs
	padding   int
	closed    bool
	scratch   [8]byte
}

// NewWriter returns a Writer that writes a NAR to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, writeBufferSize)}
}

// WriteHeader ends the previous node, closing directories as h.Path
// requires, and starts the node h describes.
func (w *Writer) WriteHeader(h *Header) error {
	if w.err != nil {
		return w.err
	}
	if err := w.writeHeader(h); err != nil {
		w.err = err
		return err
	}
	return nil
}

func (w *Writer) writeHeader(h *Header) error {
	if w.closed {
		return w.invalid(h.Path, "header after Close")
	}
	if !w.started {
		if h.Path != "/" {
			return w.invalid(h.Path, `the first node must have path "/"`)
		}
		w.started = true
		w.str(magic)
		return w.node(h)
	}
	if err := w.endFile(); err != nil {
		return err
	}
	dir, name := parentPath(h.Path)
	if dir == "" {
		return w.invalid(h.Path, "a second root node")
	}
	if msg := checkName(name); msg != "" {
		return w.invalid(h.Path, msg)
	}
	// Close directories until the parent is innermost.
	for len(w.stack) > 0 && w.stack[len(w.stack)-1].path != dir {
		w.closeDir()
	}
	if len(w.stack) == 0 {
		return w.invalid(h.Path, "not inside an open directory (headers must come in NAR order)")
	}
	top := &w.stack[len(w.stack)-1]
	if top.last != "" && name <= top.last {
		return w.invalid(h.Path, fmt.Sprintf("entry %q does not sort after %q", name, top.last))
	}
	top.last = name
	w.str("entry")
	w.str("(")
	w.str("name")
	w.str(name)
	w.str("node")
	return w.node(h)
}

// node writes a node's opening and, for a symlink, its end.
func (w *Writer) node(h *Header) error {
	w.cur = h.Path
	switch h.Type {
	case TypeRegular:
		if h.Size < 0 {
			return w.invalid(h.Path, fmt.Sprintf("negative size %d", h.Size))
		}
		w.str("(")
		w.str("type")
		w.str("regular")
		if h.Executable {
			w.str("executable")
			w.str("")
		}
		w.str("contents")
		w.u64(uint64(h.Size))
		w.inFile, w.remaining, w.padding = true, uint64(h.Size), pad(uint64(h.Size))
	case TypeSymlink:
		if msg := checkTarget(h.LinkTarget); msg != "" {
			return w.invalid(h.Path, msg)
		}
		w.str("(")
		w.str("type")
		w.str("symlink")
		w.str("target")
		w.str(h.LinkTarget)
		w.str(")")
		w.endEntry()
	case TypeDirectory:
		w.str("(")
		w.str("type")
		w.str("directory")
		w.stack = append(w.stack, openDir{path: h.Path})
	default:
		return w.invalid(h.Path, fmt.Sprintf("unknown node type %v", h.Type))
	}
	return w.flushErr()
}

// endFile ends the current regular file, if any.
func (w *Writer) endFile() error {
	if !w.inFile {
		return nil
	}
	if w.remaining != 0 {
		return w.invalid(w.cur, fmt.Sprintf("%d bytes of contents missing", w.remaining))
	}
	w.inFile = false
	w.bw.Write(zeros[:w.padding])
	w.str(")")
	w.endEntry()
	return nil
}

// endEntry closes the entry holding the node just ended, if it has one.
func (w *Writer) endEntry() {
	if len(w.stack) > 0 {
		w.str(")")
	}
}

// closeDir ends the innermost open directory.
func (w *Writer) closeDir() {
	w.stack = w.stack[:len(w.stack)-1]
	w.str(")")
	w.endEntry()
}

// Write writes contents of the current regular file. Writing more than
// its Size is an error.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !w.inFile {
		w.err = w.invalid(w.cur, "contents written outside a regular file")
		return 0, w.err
	}
	var tooLong bool
	if uint64(len(p)) > w.remaining {
		p, tooLong = p[:w.remaining], true
	}
	n, err := w.bw.Write(p)
	w.remaining -= uint64(n)
	if err != nil {
		w.err = fmt.Errorf("nar: writing contents of %s: %w", w.cur, err)
		return n, w.err
	}
	if tooLong {
		w.err = w.invalid(w.cur, "contents longer than the header's size")
		return n, w.err
	}
	return n, nil
}

// Flush writes buffered data to the destination.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("nar: write: %w", err)
		return w.err
	}
	return nil
}

// Close ends the open file and directories and flushes the NAR. A NAR
// without a root node is an error. Close does not close the destination.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	if !w.started {
		w.err = w.invalid("/", "no root node written")
		return w.err
	}
	if err := w.endFile(); err != nil {
		w.err = err
		return err
	}
	for len(w.stack) > 0 {
		w.closeDir()
	}
	w.closed = true
	return w.Flush()
}

func (w *Writer) u64(n uint64) {
	binary.LittleEndian.PutUint64(w.scratch[:], n)
	w.bw.Write(w.scratch[:])
}

// zeros is padding; package level so that writing it allocates nothing.
var zeros [8]byte

// str writes a string with its length and padding. Write errors stick in
// the bufio.Writer and surface at flushErr, Flush or Close.
func (w *Writer) str(s string) {
	w.u64(uint64(len(s)))
	w.bw.WriteString(s)
	w.bw.Write(zeros[:pad(uint64(len(s)))])
}

// flushErr reports a write error the buffer has hit, without flushing.
func (w *Writer) flushErr() error {
	// bufio.Writer keeps its first error and returns it from every write;
	// an empty write reveals it.
	if _, err := w.bw.Write(nil); err != nil {
		return fmt.Errorf("nar: write: %w", err)
	}
	return nil
}

func (w *Writer) invalid(path, msg string) error {
	return fmt.Errorf("%w: %s (writing %s)", ErrInvalid, msg, path)
}

var _ io.WriteCloser = (*Writer)(nil)
var _ io.Reader = (*Reader)(nil)
