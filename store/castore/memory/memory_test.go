package memory

import (
	"testing"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/castore/castoretest"
)

func TestBlobService(t *testing.T) {
	var svc *BlobService
	castoretest.RunBlobService(t, func(t *testing.T) castore.BlobService {
		svc = NewBlobService()
		return svc
	}, castoretest.BlobOptions{
		Corrupt: func(t *testing.T, d castore.Digest) {
			svc.mu.Lock()
			b := append([]byte(nil), svc.blobs[d]...)
			svc.mu.Unlock()
			b[len(b)/2] ^= 1
			svc.Corrupt(d, b)
		},
	})
}

func TestDirectoryService(t *testing.T) {
	castoretest.RunDirectoryService(t, func(t *testing.T) castore.DirectoryService {
		return NewDirectoryService()
	})
}
