package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/kedgehq/kedge/protocols/ws/client"
)

// ExampleDial subscribes to a pattern and publishes to a subject it
// matches, against a kedge started with `kedge serve`. The handler sees the
// published message once it has come back from Kafka.
func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://127.0.0.1:8080/v1/ws", func(m client.Message) {
		fmt.Printf("%s: %s (position %s, snapshot %v)\n", m.Subject, m.Data(), m.Position, m.Snapshot)
	}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if err := c.Subscribe(ctx, []string{"/demo/+"}, client.SubscribeOptions{}); err != nil {
		log.Fatal(err)
	}
	pos, err := c.Publish(ctx, "/demo/k1", []byte("hello"), map[string]string{"source": "example"})
	var refused *client.Error
	switch {
	case errors.As(err, &refused):
		fmt.Println("refused:", refused.Code, refused.Message)
	case errors.Is(err, client.ErrClosed):
		fmt.Println("connection lost:", err)
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("stored in Kafka at", pos)
	}
}
