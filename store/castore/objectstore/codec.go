package objectstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/castor-nix/castor/store/castore"
)

// Chunk files hold one zstd frame each (RFC 8878), as Snix writes them, so
// any zstd decoder reads them. Two encodings are produced:
//
//   - compressed: klauspost/compress's encoder at the configured level;
//   - raw: a frame of raw (stored) blocks, built here. It costs a memcpy,
//     which is what incompressible data deserves and what CompressNone and
//     a busy CompressAuto pipeline use.
//
// Both carry the frame content size, so the size of a one-chunk blob is
// known from the first bytes of its chunk file without decompressing it.

// zstdMagic starts every zstd frame (little endian 0xFD2FB528).
var zstdMagic = [4]byte{0x28, 0xb5, 0x2f, 0xfd}

const (
	// maxRawBlock is zstd's largest block (Block_Maximum_Size).
	maxRawBlock = 128 << 10
	// rawFrameHeader: magic, frame header descriptor, 4-byte content size.
	rawFrameHeader = 4 + 1 + 4
	// minFrameSize is the smallest possible zstd frame: magic, descriptor
	// and one empty block header. A chunk file shorter than this is
	// damaged (for example left empty by a power loss).
	minFrameSize = 4 + 1 + 3
)

// rawFrameSize is the size of the raw frame appendRawFrame makes for n bytes.
func rawFrameSize(n int) int {
	blocks := max(1, (n+maxRawBlock-1)/maxRawBlock)
	return rawFrameHeader + 3*blocks + n
}

// appendRawFrame appends a zstd frame storing src in raw blocks.
func appendRawFrame(dst, src []byte) []byte {
	dst = append(dst, zstdMagic[:]...)
	// Frame header descriptor: Frame_Content_Size_Flag 2 (a 4-byte field),
	// Single_Segment_Flag set (no window descriptor; the window is the
	// content), no checksum, no dictionary.
	dst = append(dst, 2<<6|1<<5)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(src)))
	for {
		n := min(len(src), maxRawBlock)
		// Block header: Last_Block bit, Block_Type 0 (raw), Block_Size.
		h := uint32(n) << 3
		if n == len(src) {
			h |= 1
		}
		dst = append(dst, byte(h), byte(h>>8), byte(h>>16))
		dst = append(dst, src[:n]...)
		src = src[n:]
		if len(src) == 0 {
			return dst
		}
	}
}

// codec encodes and decodes chunk files. It is shared by all writers and
// readers of a Store; its methods are safe for concurrent use.
type codec struct {
	level    zstd.EncoderLevel
	encoders sync.Pool // *zstd.Encoder, one per concurrent EncodeAll
	// exact decodes chunks of known size into a buffer of that size;
	// bounded decodes those whose size is unknown, growing its output up
	// to MaxReadChunkSize.
	exact, bounded *zstd.Decoder
}

func newCodec(level zstd.EncoderLevel) (*codec, error) {
	// The decoder runs one DecodeAll per concurrent caller; more callers
	// than this wait for a free one.
	newDec := func(capLimit bool) (*zstd.Decoder, error) {
		return zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(2*runtime.GOMAXPROCS(0)),
			zstd.WithDecoderMaxMemory(MaxReadChunkSize),
			zstd.WithDecodeAllCapLimit(capLimit),
			// Chunks are verified against their BLAKE3 digest; a
			// frame checksum would only cost time.
			zstd.IgnoreChecksum(true),
		)
	}
	exact, err := newDec(true)
	if err != nil {
		return nil, err
	}
	bounded, err := newDec(false)
	if err != nil {
		return nil, err
	}
	c := &codec{level: level, exact: exact, bounded: bounded}
	c.encoders.New = func() any {
		enc, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(level),
			zstd.WithEncoderConcurrency(1),
			zstd.WithEncoderCRC(false),
			zstd.WithLowerEncoderMem(true),
			zstd.WithSingleSegment(true),
			// An empty chunk (the empty blob) still needs a frame.
			zstd.WithZeroFrames(true),
		)
		if err != nil {
			// Only invalid options fail, and these are constant.
			panic(fmt.Sprintf("objectstore: zstd encoder: %v", err))
		}
		return enc
	}
	return c, nil
}

// encode appends the chunk file contents for data to dst. With compress
// false, or when compression saves less than 1/32 of the size, it stores
// data raw: raw chunks are read without decompression (readChunkFile).
func (c *codec) encode(dst, data []byte, compress bool) []byte {
	if compress {
		enc := c.encoders.Get().(*zstd.Encoder)
		out := enc.EncodeAll(data, dst)
		c.encoders.Put(enc)
		raw := rawFrameSize(len(data))
		if n := len(out) - len(dst); n >= minFrameSize && n < raw-raw/32 {
			return out
		}
		dst = out[:len(dst)]
	}
	return appendRawFrame(dst, data)
}

// contentSize returns the decompressed size a chunk file declares in its
// frame header, if it declares one.
func contentSize(frame []byte) (uint64, bool) {
	var h zstd.Header
	if err := h.Decode(frame); err != nil || !h.HasFCS {
		return 0, false
	}
	return h.FrameContentSize, true
}

// decode decompresses a chunk file and checks it against digest d. size
// is the expected decompressed size, or -1 when unknown (a one-chunk blob:
// the frame header's content size is used, bounded by MaxReadChunkSize).
// Damage of any kind is an error wrapping castore.ErrCorrupt.
func (c *codec) decode(frame []byte, d castore.Digest, size int64) ([]byte, error) {
	if len(frame) < minFrameSize {
		return nil, fmt.Errorf("chunk %s: %w: file has %d bytes, too short for a zstd frame", d, castore.ErrCorrupt, len(frame))
	}
	dec, limit := c.exact, size
	if limit < 0 {
		n, ok := contentSize(frame)
		switch {
		case !ok:
			dec = c.bounded
		case n > MaxReadChunkSize:
			return nil, fmt.Errorf("chunk %s: %w: declares %d bytes, more than the %d allowed", d, castore.ErrCorrupt, n, MaxReadChunkSize)
		default:
			limit = int64(n)
		}
	}
	var dst []byte
	if dec == c.exact {
		// One byte more than expected, so that a frame decoding to more
		// is reported as such rather than as a decoder limit.
		dst = make([]byte, 0, limit+1)
	}
	out, err := dec.DecodeAll(frame, dst)
	if err != nil {
		if errors.Is(err, zstd.ErrDecoderClosed) {
			return nil, fmt.Errorf("chunk %s: %w", d, errStoreClosed)
		}
		return nil, fmt.Errorf("chunk %s: %w: zstd: %v", d, castore.ErrCorrupt, err)
	}
	if size >= 0 && int64(len(out)) != size {
		return nil, fmt.Errorf("chunk %s: %w: decompressed to %d bytes, chunk list says %d", d, castore.ErrCorrupt, len(out), size)
	}
	if castore.Sum(out) != d {
		return nil, fmt.Errorf("chunk %s: %w: contents do not match the digest", d, castore.ErrCorrupt)
	}
	return out, nil
}
