// Package syntax is the front end of the Nix evaluator: it turns the bytes
// of a Nix source file into an abstract syntax tree whose nodes carry source
// positions.
//
// The lexer reproduces the flex scanner of Nix 2.8 (longest match, the same
// start conditions for strings, indented strings and interpolated paths);
// the parser is a hand-written recursive-descent parser with the precedence
// table of Nix's bison grammar and performs the same desugaring (operators
// such as '-' and '<' become calls of __sub and __lessThan, nested attribute
// paths are merged, indented strings are stripped) so that later stages see
// what Nix's evaluator sees. Variable resolution is not done here: it is the
// compiler's job in package eval, which reports undefined variables as parse
// errors, as Nix does.
//
// Source files are bytes; nothing assumes UTF-8. Positions are Pos values
// (offsets into a FileSet), resolved to file:line:column on demand, with
// Nix's rules for line breaks (\n, \r\n and a lone \r each end a line).
package syntax
