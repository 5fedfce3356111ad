// Package fs serves a castore as a read-only filesystem: the tree behind
// /nix/store, resolved lazily.
//
// FS implements go-fuse's fuse.RawFileSystem, the wire-level API, so that the
// same value can be mounted on a host through /dev/fuse (Mount, Serve) and
// served to a VM through a virtiofs device (fuse.ProtocolServer). It knows the
// store only through three small interfaces: a RootResolver that turns a name
// in the mount's root into a castore.Node (for /nix/store, a PathInfoService
// lookup), a castore.DirectoryGetter and a castore.BlobOpener. Directories are
// fetched on first access; nothing is read ahead of the kernel's questions
// except file data for sequential readers.
//
// # Inodes
//
// An inode stands for content, not for a place: every occurrence of the same
// blob with the same executable bit, of the same directory digest, or of the
// same symlink target is one inode with one number. The number is derived
// from the content's digest, so it is the same across lookups, forgets and
// mounts (and between a FUSE mount and a virtiofs guest), except in the
// astronomically unlikely case of a 64-bit collision, which is resolved by
// probing. Inodes are counted the way the kernel counts them (LOOKUP and
// READDIRPLUS add, FORGET subtracts) and are dropped when the kernel has
// forgotten them, so memory follows what the kernel caches, not the size of
// the store.
//
// Because a directory inode may sit under many parents, each one keeps the
// parent it was first reached through as its "..": that parent is pinned
// (counted as a reference) until the child is dropped, so ".." always names
// a live inode, for READDIR and for LOOKUP("..") alike (virtiofs and NFS
// export ask for it).
//
// # Caching
//
// The store is immutable, so entries and attributes carry very long
// timeouts, file data stays in the page cache across opens
// (FOPEN_KEEP_CACHE), directory listings are cached by the kernel
// (FOPEN_CACHE_DIR) and symlink targets too. The root is the exception: store
// paths appear as they are added, so a missing root name is not cached by
// default (a malformed one is).
//
// # Speed
//
// Reads go straight from the blob reader into the request's buffer: one
// copy in the daemon. Requests are up to 512 KiB (max_read) and Mount
// raises the mount's read_ahead_kb to 2 MiB (the kernel caps a FUSE
// mount's read-ahead at 128 KiB otherwise), so a sequential reader keeps
// several requests in flight. Read-ahead of file data is left to the
// kernel and the blob service (the chunked local store reads ahead of
// sequential ReadAt calls); Options.Prefetch adds the filesystem's own,
// for blob services that do not. Every GETXATTR is a round trip (the
// kernel caches no xattrs), which is most of what `ls -l` costs; mounts
// that do not need the digests can turn xattrs off. bench/fuse/run.sh
// measures all this against tmpfs.
//
// # Errors
//
// At this boundary the one error type is syscall.Errno (as fuse.Status).
// Unknown and malformed names are ENOENT; data the metadata promises but the
// backend lacks or cannot verify is EIO, logged with the digest, never
// wrong bytes. Every operation that would write answers EROFS.
package fs
