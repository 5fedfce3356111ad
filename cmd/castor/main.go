// Command castor is Castor's one CLI: a Nix store, builder and evaluator
// over a content-addressed store. Each subcommand parses its flags, builds
// the objects it needs and calls a package; nothing else lives here.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
