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
	if len(args) > 0 {
		if cmd, ok := benchLoadCommands[args[0]]; ok {
			return cmd(args[1:], stdout, stderr)
		}
	}
	_, _ = fmt.Fprintln(stderr, "usage: kedge bench verify|fanout|idle|publish|targets [flags]   (see kedge bench COMMAND --help)")
	return 2
}
