package client

import (
	"errors"
	"fmt"

	"github.com/gorilla/websocket"
)

// Error is an error frame from kedge: Code is from the protocol's stable
// list (docs/protocol-ws.md), e.g. "invalid_subject" or "kafka_timeout".
type Error struct {
	Code    string
	Subject string
	Message string
}

func (e *Error) Error() string {
	if e.Subject != "" {
		return fmt.Sprintf("kedge: %s: %s (subject %s)", e.Code, e.Message, e.Subject)
	}
	return fmt.Sprintf("kedge: %s: %s", e.Code, e.Message)
}

// CloseError is kedge closing the connection with a code and reason.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("kedge: connection closed with code %d: %s", e.Code, e.Reason)
}

// Reconnect reports whether the code asks the client to come back: codes
// below 4500 (and the WebSocket ones) do; 4500–4999 mean "change something",
// and so does 1009, which kedge's WebSocket library sends for a frame over
// the read limit (the same as 4501): sending it again would fail again. The
// TypeScript client decides alike.
func (e *CloseError) Reconnect() bool {
	return e.Code < 4500 && e.Code != websocket.CloseMessageTooBig
}

// Sentinel errors.
var (
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("kedge client: closed")
	// ErrConnectionLost: a publish was sent but the connection dropped
	// before kedge acknowledged it; it may or may not be in Kafka.
	ErrConnectionLost = errors.New("kedge client: connection lost before the acknowledgement; the message may or may not have been published")
	// ErrQueueFull: a publish made while disconnected found the queue full.
	ErrQueueFull = errors.New("kedge client: offline publish queue is full")
	// ErrNotConnected: a request other than a publish, made while disconnected.
	ErrNotConnected = errors.New("kedge client: not connected")
	// ErrAlreadySubscribed: the Client already has a subscription to the subject.
	ErrAlreadySubscribed = errors.New("kedge client: already subscribed")
)
