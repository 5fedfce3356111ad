// Package storeroots resolves the names in a mounted /nix/store through a
// path-info service: a name that parses as a store path basename
// (<32-char nixbase32 hash>-<name>) is looked up by its hash, and found
// only if the PathInfo recorded under that hash has exactly that name.
// Anything that is not a store path basename can never exist, and says so
// (castore.ErrInvalid), so the kernel may remember its absence.
package storeroots
