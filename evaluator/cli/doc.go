// Package cli implements the evaluator's commands on top of package eval:
// `castor eval` (nix-instantiate --eval), `castor repl` (nix repl),
// `castor instantiate` (nix-instantiate) and `castor build` (nix-build).
//
// eval and repl evaluate without a store (evalio.Host: store paths are
// computed, nothing is written), as nix-instantiate --eval does in its
// default read-only mode; `castor eval --read-write-mode` evaluates
// against the castor store instead. instantiate and build always use the
// store (evaluator/evalstore) that the global flags name, unless
// `instantiate --readonly-mode`: .drv files and sources are written there,
// and derivations needed during evaluation (import from derivation) or
// asked for by build are built in the namespace sandbox through
// builder/realise, created on first use so that evaluations that build
// nothing need neither root nor FUSE.
//
// The commands parse their arguments the way Nix does (--arg takes two
// values, -I may be repeated, NIX_PATH is appended to the search path), so
// cobra's flag parsing is disabled for them and done here; the global
// flags (--store…) are recognised among the arguments. An evaluation
// error is printed in Nix's format (message, position with a source
// excerpt, trace with --show-trace) and the command returns an *ExitError;
// Go panics inside the evaluator surface as internal errors, never as a
// panic trace.
package cli
