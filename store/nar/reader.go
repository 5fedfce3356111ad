package nar

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// readBufferSize is the Reader's buffer for tokens. Reads of contents into
// buffers at least this large bypass it and go straight to the source.
const readBufferSize = 64 << 10

// maxTokenLen bounds the keywords of the format ("executable" is the
// longest); a longer string where a keyword belongs is rejected before it
// is read.
const maxTokenLen = 16

type readState uint8

const (
	stStart    readState = iota // before the magic
	stFile                      // a regular file's contents are being read
	stNodeDone                  // a node was read whole (symlink)
	stDirOpen                   // a directory was opened: entries or ")" follow
	stEOF                       // the root node ended at the end of input
)

type openDir struct {
	path string
	last string // previous entry name; "" before the first (no name is empty)
}

// Reader reads a NAR sequentially. Next advances to each node in NAR order
// (the root first) and, for a regular file, Read returns its contents.
// Contents not read before the next call to Next are skipped. The Reader
// buffers its input: it may read past the end of the NAR only to find
// trailing data, which is an error. After an error, every later call
// returns it. A Reader is used by one goroutine.
type Reader struct {
	br    *bufio.Reader
	off   int64 // bytes consumed from the NAR
	state readState
	stack []openDir
	cur   string // path of the current node, for errors
	err   error

	remaining uint64 // contents of the current file not yet read
	padding   int    // zero bytes after the current file's contents

	scratch [maxTokenLen]byte
	padBuf  [8]byte // apart from scratch, which holds the token being checked
}

// NewReader returns a Reader of the NAR in r. Nothing is read until Next.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, readBufferSize)}
}

// Next advances to the next node and returns its header. It returns io.EOF
// after the root node has ended and the input has ended with it; data after
// the root is an error. Errors about the data wrap ErrInvalid and, when the
// input ends early, io.ErrUnexpectedEOF; errors of the source are returned
// wrapped with the position.
func (r *Reader) Next() (*Header, error) {
	if r.err != nil {
		return nil, r.err
	}
	h, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	return h, nil
}

func (r *Reader) next() (*Header, error) {
	switch r.state {
	case stStart:
		if err := r.expect("/", magic); err != nil {
			return nil, err
		}
		return r.node("/")
	case stFile:
		if err := r.skipContents(); err != nil {
			return nil, err
		}
		if err := r.expect(r.cur, ")"); err != nil {
			return nil, err
		}
		return r.afterNode()
	case stNodeDone:
		return r.afterNode()
	case stDirOpen:
		return r.dirNext()
	case stEOF:
		return nil, io.EOF
	}
	panic("nar: bad reader state")
}

// afterNode continues after a node has been read whole: it closes the
// entry that holds the node, or ends the NAR after the root.
func (r *Reader) afterNode() (*Header, error) {
	if len(r.stack) == 0 {
		return nil, r.finish()
	}
	if err := r.expect(r.cur, ")"); err != nil {
		return nil, err
	}
	return r.dirNext()
}

// dirNext reads the next entry of the innermost open directory, closing
// directories that end on the way.
func (r *Reader) dirNext() (*Header, error) {
	for {
		top := &r.stack[len(r.stack)-1]
		r.cur = top.path
		tok, err := r.token(top.path, `"entry" or ")"`)
		if err != nil {
			return nil, err
		}
		switch string(tok) {
		case "entry":
			if err := r.expect(top.path, "("); err != nil {
				return nil, err
			}
			if err := r.expect(top.path, "name"); err != nil {
				return nil, err
			}
			b, err := r.readString(top.path, "entry name", MaxNameLen)
			if err != nil {
				return nil, err
			}
			name := string(b)
			if msg := checkName(name); msg != "" {
				return nil, r.invalid(top.path, msg)
			}
			if top.last != "" && name <= top.last {
				if name == top.last {
					return nil, r.invalid(top.path, fmt.Sprintf("duplicate entry %q", name))
				}
				return nil, r.invalid(top.path, fmt.Sprintf("entry %q is not sorted after %q", name, top.last))
			}
			top.last = name
			if err := r.expect(top.path, "node"); err != nil {
				return nil, err
			}
			return r.node(childPath(top.path, name))
		case ")":
			r.stack = r.stack[:len(r.stack)-1]
			if len(r.stack) == 0 {
				return nil, r.finish()
			}
			if err := r.expect(top.path, ")"); err != nil {
				return nil, err
			}
		default:
			return nil, r.invalid(top.path, fmt.Sprintf(`expected "entry" or ")", got %q`, tok))
		}
	}
}

