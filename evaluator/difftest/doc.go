// Package difftest compares castor's evaluator with Nix 2.8 (the oracle,
// nix-instantiate --eval --strict) on the same expressions: a hand-written
// corpus (testdata/corpus.nix) and expressions from Generator, a random
// generator of well-typed Nix expressions. Divergences are found by the
// machine: the tests print the expression, both outputs and the seed.
//
// Run more generated cases with
//
//	go test ./evaluator/difftest -run TestGenerated -difftest.n=100000
//
// or let the fuzzer pick seeds: go test ./evaluator/difftest -fuzz=FuzzDifferential.
package difftest
