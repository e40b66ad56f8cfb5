package main

import (
	"fmt"
	"io"
)

// bench dispatches the bench subcommands.
func bench(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "verify" {
		return benchVerify(args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, "usage: kedge bench verify [flags]   (see kedge bench verify --help)")
	return 2
}