// finish checks that the input ends right after the root node.
func (r *Reader) finish() error {
	r.cur = "/"
	_, err := r.br.ReadByte()
	switch {
	case err == nil:
		return r.invalid("/", "data after the end of the root node")
	case errors.Is(err, io.EOF):
		r.state = stEOF
		return io.EOF
	default:
		return fmt.Errorf("nar: reading after the root node at byte %d: %w", r.off, err)
	}
}

// node reads a node's opening up to its contents (regular file), its end
// (symlink) or its first entry (directory).
func (r *Reader) node(path string) (*Header, error) {
	r.cur = path
	if err := r.expect(path, "("); err != nil {
		return nil, err
	}
	if err := r.expect(path, "type"); err != nil {
		return nil, err
	}
	tok, err := r.token(path, "node type")
	if err != nil {
		return nil, err
	}
	switch string(tok) {
	case "regular":
		h := &Header{Path: path, Type: TypeRegular}
		tok, err := r.token(path, `"executable" or "contents"`)
		if err != nil {
			return nil, err
		}
		if string(tok) == "executable" {
			h.Executable = true
			if _, err := r.readString(path, "executable marker (must be empty)", 0); err != nil {
				return nil, err
			}
			if tok, err = r.token(path, `"contents"`); err != nil {
				return nil, err
			}
		}
		if string(tok) != "contents" {
			return nil, r.invalid(path, fmt.Sprintf(`expected "contents", got %q`, tok))
		}
		n, err := r.u64(path, "contents length")
		if err != nil {
			return nil, err
		}
		if n > math.MaxInt64 {
			return nil, r.invalid(path, fmt.Sprintf("contents length %d is too large", n))
		}
		h.Size = int64(n)
		r.remaining, r.padding = n, pad(n)
		r.state = stFile
		return h, nil
	case "symlink":
		if err := r.expect(path, "target"); err != nil {
			return nil, err
		}
		b, err := r.readString(path, "symlink target", MaxTargetLen)
		if err != nil {
			return nil, err
		}
		target := string(b)
		if msg := checkTarget(target); msg != "" {
			return nil, r.invalid(path, msg)
		}
		if err := r.expect(path, ")"); err != nil {
			return nil, err
		}
		r.state = stNodeDone
		return &Header{Path: path, Type: TypeSymlink, LinkTarget: target}, nil
	case "directory":
		r.stack = append(r.stack, openDir{path: path})
		r.state = stDirOpen
		return &Header{Path: path, Type: TypeDirectory}, nil
	}
	return nil, r.invalid(path, fmt.Sprintf("unknown node type %q", tok))
}

// Read reads the current regular file's contents. It returns io.EOF at the
// end of them, and at once for other node types.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.state != stFile || r.remaining == 0 {
		return 0, io.EOF
	}
	if uint64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	n, err := r.br.Read(p)
	r.remaining -= uint64(n)
	r.off += int64(n)
	if err != nil {
		r.err = r.readErr(r.cur, "file contents", err)
		return n, r.err
	}
	return n, nil
}

// skipContents discards unread contents and checks the padding.
func (r *Reader) skipContents() error {
	for r.remaining > 0 {
		chunk := int(min(r.remaining, 1<<30))
		n, err := r.br.Discard(chunk)
		r.remaining -= uint64(n)
		r.off += int64(n)
		if err != nil {
			return r.readErr(r.cur, "file contents", err)
		}
	}
	return r.checkPadding(r.cur, "file contents", r.padding)
}

