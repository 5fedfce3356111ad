// Package realise builds derivation graphs: it reads .drv files from the
// castor store, checks their output paths as Nix computes them, skips the
// derivations whose outputs are already valid, and builds the rest in
// dependency order, up to Jobs at a time, through a builder.Executor, or,
// for builtin:fetchurl derivations, by fetching (file:// and http(s)://).
// Every result goes through builder.Ingest, so a fixed-output fetch is
// checked exactly like a fixed-output build.
//
// While it works it writes each build's log to Options.Output with the
// derivation's name as a prefix on every line, and a progress line (done,
// running, left) whenever a build starts or ends; each log is also kept in
// a LogStore, where `castor log` finds it. A failed build reports its exit
// status and the last lines of its log, as Nix does; derivations that
// depend on it are not built, and, unless KeepGoing is set, nothing new is
// started after a failure (builds already running finish).
package realise
