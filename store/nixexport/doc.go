// Package nixexport reads and writes the format of `nix-store --export`
// (what `nix-store --import` reads): for each store path, the number 1,
// the path's NAR, the magic "NIXE", the path, its references, its deriver
// and a signature flag (0); then the number 0. Numbers are 64-bit little
// endian; strings are a length, the bytes and zero padding to eight.
//
// Import streams each NAR into the castore as it arrives (never holding a
// whole NAR) and registers the path with its references and deriver
// exactly as the stream states them, after its tree is stored; Export
// renders NARs from the castore. Paths keep their exact names, so .drv
// files and sources written by Nix come across unchanged:
//
//	nix-store --export $(nix-store -qR DRV) | castor store import-export
package nixexport