// u64 reads a little-endian uint64.
func (r *Reader) u64(path, what string) (uint64, error) {
	if err := r.full(path, what, r.scratch[:8]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(r.scratch[:8]), nil
}

// readString reads a string of at most max bytes and its padding. The
// result aliases the reader's buffer: it is valid until the next read.
func (r *Reader) readString(path, what string, max int) ([]byte, error) {
	n, err := r.u64(path, what+" length")
	if err != nil {
		return nil, err
	}
	if n > uint64(max) {
		if max == 0 {
			return nil, r.invalid(path, fmt.Sprintf("%s has %d bytes", what, n))
		}
		return nil, r.invalid(path, fmt.Sprintf("%s of %d bytes is longer than %d", what, n, max))
	}
	b, err := r.br.Peek(int(n))
	if err != nil {
		return nil, r.readErr(path, what, err)
	}
	// Peek's slice lives until the next read; Discard only advances.
	r.br.Discard(int(n))
	r.off += int64(n)
	if err := r.checkPadding(path, what, pad(n)); err != nil {
		return nil, err
	}
	return b, nil
}

// token reads a keyword: a string of at most maxTokenLen bytes.
func (r *Reader) token(path, what string) ([]byte, error) {
	n, err := r.u64(path, what)
	if err != nil {
		return nil, err
	}
	if n > maxTokenLen {
		return nil, r.invalid(path, fmt.Sprintf("expected %s, got a string of %d bytes", what, n))
	}
	b := r.scratch[:n]
	if err := r.full(path, what, b); err != nil {
		return nil, err
	}
	if err := r.checkPadding(path, what, pad(n)); err != nil {
		return nil, err
	}
	return b, nil
}

// quoted names the keywords in errors without formatting on every read.
var quoted = map[string]string{
	magic: "NAR magic", "(": `"("`, ")": `")"`, "type": `"type"`, "name": `"name"`,
	"node": `"node"`, "target": `"target"`, "entry": `"entry"`, "contents": `"contents"`,
}

// expect reads a keyword and checks it is want.
func (r *Reader) expect(path, want string) error {
	what, ok := quoted[want]
	if !ok {
		what = fmt.Sprintf("%q", want)
	}
	tok, err := r.token(path, what)
	if err != nil {
		if want == magic && errors.Is(err, ErrInvalid) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return r.invalid(path, "not a NAR (bad magic)")
		}
		return err
	}
	if string(tok) != want {
		if want == magic {
			return r.invalid(path, fmt.Sprintf("not a NAR (magic %q)", tok))
		}
		return r.invalid(path, fmt.Sprintf("expected %q, got %q", want, tok))
	}
	return nil
}

// checkPadding reads n padding bytes and checks they are zero.
func (r *Reader) checkPadding(path, what string, n int) error {
	if n == 0 {
		return nil
	}
	b := r.padBuf[:n]
	m, err := io.ReadFull(r.br, b)
	r.off += int64(m)
	if err != nil {
		return r.readErr(path, "padding of "+what, err)
	}
	for _, c := range b {
		if c != 0 {
			return r.invalid(path, fmt.Sprintf("non-zero padding after %s", what))
		}
	}
	return nil
}

// full reads exactly len(b) bytes.
func (r *Reader) full(path, what string, b []byte) error {
	n, err := io.ReadFull(r.br, b)
	r.off += int64(n)
	if err != nil {
		return r.readErr(path, what, err)
	}
	return nil
}

func (r *Reader) invalid(path, msg string) error {
	return fmt.Errorf("%w: %s (at %s, byte %d)", ErrInvalid, msg, path, r.off)
}

// readErr turns a read error into the reader's error: the end of input
// inside the NAR is truncation; other errors are the source's.
func (r *Reader) readErr(path, what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated while reading %s (at %s, byte %d): %w", ErrInvalid, what, path, r.off, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("nar: reading %s (at %s, byte %d): %w", what, path, r.off, err)
}
