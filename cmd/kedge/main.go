// Command kedge is the kedge edge server and its command-line tools.
//
//	kedge serve [--config FILE] [--set key=value]... [--<key> value]...
//	kedge sub [--url URL] SUBJECT...
//	kedge pub [--url URL] SUBJECT PAYLOAD
//	kedge bench verify [flags]
//	kedge bench fanout|idle|publish|targets [flags]
//	kedge config check FILE
//	kedge version
//
// main is the only package that imports everything: it wires configuration
// → kafka → core → protocols.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `kedge extends Kafka to the Internet over WebSocket.

Usage:
  kedge serve [--config FILE] [--set key=value]... [--<key> value]...
                                  run the server (no config: embedded Kafka, dev defaults)
  kedge sub [--url URL] SUBJECT...  print every message of subjects or patterns
  kedge pub [--url URL] SUBJECT PAYLOAD
                                  publish a message and print Kafka's acknowledgement
  kedge bench verify [flags]       prove the delivery guarantee on a local cluster
  kedge bench fanout|idle|publish|targets [flags]
                                  load and measure kedge against its peers (docs/benchmarks.md)
  kedge config check FILE          validate a configuration file
  kedge version                    print the version

Configuration keys are documented in configs/kedge.yaml.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		_, _ = fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "sub":
		return sub(args[1:], stdout, stderr)
	case "pub":
		return pub(args[1:], stdout, stderr)
	case "config":
		return configCmd(args[1:], stdout, stderr)
	case "bench":
		return bench(args[1:], stdout, stderr)
	case "version", "--version":
		_, _ = fmt.Fprintf(stdout, "kedge %s (%s, %s/%s)%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH, revision())
		return 0
	case "help", "-h", "--help":
		_, _ = fmt.Fprint(stdout, usage)
		return 0
	}
	_, _ = fmt.Fprintf(stderr, "kedge: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func revision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return " " + s.Value[:12]
		}
	}
	return ""
}
