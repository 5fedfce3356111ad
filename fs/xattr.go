package fs

import (
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/store/castore"
)

// Extended attribute names carrying digests, in castore's text form
// (blake3-<base64>).
const (
	XattrBlobDigest      = "user.castore.blob.digest"
	XattrDirectoryDigest = "user.castore.directory.digest"
)

// xattr returns the attribute name and value ino carries, if any.
func (fsys *FS) xattr(ino *inode) (string, string, bool) {
	if fsys.opts.DisableXattrs || ino.id == rootID {
		return "", "", false
	}
	switch ino.node.Kind {
	case castore.KindFile:
		return XattrBlobDigest, ino.node.Digest.String(), true
	case castore.KindDirectory:
		return XattrDirectoryDigest, ino.node.Digest.String(), true
	}
	return "", "", false
}

// GetXAttr implements fuse.RawFileSystem.
func (fsys *FS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	ino := fsys.inodes.get(h.NodeId)
	if ino == nil {
		return 0, fuse.Status(syscall.ESTALE)
	}
	name, value, ok := fsys.xattr(ino)
	if !ok || attr != name {
		return 0, fuse.ENOATTR
	}
	return copyOut(dest, value)
}

// ListXAttr implements fuse.RawFileSystem.
func (fsys *FS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	ino := fsys.inodes.get(h.NodeId)
	if ino == nil {
		return 0, fuse.Status(syscall.ESTALE)
	}
	name, _, ok := fsys.xattr(ino)
	if !ok {
		return 0, fuse.OK
	}
	return copyOut(dest, name+"\x00")
}

// copyOut follows go-fuse's convention: ERANGE with the size needed when
// dest is too small (go-fuse turns that into a size answer for size 0).
func copyOut(dest []byte, s string) (uint32, fuse.Status) {
	if len(dest) < len(s) {
		return uint32(len(s)), fuse.ERANGE
	}
	return uint32(copy(dest, s)), fuse.OK
}
