// Package evalio is the evaluator's one door to the outside world: reading
// source files and directories, and the Nix store (adding paths, writing
// text files, realising store paths for import-from-derivation).
//
// The evaluator (package eval) reaches files and the store only through
// the Store interface defined here, so that the issues that bring a real
// store (derivations, path literals copied into the castore, builds,
// fetchers) plug in by implementing it. Host is the implementation used
// until then: it reads the host file system and computes the store paths
// that adding would produce, exactly as `nix-instantiate --readonly-mode`
// does, without writing anything; it remembers which source each computed
// path came from so that reading below such a store path works.
package evalio
