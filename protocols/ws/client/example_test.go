package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/kedgehq/kedge/protocols/ws/client"
)

// kedgeURL is where your kedge listens (`kedge serve` defaults to
// ws://127.0.0.1:8080/v1/ws); the tests point it at an in-process kedge.
var kedgeURL = "ws://127.0.0.1:8080/v1/ws"

// Subscribe to a pattern, publish to a subject it matches, and see the
// message come back from Kafka.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, kedgeURL, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	got := make(chan client.Message, 1)
	if _, err := c.Subscribe(ctx, "/demo/+", func(m client.Message) { got <- m }, client.SubscribeOptions{NoSnapshot: true}); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Publish(ctx, "/demo/k1", []byte("hello"), nil); err != nil {
		log.Fatal(err)
	}
	m := <-got
	fmt.Printf("%s: %s\n", m.Subject, m.Payload)
	// Output: /demo/k1: hello
}

// Publish returns only after Kafka acknowledged the message; errors carry
// the protocol's codes.
func ExampleClient_Publish() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Connect(ctx, kedgeURL, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	_, err = c.Publish(ctx, "/demo/+", []byte("wildcards are for subscribing"), nil)
	var refused *client.Error
	switch {
	case errors.As(err, &refused):
		fmt.Println("refused:", refused.Code)
	case errors.Is(err, client.ErrConnectionLost):
		fmt.Println("unknown outcome: publish again if duplicates are acceptable")
	case err != nil:
		log.Fatal(err)
	}
	// Output: refused: invalid_pattern
}

// A reset says that messages missed while disconnected could not be
// recovered (Kafka's retention, a re-created topic).
func ExampleSubscribeOptions_onReset() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store := client.NewMemoryStore()
	store.Set("/demo/state", "9-0-41") // a position from a topic since re-created
	c, err := client.Connect(ctx, kedgeURL, client.Options{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Close() }()

	reset := make(chan string, 1)
	_, err = c.Subscribe(ctx, "/demo/state", func(client.Message) {}, client.SubscribeOptions{
		OnReset: func(reason string) { reset <- reason },
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("reset:", <-reset)
	// Output: reset: the topic was re-created or its partition count changed
}
