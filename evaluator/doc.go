// Package evaluator is Castor's Nix evaluator. The code lives in
// sub-packages:
//
//   - syntax: lexer and parser (Nix 2.8's grammar and desugaring), AST with
//     positions, the AST printer;
//   - eval: compilation of the AST (variables resolved to environment
//     slots), the lazy evaluator, builtins, the printers of
//     nix-instantiate --eval (plain, --json, --xml) and Nix-style errors;
//   - evalio: the one interface to files and the Nix store (Store), and
//     Host, the implementation used until the store issues plug in a real
//     store;
//   - cli: the `castor eval` and `castor repl` commands;
//   - difftest: differential tests against Nix 2.8.
//
// The Nix 2.8 language tests are in testdata/lang (see its README) and run
// in package eval (TestLang).
package evaluator
