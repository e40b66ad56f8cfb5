// Package ws is kedge's WebSocket adapter: gorilla/websocket on /v1/ws,
// speaking the JSON protocol specified in docs/protocol-ws.md.
//
// Reading uses gorilla (handshake, masking, fragmentation, control frames).
// Writing does not: gorilla writes one frame per system call, and a fan-out
// server writing one message per syscall caps a core near 270k deliveries/s.
// Instead each message is encoded once into a complete server frame
// (core.Message.Encoded), shared by every subscriber, and each connection's
// writer sends everything queued with one writev. This is safe beside
// gorilla's own rare control writes (a close after a protocol error) because
// every write to a net.Conn is one call, and Go serialises calls on a
// connection. Ping and close handlers are replaced so that gorilla never
// writes pongs or close echoes itself.
//
// A connection costs one goroutine (its read loop) while idle; its writer
// goroutine exists only while there is something to write, and keepalive
// pings run from a timer.
package ws
