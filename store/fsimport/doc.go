// Package fsimport imports a local file tree into the castore, the way
// `nix-store --add` reads it: regular files (executable when the owner's x
// bit is set), symlinks as they are, and directories; anything else is an
// error. It returns the root node together with the size and SHA-256 of
// the tree's NAR (what `nix hash path` reports), computed in the same pass
// over the file contents that stores them: every file is read once.
//
// Files are read and stored by several workers at once, while one hasher
// feeds the NAR's SHA-256 in NAR order from the pieces the workers read;
// each worker owns a few fixed buffers, so memory stays bounded whatever the
// size of the files (see Import).
package fsimport
