package objectstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/castoretest"
)

var frameSizes = []int{0, 1, 100, maxRawBlock - 1, maxRawBlock, maxRawBlock + 1, 300 << 10, MaxChunkSize}

func newTestCodec(t testing.TB) *codec {
	t.Helper()
	c, err := newCodec(zstd.SpeedFastest)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A raw frame is standard zstd: an independent decoder (klauspost's, with
// default options) reads it back, and its header declares the size.
func TestRawFrame(t *testing.T) {
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	for _, n := range frameSizes {
		data := randomData(n, uint64(n))
		frame := appendRawFrame(nil, data)
		if len(frame) != rawFrameSize(n) {
			t.Errorf("%d bytes: frame of %d bytes, rawFrameSize says %d", n, len(frame), rawFrameSize(n))
		}
		got, err := dec.DecodeAll(frame, nil)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%d bytes: decoded %d bytes, err %v", n, len(got), err)
		}
		if cs, ok := contentSize(frame); !ok || cs != uint64(n) {
			t.Errorf("%d bytes: content size %d, %v", n, cs, ok)
		}
	}
}

// The zstd tool (the reference implementation) reads what the codec
// writes, raw and compressed.
func TestZstdToolReadsFrames(t *testing.T) {
	zstdBin := testenv.RequireBinary(t, "zstd")
	c := newTestCodec(t)
	dir := t.TempDir()
	for _, n := range frameSizes {
		for _, compress := range []bool{false, true} {
			data := castoretest.Pattern(n, uint64(n))
			frame := c.encode(nil, data, compress)
			path := filepath.Join(dir, fmt.Sprintf("f%d-%v.zst", n, compress))
			if err := os.WriteFile(path, frame, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(zstdBin, "-d", "-c", "-q", path).Output()
			if err != nil {
				t.Fatalf("zstd -d of %d bytes (compress=%v): %v", n, compress, err)
			}
			if !bytes.Equal(out, data) {
				t.Errorf("zstd -d of %d bytes (compress=%v): got %d bytes, not the data", n, compress, len(out))
			}
		}
	}
}

// encode stores incompressible data raw and compresses the rest; decode
// gets the data back either way.
func TestEncodeDecode(t *testing.T) {
	c := newTestCodec(t)
	for _, n := range frameSizes {
		for _, kind := range []string{"random", "pattern"} {
			data := randomData(n, 7)
			if kind == "pattern" {
				data = bytes.Repeat([]byte("castor "), n/7+1)[:n]
			}
			frame := c.encode(nil, data, true)
			if kind == "random" && n >= 100 && !bytes.Equal(frame, appendRawFrame(nil, data)) {
				t.Errorf("random %d bytes: frame of %d bytes is not the raw frame", n, len(frame))
			}
			if kind == "pattern" && n >= 1000 && len(frame) > n/10 {
				t.Errorf("pattern %d bytes: frame %d bytes, not compressed", n, len(frame))
			}
			d := castore.Sum(data)
			for _, size := range []int64{int64(n), -1} {
				got, err := c.decode(frame, d, size)
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("%s %d bytes, size %d: decoded %d bytes, err %v", kind, n, size, len(got), err)
				}
			}
		}
	}
}

func TestDecodeDamage(t *testing.T) {
	c := newTestCodec(t)
	data := castoretest.Pattern(200<<10, 1)
	d := castore.Sum(data)
	good := c.encode(nil, data, true)
	raw := appendRawFrame(nil, data)
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		b[i] ^= 1
		return b
	}
	big := appendRawFrame(nil, make([]byte, 10))
	copy(big[5:9], []byte{0xff, 0xff, 0xff, 0x7f}) // declares 2 GiB
	for name, tc := range map[string]struct {
		frame []byte
		d     castore.Digest
		size  int64
	}{
		"empty file":         {nil, d, -1},
		"truncated":          {good[:len(good)/2], d, -1},
		"flipped compressed": {flip(good, len(good)/2), d, int64(len(data))},
		"flipped raw":        {flip(raw, len(raw)/2), d, int64(len(data))},
		"wrong digest":       {good, castore.Sum([]byte("other")), int64(len(data))},
		"wrong size":         {good, d, int64(len(data)) - 1},
		"larger than said":   {good, d, 1000},
		"not zstd":           {[]byte("this is not a zstd frame at all"), d, -1},
		"huge declared size": {big, d, -1},
	} {
		got, err := c.decode(tc.frame, tc.d, tc.size)
		if !errors.Is(err, castore.ErrCorrupt) {
			t.Errorf("%s: got %d bytes, err %v; want ErrCorrupt", name, len(got), err)
		}
	}
}

// FuzzDecode: no input makes decode panic, allocate without bound, or
// return bytes that do not hash to the digest asked for.
func FuzzDecode(f *testing.F) {
	c := newTestCodec(f)
	for _, n := range []int{0, 10, 1000} {
		data := castoretest.Pattern(n, 3)
		f.Add(c.encode(nil, data, true), int64(n))
		f.Add(appendRawFrame(nil, data), int64(-1))
	}
	want := castore.Sum(castoretest.Pattern(1000, 3))
	f.Fuzz(func(t *testing.T, frame []byte, size int64) {
		if size < -1 || size > MaxChunkSize {
			size = -1
		}
		got, err := c.decode(frame, want, size)
		if err != nil {
			if !errors.Is(err, castore.ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		if castore.Sum(got) != want {
			t.Fatal("decode returned bytes that do not match the digest")
		}
	})
}

func TestRawContentSize(t *testing.T) {
	for n := range MaxChunkSize + 2*maxRawBlock {
		if n > 1000 && n%997 != 0 && n%maxRawBlock > 3 && n%maxRawBlock < maxRawBlock-3 {
			continue // the edges are what matter
		}
		got, ok := rawContentSize(int64(rawFrameSize(n)))
		if !ok || got != int64(n) {
			t.Fatalf("rawContentSize(rawFrameSize(%d)) = %d, %v", n, got, ok)
		}
	}
}
