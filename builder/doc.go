// Package builder turns derivations into hermetic builds and build outputs
// into store paths.
//
// A Build (the shape of Snix's BuildRequest) says everything an executor
// needs and nothing about Nix: these castore trees as inputs under
// InputsDir, this command, this environment, these files to create, these
// output paths to collect, these constraints (system, network, /bin/sh).
// FromDerivation writes a derivation out as a Build exactly as Nix 2.8
// would run it: the environment Nix gives a builder, passAsFile files,
// structured attributes as .attrs.json and .attrs.sh.
//
// An Executor runs a Build and hands back its output trees (Outputs) as
// NAR streams; the namespace sandbox in builder/sandbox is one, a micro-VM
// executor will be another. Ingest is the one way outputs become store
// paths, whatever ran the build: it streams each NAR into the castore while
// scanning it for references (the hash parts in Build.RefscanNeedles, over
// everything a NAR holds, as Nix scans), checks fixed-output hashes, and
// only when every output is in puts their PathInfos, so a failed build
// registers nothing.
//
// Paths inside a Build are relative to the sandbox's root ("nix/store/…",
// "build"), as in Snix, so that an executor decides where the root is.
package builder
