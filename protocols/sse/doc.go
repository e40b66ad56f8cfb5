// Package sse is kedge's Server-Sent Events adapter (GET /v1/sse) and its
// plain HTTP endpoints: POST /v1/publish and GET /v1/snapshot. The wire
// format is specified in docs/protocol-sse.md.
//
// # One id for every subscription of a stream
//
// Each stream keeps, per subscription, a cursor (core.Cursor: the last
// offset the client has of each partition of the subscription's topic),
// started from the topic's frontier read just before the subscription is
// registered and advanced by the position of every message queued. Every
// event carries all the cursors of its stream in its "id:" field (see id.go
// for the encoding), so the Last-Event-ID an EventSource sends when it
// reconnects resumes every subscription through core.SubscribeOptions.Since,
// with no gap and no duplicate. The cursors are updated under the same lock
// as the queue, so an event's id describes exactly the events before it.
//
// # Why the stream is not r3labs/sse's server
//
// The design notes name github.com/r3labs/sse/v2. Its client is what the
// tests use to read kedge's streams (a second, independent reading of the
// format), but its server side cannot meet this package's requirements, so
// the stream is written here (writer.go, conn.go):
//
//   - Its ServeHTTP answers 400 to any Last-Event-ID that is not an integer,
//     and resumes only from its event log, which grows without bound and
//     renumbers ids; kedge's ids are cursor tokens resolved by core.
//   - Its queues are bounded in events (a 1024-event stream channel and a
//     64-event subscriber channel), not bytes, and TryPublish only drops: a
//     guaranteed subscriber cannot be told apart and closed with a reason.
//   - It writes and flushes each event on its own (a system call per
//     event) and sets no write deadline, so one stuck client holds its
//     stream goroutine until TCP gives up.
//   - Every event with data gets an "id:" line, empty when the event has
//     none, which would erase a browser's Last-Event-ID on a reset or an
//     error event.
//   - Each stream costs a registry entry, a goroutine and both channels
//     (about 9 KB) while idle.
//
// Here a stream costs its handler goroutine while idle; the writer
// goroutine exists only while there is something to write, writes
// everything queued and flushes once. Live message events are encoded once
// per message (core.Message.Encoded) and shared by every stream; only the
// id line is per stream.
package sse
