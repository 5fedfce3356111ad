package nixexport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// ErrInvalid is wrapped by errors about malformed streams.
var ErrInvalid = errors.New("invalid export stream")

// exportMagic precedes each path's metadata ("NIXE").
const exportMagic = 0x4558494e

// maxToken bounds NAR tokens other than file contents, and strings of the
// metadata (a store path is at most 255 bytes, a symlink target 4095).
const maxToken = 64 << 10

// Store is what Import writes to and Export reads from.
type Store struct {
	Blobs interface {
		castore.BlobIngester
		castore.BlobOpener
	}
	Directories interface {
		castore.DirectoryIngester
		castore.DirectoryGetter
	}
	PathInfos interface {
		pathinfo.Getter
		pathinfo.Putter
	}
}

// Import reads an export stream and registers each path in it, in stream
// order, calling done (if not nil) after each. A path's tree is in the
// castore before its PathInfo is put. It stops at the first error,
// leaving the paths registered so far; malformed input is an error
// wrapping ErrInvalid.
func Import(ctx context.Context, r io.Reader, st Store, done func(*pathinfo.PathInfo)) ([]*pathinfo.PathInfo, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	var out []*pathinfo.PathInfo
	for i := 0; ; i++ {
		n, err := readU64(br)
		if err != nil {
			return out, fmt.Errorf("%w: path %d: %v", ErrInvalid, i, err)
		}
		if n == 0 {
			return out, nil
		}
		if n != 1 {
			return out, fmt.Errorf("%w: path %d: expected 1 or 0, found %d", ErrInvalid, i, n)
		}
		info, err := importOne(ctx, br, st)
		if err != nil {
			return out, fmt.Errorf("path %d: %w", i, err)
		}
		out = append(out, info)
		if done != nil {
			done(info)
		}
	}
}

func importOne(ctx context.Context, br *bufio.Reader, st Store) (*pathinfo.PathInfo, error) {
	pr, pw := io.Pipe()
	type ingested struct {
		root castore.Node
		size uint64
		sum  [32]byte
		err  error
	}
	res := make(chan ingested, 1)
	go func() {
		var g ingested
		g.root, g.size, g.sum, g.err = nar.Ingest(ctx, pr, st.Blobs, st.Directories)
		pr.CloseWithError(errors.New("ingestion stopped"))
		res <- g
	}()
	cerr := copyNAR(pw, br)
	pw.CloseWithError(cerr)
	g := <-res
	if cerr != nil {
		return nil, cerr
	}
	if g.err != nil {
		return nil, g.err
	}
	magic, err := readU64(br)
	if err != nil || magic != exportMagic {
		return nil, fmt.Errorf("%w: expected the export magic after the NAR (%x, %v)", ErrInvalid, magic, err)
	}
	p, err := readString(br)
	if err != nil {
		return nil, err
	}
	sp, err := nixpath.ParseAbsolute(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	info := &pathinfo.PathInfo{StorePath: sp, Node: g.root, NarSize: g.size, NarSHA256: g.sum}
	nrefs, err := readU64(br)
	if err != nil {
		return nil, err
	}
	if nrefs > 1<<20 {
		return nil, fmt.Errorf("%w: %s: %d references", ErrInvalid, p, nrefs)
	}
	for range nrefs {
		rs, err := readString(br)
		if err != nil {
			return nil, err
		}
		ref, err := nixpath.ParseAbsolute(rs)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: reference: %v", ErrInvalid, p, err)
		}
		info.References = append(info.References, ref)
	}
	info.SortReferences()
	d, err := readString(br)
	if err != nil {
		return nil, err
	}
	if d != "" {
		dp, err := nixpath.ParseAbsolute(d)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: deriver: %v", ErrInvalid, p, err)
		}
		info.Deriver = &dp
	}
	sig, err := readU64(br)
	if err != nil {
		return nil, err
	}
	switch sig {
	case 0:
	case 1:
		// A legacy signature; Nix ignores it on import too.
		if _, err := readString(br); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: %s: signature flag %d", ErrInvalid, p, sig)
	}
	stored, err := st.PathInfos.Put(ctx, info)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return stored, nil
}

func readU64(r io.Reader) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

func pad(n uint64) int { return int((8 - n%8) % 8) }

