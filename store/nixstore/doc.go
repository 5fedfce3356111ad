// Package nixstore is the Nix store as users see it, over the castore and
// path infos: add a local tree or a NAR and get a store path, dump a path
// as a NAR, look up files below a store path, and verify that every
// recorded path is whole. The CLI's `castor store …` commands call it.
//
// Order of writes, which crash safety rests on: blobs, then directories
// (leaves first, one atomic batch), then the PathInfo last. A process
// killed at any point leaves at most unreferenced blobs and directories,
// never a PathInfo whose tree is incomplete.
package nixstore
