// Package cli implements the `castor eval` and `castor repl` commands:
// nix-instantiate --eval and nix repl on top of package eval.
//
// Both commands parse their arguments the way Nix does (--arg takes two
// values, -I may be repeated, NIX_PATH is appended to the search path), so
// cobra's flag parsing is disabled for them and done here. An evaluation
// error is printed in Nix's format (message, position with a source
// excerpt, trace with --show-trace) and the command returns an *ExitError;
// Go panics inside the evaluator surface as internal errors, never as a
// panic trace.
package cli
