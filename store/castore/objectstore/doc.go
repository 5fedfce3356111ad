// Package objectstore is Castor's embedded default blob store: blobs cut
// into content-defined chunks, each chunk a zstd frame, kept on the local
// file system:
//
//	<root>/packs/<name>.pack                           many chunks each (LayoutPacks, the default; see pack.go)
//	<root>/chunks/b3/<hex of digest[0]>/<hex digest>   one zstd frame per chunk (LayoutFiles, and packs of 4 chunks or fewer)
//	<root>/blobs/b3/<hex of digest[0]>/<hex digest>    a multi-chunk blob's chunk list
//	<root>/tmp/                                        files being written
//	<root>/corrupt/                                    damaged chunks moved aside, damaged records marked
//
// A chunk list is an encoded castorepb.StatBlobResponse. A blob of one
// chunk has none: it is its chunk, whose digest is the blob's (a chunk is
// the blob of its own contents). Snix's empty and one-entry lists for that
// case are still read. LayoutFiles is (nearly) Snix's object-store
// layout; stores of either layout read both. Departures from Snix, all
// measured: on the ext4 disks here every created file or directory costs
// 0.3 ms or more of kernel time, and adding a fresh 20k-file tree spent
// most of its time creating files. Hence pack files by default (a 1.1 GB,
// 20k-file tree: 643 files instead of 23k), shards named by one byte
// instead of two (36k shard directories down to 512) and no empty lists
// for one-chunk blobs. Chunks are cut with FastCDC
// (go-cdc-chunkers' spec-faithful "fastcdc-v1.0.0"; 128/256/512 KiB
// minimum/average/maximum), so runs of bytes shared by blobs are stored
// once. Chunk boundaries never change a blob's digest, BLAKE3 of the whole
// contents. Open(dir) opens or creates a store; Close ends it. A Store is a
// castore.BlobService; OpenBlob also opens a chunk by its own digest, as
// Snix's Read does.
//
// # Consistency and durability
//
// Every file is written in <root>/tmp and renamed into place, so a reader
// sees a whole file or none. A blob becomes visible to other processes
// when its chunk list appears (a one-chunk blob: its chunk file, or its
// pack once sealed), which happens only after all its chunks are in place
// (packs holding them sealed): a process killed at any point never leaves
// a visible blob with missing or partial chunks (the tests kill writers
// before and after each rename). With LayoutPacks, blobs committed to a
// pack not yet sealed are lost with a killed process; Sync seals, so a
// blob is sure to outlive its writer once Sync returned. What it
// leaves are temporary files, which never live under chunks/ or blobs/ and
// which Open removes (at once for dead processes of the same pid
// namespace, after WithTempMaxAge for others), and chunks no list refers
// to, harmless (there is no garbage collection yet). Writers in any number
// of goroutines and processes may store the same content at once: renaming
// identical contents over each other is harmless, and writers skip chunks
// that exist.
//
// Power loss or an OS crash is another matter: the file system may lose
// data written in the last seconds although the renames survived (ext4
// leaves such new files empty). By default (SyncNone) nothing is synced,
// as Nix does not sync store contents: a sync per commit is a disk flush
// per blob, milliseconds on real disks, and adding a tree commits
// thousands of blobs. (The project's test VMs cannot tell the cost: their
// virtual disk absorbs flushes unevenly; flushing 1 GiB took 0.6-3.7 s,
// and a 4 KiB blob took 0.15-1.4 ms to commit without SyncCommit, 0.3-0.7
// ms with it; see BenchmarkWriteSmall and
// BenchmarkWriteSyncCommit). Instead, damage is made harmless and
// repairable: chunks are verified on every read, a damaged one is moved to
// corrupt/ (a pack record: dropped and marked there) and logged, writers replace chunk files too short to be a zstd
// frame and chunk lists that differ from theirs, so adding the content
// again repairs the blob; Check finds such blobs. Callers that record
// elsewhere that blobs exist (a path info in a database) call Sync, one
// syncfs(2) for everything written so far, before they do. WithSync
// (SyncCommit) makes each Commit durable instead (with LayoutPacks: each
// seal of a pack, and Commit does not seal).
//
// # Verification
//
// Every chunk is checked against its BLAKE3 digest when it is read from
// its file: damage is an error wrapping castore.ErrCorrupt, never wrong
// bytes. A reader that reads a blob from start to end with Read also checks
// the whole blob's digest (on a goroutine of its own), and reports a
// mismatch instead of its last bytes. ReadAt checks chunks only: the chunk
// list is trusted as its writer, which hashed the whole, wrote it.
//
// # Speed
//
// Writing a large blob is a pipeline (see writer.go): the caller's Write
// only copies into buffers (io.Copy reads straight into them), while other
// goroutines hash the blob, cut chunks, hash, compress and write them, in
// bounded memory (writing a 4 GiB blob peaks at about 32 MiB resident for
// the whole process). Small blobs (up to MinChunkSize, most files) are
// written on the caller's goroutine with about six system calls. Reads go
// through a cache of decompressed chunks shared by all readers of a Store;
// readers that read in order get the next chunks loaded in the background;
// chunks stored raw are read straight into place with one preadv.
//
// Compression puts speed first by default (CompressAuto): chunks are
// compressed with zstd's fastest level only on cores the writers leave
// spare, raw otherwise (on 2 cores: always raw). Measured here (AMD EPYC,
// 2 cores shared with other work; bench_test.go has the benchmarks): zstd
// fastest compresses binaries and sources at about 210 MB/s per core to
// 0.31-0.38 of their size and decompresses them at about 700 MB/s; the
// default level is 25% slower for 4% smaller files. Storing raw costs a
// memcpy, and incompressible chunks are stored raw whatever the choice.
//
// # Options
//
//	WithLayout       LayoutPacks (default) or LayoutFiles
//	WithCompression  CompressAuto (default), CompressFastest, CompressDefault, CompressNone
//	WithSync         SyncNone (default) or SyncCommit
//	WithCacheSize    decompressed-chunk cache, default 32 MiB (0: none, and no read-ahead)
//	WithReadAhead    chunks loaded ahead of a sequential reader, default 4
//	WithWorkers      goroutines hashing, compressing and writing a large blob's chunks, default GOMAXPROCS
//	WithTempMaxAge   age past which Open removes other processes' temporary files, default 1 h
//	WithLogger       where damage is reported, default slog.Default()
package objectstore
