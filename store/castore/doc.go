// Package castore is the content-addressed store at the bottom of Castor.
//
// A file's contents are a blob addressed by the BLAKE3-256 digest of the
// whole contents. A directory is a Directory value listing child
// directories, files and symlinks by name; its address is the BLAKE3-256 of
// its canonical protobuf encoding (Snix's snix.castore.v1), so a tree is a
// Merkle DAG and identical subtrees are stored once.
//
// The package holds the data model (Digest, Node, Directory) with its
// validation and encoding, and the small role interfaces every storage
// backend implements: BlobOpener/BlobStater/BlobIngester for blobs,
// DirectoryGetter/DirectoryIngester for directories. Callers ask for the
// smallest interface they need. Backends live in sub-packages and are
// checked by the conformance suite in castoretest.
//
// castore imports nothing of the project: it knows nothing of Nix.
package castore
