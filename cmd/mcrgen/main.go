// Command mcrgen sends and receives verifiable UDP test streams; see
// package mcrgen.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mcrelay/mcr/mcrgen"
)

func main() {
	// Ctrl-C and SIGTERM end the run; its results are still printed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := mcrgen.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
