// Package derivation is the Nix derivation: the .drv file that says how to
// build store paths.
//
// It reads and writes the ATerm form byte for byte as Nix 2.8 does
// (Parse, Derivation.Write), computes a derivation's own store path
// (Derivation.Path: a text path over its ATerm, referring to its inputs)
// and its output paths (input-addressed outputs through
// hashDerivationModulo, fixed-output ones from their content address), and
// loads derivations from files or from the castor store (Source).
//
// # Byte-exactness
//
// Parse accepts exactly what Write produces: Write(Parse(b)) == b for every
// b that Parse accepts. Nix never writes anything else (it sorts outputs,
// input derivations, sources and the environment, and escapes only `"`,
// `\`, newline, carriage return and tab in the fields it escapes), so
// every .drv that Nix wrote parses, and anything Parse rejects could not
// have come from Nix unchanged. The error says where and why.
//
// Like Nix, Write escapes only the builder, the arguments and the
// environment; output names, paths, hash fields, input derivation output
// names and the system are written between quotes as they are. Parse
// therefore rejects `"` and `\` in those fields (Nix itself could not read
// them back).
//
// # go-nix
//
// github.com/nix-community/go-nix/pkg/derivation was evaluated against Nix
// 2.8 for this package and is not used for derivations: it writes arguments,
// environment names and input paths without escaping them while reading
// them back without unescaping (an argument containing `"` or a newline
// reaches the builder still escaped), keys input derivations by path in
// hashDerivationModulo where Nix keys them by their hash (two inputs with
// the same fixed output collapse into one entry in Nix), and has no loader.
// Its nixhash and nixbase32 packages are used, through store/nixpath.
package derivation
