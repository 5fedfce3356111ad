// Package evalio is the evaluator's one door to the outside world: reading
// source files and directories, and the Nix store (adding paths, writing
// text files, realising store paths for import-from-derivation).
//
// The evaluator (package eval) reaches files and the store only through
// the Store interface defined here. Host is the store-less
// implementation (`castor eval`, `castor instantiate --readonly-mode`):
// it reads the host file system and computes the store paths that adding
// would produce, as `nix-instantiate --readonly-mode` does, without
// writing anything; it remembers which source each computed path came
// from (and the references of text paths) so that reading below such a
// store path, and derivations depending on one another, work.
// evaluator/evalstore implements Store over the castor store.
//
// Both check store path names by Nix 2.8's rules and report them in its
// words (names.go) before store/nixpath, whose rules are castor's, sees
// them.
package evalio
