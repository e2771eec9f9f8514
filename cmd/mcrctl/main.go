// Command mcrctl is the operator CLI of mcrd; see package mcrctl.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcrelay/mcr/mcrctl"
)

func main() {
	// Ctrl-C and SIGTERM end the context: `stats --watch` exits cleanly,
	// a request in flight is abandoned.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mcrctl.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
