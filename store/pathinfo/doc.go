// Package pathinfo is the Nix layer over the castore: a PathInfo says that
// the store path /nix/store/<hash>-<name> is the tree rooted at a castore
// Node, with these references, this NAR size and SHA-256, these
// signatures, this deriver and content address (Snix's snix.store.v1
// PathInfo).
//
// The Service role interfaces (Getter, Putter, Lister) are implemented by
// backends in sub-packages and checked by the suite in pathinfotest.
// Contract shared by all: a PathInfo is put only after its whole tree is in
// the castore, so a visible PathInfo never points at missing data.
package pathinfo
