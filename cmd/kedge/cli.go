package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/kedgehq/kedge/protocols/ws/client"
)

const defaultURL = "ws://127.0.0.1:8080/v1/ws"

// sub prints every message of the given subjects or patterns, one per line:
// SUBJECT POSITION [snapshot] PAYLOAD.
func sub(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("sub", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr("KEDGE_URL", defaultURL), "kedge WebSocket URL")
	standard := fs.Bool("standard", false, "standard delivery (may drop) instead of guaranteed")
	noSnapshot := fs.Bool("no-snapshot", false, "skip the latest cached message")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		_, _ = fmt.Fprintln(stderr, "usage: kedge sub [--url URL] SUBJECT...")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	print := func(m client.Message) {
		mark := ""
		if m.Snapshot {
			mark = " [snapshot]"
		}
		_, _ = fmt.Fprintf(stdout, "%s %s%s %s\n", m.Subject, m.Position, mark, m.Payload)
	}
	dialCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.Connect(dialCtx, *url, client.Options{
		OnDisconnect: func(err error) { _, _ = fmt.Fprintf(stderr, "kedge sub: disconnected (%v); reconnecting\n", err) },
	})
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "kedge sub: %v\n", err)
		return 1
	}
	defer func() { _ = c.Close() }()
	opts := client.SubscribeOptions{Standard: *standard, NoSnapshot: *noSnapshot,
		OnReset: func(reason string) { _, _ = fmt.Fprintf(stderr, "kedge sub: messages were missed: %s\n", reason) }}
	for _, subject := range fs.Args() {
		if _, err := c.Subscribe(dialCtx, subject, print, opts); err != nil {
			_, _ = fmt.Fprintf(stderr, "kedge sub: %v\n", err)
			return 1
		}
	}
	select {
	case <-ctx.Done():
		return 0
	case <-c.Done():
		_, _ = fmt.Fprintf(stderr, "kedge sub: %v\n", c.Err())
		return 1
	}
}

// pub publishes one message and prints the acknowledged position.
func pub(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("pub", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr("KEDGE_URL", defaultURL), "kedge WebSocket URL")
	headers := fs.StringToString("header", nil, "a header, name=value (repeatable)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the acknowledgement")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 2 {
		_, _ = fmt.Fprintln(stderr, "usage: kedge pub [--url URL] SUBJECT PAYLOAD")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c, err := client.Connect(ctx, *url, client.Options{})
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "kedge pub: %v\n", err)
		return 1
	}
	defer func() { _ = c.Close() }()
	pos, err := c.Publish(ctx, fs.Arg(0), []byte(fs.Arg(1)), *headers)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "kedge pub: %v\n", err)
		return 1
	}
	_, _ = fmt.Fprintf(stdout, "ack %s %s\n", fs.Arg(0), pos)
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
