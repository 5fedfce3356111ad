package fstest

import (
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	castorfs "github.com/castor-nix/castor/fs"
)

// Mount mounts fsys at mountpoint for the rest of the test and unmounts
// it in cleanup. It skips the test where FUSE is not available (see
// RequireFUSE).
func Mount(tb testing.TB, mountpoint string, fsys fuse.RawFileSystem, opts castorfs.MountOptions) *castorfs.Server {
	tb.Helper()
	RequireFUSE(tb)
	srv, err := castorfs.Mount(mountpoint, fsys, opts)
	if err != nil {
		tb.Fatalf("mount %s: %v", mountpoint, err)
	}
	RecordConnection(mountpoint)
	tb.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			tb.Errorf("unmount %s: %v", mountpoint, err)
		}
	})
	return srv
}