func readString(r io.Reader) (string, error) {
	n, err := readU64(r)
	if err != nil {
		return "", err
	}
	if n > maxToken {
		return "", fmt.Errorf("%w: string of %d bytes", ErrInvalid, n)
	}
	b := make([]byte, int(n)+pad(n))
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, io.ErrUnexpectedEOF)
	}
	for _, c := range b[n:] {
		if c != 0 {
			return "", fmt.Errorf("%w: non-zero padding", ErrInvalid)
		}
	}
	return string(b[:n]), nil
}

// copyNAR copies exactly one NAR from src to dst: it follows the NAR's
// structure only as far as needed to find its end (strings after "name",
// "target" and "type" are values, the one after "contents" is file data),
// leaving validation to the NAR reader on the other side.
func copyNAR(dst io.Writer, src *bufio.Reader) error {
	depth := 0
	prev := ""
	first := true
	for {
		n, err := readU64(src)
		if err != nil {
			return fmt.Errorf("%w: NAR: %v", ErrInvalid, err)
		}
		var hdr [8]byte
		binary.LittleEndian.PutUint64(hdr[:], n)
		if _, err := dst.Write(hdr[:]); err != nil {
			return err
		}
		if prev == "contents" {
			// File data: stream it.
			if _, err := io.CopyN(dst, src, int64(n)+int64(pad(n))); err != nil {
				return fmt.Errorf("%w: NAR contents: %v", ErrInvalid, err)
			}
			prev = ""
			continue
		}
		if n > maxToken {
			return fmt.Errorf("%w: NAR token of %d bytes", ErrInvalid, n)
		}
		b := make([]byte, int(n)+pad(n))
		if _, err := io.ReadFull(src, b); err != nil {
			return fmt.Errorf("%w: NAR: %v", ErrInvalid, io.ErrUnexpectedEOF)
		}
		if _, err := dst.Write(b); err != nil {
			return err
		}
		tok := string(b[:n])
		if first {
			if tok != "nix-archive-1" {
				return fmt.Errorf("%w: not a NAR (starts with %q)", ErrInvalid, tok)
			}
			first = false
			continue
		}
		switch prev {
		case "name", "target", "type":
			prev = ""
			continue
		}
		switch tok {
		case "(":
			depth++
		case ")":
			depth--
			if depth == 0 {
				return nil
			}
			if depth < 0 {
				return fmt.Errorf("%w: unbalanced NAR", ErrInvalid)
			}
		}
		prev = tok
	}
}

// Export writes paths (absolute store paths in st) as an export stream,
// each after the paths among them it refers to, as Nix orders them.
func Export(ctx context.Context, w io.Writer, st Store, paths []nixpath.StorePath) error {
	infos := map[nixpath.StorePath]*pathinfo.PathInfo{}
	for _, p := range paths {
		info, err := st.PathInfos.Get(ctx, p.Digest)
		if err == nil && info.StorePath != p {
			err = pathinfo.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p.Absolute(), err)
		}
		infos[p] = info
	}
	// References first; ties in name order, for a stable stream.
	keys := make([]nixpath.StorePath, 0, len(infos))
	for p := range infos {
		keys = append(keys, p)
	}
	slices.SortFunc(keys, nixpath.StorePath.Compare)
	var order []*pathinfo.PathInfo
	state := map[nixpath.StorePath]int{}
	var visit func(p nixpath.StorePath)
	visit = func(p nixpath.StorePath) {
		if state[p] != 0 {
			return
		}
		state[p] = 1
		for _, r := range infos[p].References {
			if _, ok := infos[r]; ok && r != p {
				visit(r)
			}
		}
		state[p] = 2
		order = append(order, infos[p])
	}
	for _, p := range keys {
		visit(p)
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	for _, info := range order {
		writeU64(bw, 1)
		if err := nar.Render(ctx, bw, info.Node, st.Blobs, st.Directories); err != nil {
			return fmt.Errorf("%s: %w", info.StorePath.Absolute(), err)
		}
		writeU64(bw, exportMagic)
		writeString(bw, info.StorePath.Absolute())
		writeU64(bw, uint64(len(info.References)))
		for _, r := range info.References {
			writeString(bw, r.Absolute())
		}
		d := ""
		if info.Deriver != nil {
			d = info.Deriver.Absolute()
		}
		writeString(bw, d)
		writeU64(bw, 0)
	}
	writeU64(bw, 0)
	return bw.Flush()
}

func writeU64(w *bufio.Writer, n uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], n)
	w.Write(b[:])
}

func writeString(w *bufio.Writer, s string) {
	writeU64(w, uint64(len(s)))
	w.WriteString(s)
	w.Write(make([]byte, pad(uint64(len(s)))))
}
