// Package nar reads and writes Nix Archives (NAR), the serialisation of a
// file tree Nix hashes and ships, and converts between NARs and the castore.
//
// A NAR is the string "nix-archive-1" followed by one node:
//
//	( type regular [executable ""] contents <bytes> )
//	( type symlink target <target> )
//	( type directory entry ( name <name> node <node> ) ... )
//
// where every string is a little-endian uint64 length, the bytes, and zero
// padding to a multiple of 8. Entries are sorted by name, bytewise.
//
// Reader and Writer are shaped like archive/tar: Reader.Next returns each
// node's Header in NAR order (depth first, the root first, with path "/"),
// then Read returns a regular file's contents; Writer.WriteHeader and Write
// do the reverse. Both are strict: they accept and produce exactly the
// canonical form Nix writes, so that NAR -> castore -> NAR is byte-exact
// and a NAR hash means one tree. Everything malformed is an error wrapping
// ErrInvalid that names the NAR path and byte offset; a truncated NAR also
// wraps io.ErrUnexpectedEOF.
//
// Ingest streams a NAR into the castore and hashes it on the fly: one
// goroutine parses and hashes the NAR while a few workers write file
// contents to blob writers (small files in parallel, a large file's storing
// overlapping the parse), with a bounded budget of chunks in flight; the
// directories go leaves first through one DirectoryPutter once every blob
// is committed. Render writes the NAR of a castore tree, fetching blobs
// ahead through a bounded pipeline; CalculateNAR hashes that output.
//
// Throughput is bounded by the NAR's SHA-256, which is sequential: about
// 1-1.5 GB/s per core with SHA-NI, so Ingest into a fast store and
// CalculateNAR run near that; Reader alone parses at several GB/s.
//
// Why not github.com/nix-community/go-nix/pkg/nar: its reader hands every
// header across goroutines through channels (a context switch per entry),
// does not detect data after the root node, returns errors without a
// sentinel or position, and does not enforce symlink target rules; the
// checks castor needs are the core of a reader, so this package is its own.
package nar
