// Package drvtest compares castor's instantiation and builds with Nix
// 2.8's, end to end through the commands: `castor instantiate`,
// `castor eval --read-write-mode` and `castor build` against
// nix-instantiate and nix-build on the same expressions.
//
// The corpus (testdata/corpus.nix) covers what derivationStrict reads
// (environment from every kind of value, arguments, outputs, fixed
// outputs in every hash form, structured attributes, passAsFile, null
// handling), the inputs string contexts bring (outputs, whole derivations
// through drvPath, sources from path literals, builtins.path with
// filters and toFile with references) and the string operations that
// carry or drop contexts. For each derivation the .drv path and bytes, the
// output paths and the PathInfo of every path in the closure (references,
// NAR hash, content address) must be Nix's. testdata/errors.nix holds
// derivations (and paths to add) Nix refuses: castor's error reports must
// be Nix's, byte for byte. testdata/values.nix prints derivation values
// (attributes, contexts, positions, equality, JSON, XML) in read-only
// mode. testdata/build.nix is a small graph built with static busybox in
// both sandboxes, import from derivation included: the outputs must have
// the same paths and NAR hashes.
//
// Nix runs in a private mount namespace with a throw-away /nix bound over
// the host's (testenv.NewNixMounted), so that it behaves as with a real
// /nix/store (a chroot store, --store DIR, treats paths in strings with a
// context differently when it adds them). That needs root and unshare(1);
// the tests skip without them.
package drvtest
