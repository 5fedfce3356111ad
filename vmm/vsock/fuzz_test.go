package vsock

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/castor-nix/castor/vmm/vhostuser"
)

// FuzzFromGuest hands arbitrary packets to a session as if the guest had
// put them on the tx queue: no panic, and whatever the session queues for
// the guest is well-formed (addressed to the guest, from the host).
func FuzzFromGuest(f *testing.F) {
	req := header{SrcCID: 3, DstCID: HostCID, SrcPort: 7, DstPort: 9, Type: typeStream, Op: opRequest, BufAlloc: 4096}
	b := make([]byte, hdrSize)
	req.encode(b)
	f.Add(b, []byte{})
	rw := req
	rw.Op, rw.Len = opRW, 3
	b2 := make([]byte, hdrSize)
	rw.encode(b2)
	f.Add(b2, []byte("abc"))
	f.Add([]byte{1, 2, 3}, []byte{})
	f.Fuzz(func(t *testing.T, hdr, payload []byte) {
		dir := t.TempDir()
		bk, err := New(Config{GuestCID: 3, Socket: filepath.Join(dir, "v.sock"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer bk.Close()
		dev, err := bk.NewDevice(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		s := dev.(*session)
		defer s.Close()
		for i := 0; i < 3; i++ {
			s.fromGuest(&vhostuser.Chain{Readable: [][]byte{hdr, payload}})
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, h := range s.ctrl {
			if h.SrcCID != HostCID || h.DstCID != 3 || h.Type != typeStream || h.Len != 0 {
				t.Fatalf("bad control packet %+v", h)
			}
		}
	})
}
