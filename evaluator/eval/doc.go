// Package eval is the Nix evaluator: it compiles the syntax tree of package
// syntax and evaluates it lazily, with Nix 2.8's semantics (and the later
// fixes its documentation names).
//
// # Values
//
// A Value is three words passed by value. Null, Booleans, integers and
// floats live inside it (arithmetic never allocates); strings without
// context point at their bytes, strings with context at a (bytes, context)
// pair; sets and lists are (first element, length) of an immutable array,
// sets sorted by interned symbol. A thunk is a pointer to a Thunk, forced
// at most once: while it runs it is marked as a blackhole (forcing it again
// is infinite recursion); if its evaluation fails it becomes pending again,
// as in Nix.
//
// # Compilation
//
// The compiler resolves every variable to (depth, slot) in a chain of
// environments, or to a search of the enclosing `with` scopes for names
// no binding defines; it inlines constants of the global scope and turns
// the operators Nix desugars into calls (-, *, /, <) into direct code when
// __sub and friends are not shadowed. Nodes implement code.eval, which
// returns a value in weak head normal form; delay suspends a node in a
// thunk unless it is a constant or a variable.
//
// # Errors and the evaluator's stack
//
// Evaluation errors are raised as panics of *Error and recovered at the
// API boundary (and by tryEval and addErrorContext). The evaluator keeps
// its own stack of frames (calls, thunks being forced, attribute
// selections): it yields the trace of an error, lets recovery undo
// blackholes, and bounds the depth (Options.MaxDepth) so that runaway
// recursion ends in "stack overflow" rather than exhausting the Go stack,
// which Go cannot recover from. Commands call TuneRuntime to raise the Go
// stack limit accordingly. Any other Go panic inside the evaluator becomes
// an internal error with the position evaluation had reached.
//
// # Files and the store
//
// All file-system and store access goes through evalio.Store: reading
// sources (import, readFile, readDir, pathExists), adding paths (path
// interpolation, builtins.path, filterSource, toFile) and realising
// store paths for import from derivation.
//
// # Derivations
//
// derivationStrict (derivation.go) is Nix 2.8's: it walks the attributes
// in name order into the environment (or __json with structured
// attributes), turns the string context of everything it read into the
// inputs (a "=" context brings the whole closure of a .drv, as Nix does),
// computes the output paths with store/derivation's Hasher (fixed outputs
// from their hash, in any form Nix accepts: hash.go) and writes the .drv
// through the Store as a text path. The Hasher reads input derivations
// from the ones this evaluation made (a store-less evaluation never writes
// them), else from the Store. builtins.derivation is Nix 2.8's
// derivation.nix (builtin/derivation.nix), compiled on first use under
// the name Nix gives it, so positions and traces read as Nix's.
// Derivations (drvinfo.go) is getDerivations, which `castor instantiate`
// and `castor build` use to find the derivations a value stands for.
//
// An Evaluator is single-threaded; values belong to the Evaluator that
// made them.
package eval
