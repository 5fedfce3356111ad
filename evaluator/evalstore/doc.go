// Package evalstore connects the evaluator to the castor store: Store is
// the evalio.Store that `castor instantiate`, `castor build` and
// `castor eval --read-write-mode` evaluate against.
//
// What the evaluator adds goes into the castore with a PathInfo, as Nix's
// read-write mode adds it to /nix/store: path literals, builtins.path and
// filterSource become "source" paths (fsimport reads host trees, filters
// included; trees already in the store are copied from their castore
// nodes without reading the host), builtins.toFile and .drv files become
// text paths with their references and a text:sha256 content address.
// Reads of paths below /nix/store go through the castore (symlinks inside
// the store are followed there; one that leaves the store continues on
// the host); everything else is read from the host file system.
//
// Realise makes paths valid for import from derivation: store paths must
// be in the store already; derivation outputs are built by a Realiser
// (builder/realise), which reads the .drv files this Store wrote.
//
// Writes follow the store's order (blobs, directories, then the PathInfo
// last), so an evaluation killed midway leaves no PathInfo pointing at
// missing data. A path already valid is not written again.
package evalstore
