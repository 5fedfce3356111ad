package objectstore

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/castorepb"
)

func TestChunkListRoundTrip(t *testing.T) {
	blob := castore.Sum([]byte("blob"))
	metas := []castore.ChunkMeta{
		{Digest: castore.Sum([]byte("a")), Size: 200 << 10},
		{Digest: castore.Sum([]byte("b")), Size: 300 << 10},
		{Digest: castore.Sum([]byte("a")), Size: 200 << 10},
	}
	b, err := marshalChunkList(metas)
	if err != nil {
		t.Fatal(err)
	}
	// The file is Snix's StatBlobResponse.
	var msg castorepb.StatBlobResponse
	if err := proto.Unmarshal(b, &msg); err != nil {
		t.Fatal(err)
	}
	if len(msg.Chunks) != 3 || msg.Chunks[1].Size != 300<<10 || string(msg.Chunks[2].Digest) != string(metas[2].Digest[:]) {
		t.Fatalf("decoded as %v", &msg)
	}
	refs, err := parseChunkList(blob, b)
	if err != nil {
		t.Fatal(err)
	}
	var off int64
	for i, r := range refs {
		if r.digest != metas[i].Digest || r.size != int64(metas[i].Size) || r.offset != off {
			t.Errorf("ref %d = %+v", i, r)
		}
		off += r.size
	}
	if refs, err := parseChunkList(blob, nil); err != nil || refs != nil {
		t.Errorf("empty list: %v, %v; want one-chunk blob", refs, err)
	}
}

func TestChunkListDamage(t *testing.T) {
	blob := castore.Sum([]byte("blob"))
	enc := func(chunks ...*castorepb.StatBlobResponse_ChunkMeta) []byte {
		b, err := proto.Marshal(&castorepb.StatBlobResponse{Chunks: chunks})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	d := castore.Sum([]byte("a"))
	for name, b := range map[string][]byte{
		"garbage":      []byte("\xff\xff\xff\xff"),
		"short digest": enc(&castorepb.StatBlobResponse_ChunkMeta{Digest: d[:31], Size: 1}),
		"zero size":    enc(&castorepb.StatBlobResponse_ChunkMeta{Digest: d[:], Size: 0}),
		"huge chunk":   enc(&castorepb.StatBlobResponse_ChunkMeta{Digest: d[:], Size: MaxReadChunkSize + 1}),
	} {
		if refs, err := parseChunkList(blob, b); !errors.Is(err, castore.ErrCorrupt) {
			t.Errorf("%s: %v, %v; want ErrCorrupt", name, refs, err)
		}
	}
}

// FuzzParseChunkList: any blob file parses into a consistent list or an
// ErrCorrupt, never a panic.
func FuzzParseChunkList(f *testing.F) {
	good, _ := marshalChunkList([]castore.ChunkMeta{{Digest: castore.Sum(nil), Size: 5}, {Digest: castore.Sum([]byte{1}), Size: 7}})
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{0x12, 0x00})
	blob := castore.Sum([]byte("blob"))
	f.Fuzz(func(t *testing.T, b []byte) {
		refs, err := parseChunkList(blob, b)
		if err != nil {
			if !errors.Is(err, castore.ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		var off int64
		for _, r := range refs {
			if r.offset != off || r.size <= 0 || r.size > MaxReadChunkSize {
				t.Fatalf("inconsistent ref %+v at %d", r, off)
			}
			off += r.size
		}
	})
}
