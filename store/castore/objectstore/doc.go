// Package objectstore is Castor's embedded default blob store: blobs cut
// into content-defined chunks, each chunk a zstd-compressed file on the
// local file system, in Snix's object-store layout:
//
//	<root>/chunks/b3/<hex of digest[:2]>/<hex digest>   one zstd frame per chunk
//	<root>/blobs/b3/<hex of digest[:2]>/<hex digest>    the blob's chunk list
//	<root>/tmp/                                         files being written
//	<root>/corrupt/                                     damaged chunks moved aside
//
// A chunk list is an encoded castorepb.StatBlobResponse; it is empty when
// the blob is a single chunk, whose digest is then the blob's. Chunks are
// cut with FastCDC (go-cdc-chunkers' "fastcdc-v1.0.0"; 128/256/512 KiB
// minimum/average/maximum), so identical runs of bytes in different blobs
// are stored once. Chunk boundaries never change a blob's digest, which is
// BLAKE3 of the whole contents.
//
// # Consistency
//
// Every file is written to <root>/tmp and renamed into place, so a reader
// sees a whole file or none. A blob becomes visible when its chunk list
// appears, which happens only after all its chunks are in place; a process
// killed at any point therefore never leaves a visible blob with missing or
// partial chunks. Its leftovers are temporary files, which never live
// under chunks/ or blobs/ and which Open removes (see WithTempMaxAge), and
// chunks no list refers to, which are harmless (there is no garbage
// collection yet).
//
// Writers in several goroutines and processes may store the same content
// at once: renaming identical contents over each other is harmless, and
// writers skip chunks already present.
//
// Power loss is another matter: the file system may lose data written in
// the last seconds even though the renames survived. See SyncMode: by
// default nothing is synced (as Nix does not sync store contents), damaged
// chunks are detected on read and moved aside so that adding the content
// again repairs the blob, and Store.Sync makes everything written so far
// durable in one call.
//
// # Verification
//
// Every chunk is checked against its BLAKE3 digest when it is
// decompressed: damage is an error wrapping castore.ErrCorrupt, never wrong
// bytes. A reader that reads a blob from start to end with Read also checks
// the whole blob's digest, and reports a mismatch instead of its last
// bytes.
//
// # Speed
//
// Writing a large blob is a pipeline (see writer.go): the caller's Write
// only copies into buffers, while other goroutines hash the blob, cut
// chunks, hash, compress and write them, in bounded memory. Small blobs
// (up to MinChunkSize, most files) are written on the caller's goroutine
// with a handful of system calls. Reads go through a cache of decompressed
// chunks shared by all readers of a Store, and sequential readers get the
// next chunks loaded in the background.
package objectstore
