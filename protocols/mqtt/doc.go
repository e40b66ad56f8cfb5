// Package mqtt is kedge's MQTT adapter: MQTT 3.1, 3.1.1 and 5 over TCP (or
// TLS) and over WebSocket, on the mochi-mqtt/server/v2 broker bridged to
// core by a hook. docs/protocol-mqtt.md describes what clients see.
//
// mochi keeps the protocol: reading and validating packets, CONNECT and
// CONNACK, keepalive, SUBSCRIBE and UNSUBSCRIBE with their acks, QoS 2's
// PUBREL/PUBCOMP, topic aliases, and the server's own $SYS topics. kedge
// keeps everything that touches subjects: MQTT topic "a/b/c" is subject
// "/a/b/c" (Kafka topic "a", key "b/c"), every publish goes to Kafka, every
// subscription is a core subscription, and sessions are kedge's.
// Authentication and authorization are core's (core.Session), as on every
// protocol: CONNECT's password carries the token (auth.go).
//
// Where mochi falls short for kedge, and how this package works around it
// (mochi v2.7.9; see hook.go):
//
//   - Acknowledging after Kafka. mochi acknowledges a publish as soon as
//     its OnPublish hooks return (or never, when a hook rejects it). The
//     hook rejects every publish (ErrRejectPacket), hands it to Kafka, and
//     writes the PUBACK (QoS 1) or PUBREC (QoS 2) itself from Kafka's
//     answer. For QoS 2 it then stores the PUBREC in mochi's inflight
//     store, so that mochi answers the client's PUBREL with PUBCOMP.
//   - Local fan-out. mochi delivers publishes to its own subscribers. Since
//     every publish is rejected, nothing reaches them; besides, mochi's
//     topic index holds only '$' filters (OnACLCheck refuses the others
//     there): kedge delivers from the Hub, so guaranteed and standard
//     modes, snapshots and per-key order are core's.
//   - Per-client delivery. mochi's Client.WritePacket encodes every packet
//     for every client and writes it synchronously, which cannot be called
//     under the Hub's locks. Each message is instead encoded once per MQTT
//     generation (core.Message.Encoded) in a shared QoS 1 layout; a
//     delivery adds only its first byte, length, topic and packet
//     identifier, and a writer goroutine (only while there is something to
//     write) sends whole batches with one writev. kedge assigns its own
//     packet identifiers and tracks PUBACKs itself (OnPacketRead), so $SYS
//     deliveries, mochi's, are limited to QoS 0.
//   - Reason codes. mochi decides SUBACK and UNSUBACK codes itself and
//     offers no hook for them; OnPacketEncode replaces them with kedge's
//     (topic filter invalid, not exposed, quota exceeded, …), and sets
//     CONNACK's session present flag and capabilities. MQTT 3.1.1 CONNACK
//     return codes mochi leaves in MQTT 5 form are mapped there too.
//   - Sessions. mochi's sessions keep mochi subscriptions and inflight
//     messages only. kedge's session is the core.Subscriber: its Hub
//     subscriptions stay while a persistent client is away and what they
//     deliver waits, bounded, for its return (registry.go). With a
//     core.Table (Config.Sessions: a compacted Kafka topic), a persistent
//     session also keeps a record of its subscriptions and positions, so
//     that another node can take it over when the client comes back there
//     (persist.go).
//   - Wills. mochi publishes a will locally; the hook takes it over at
//     CONNECT and publishes it to Kafka, honouring MQTT 5's will delay.
//   - Silent drops. mochi drops QoS 1 and 2 publishes to $SYS topics
//     without an answer; OnPacketRead refuses them first.
//   - Writes and deadlines. mochi writes its packets straight to the
//     connection and uses SetDeadline for keepalive, which also moves the
//     write deadline. Every connection is a netConn that serialises
//     mochi's writes with kedge's batches and gives each write its own
//     deadline; a connect timeout (mochi has none) covers the TLS
//     handshake and the CONNECT packet.
//   - Idle memory. mochi gives every client two goroutines (its read loop
//     and a write loop), a read buffer and a queue for pending writes; the
//     read buffer is 512 bytes and mochi's queue (used for $SYS only) 16
//     entries here. The write loop cannot be avoided without changing mochi.
//
// Known limits that remain: a QoS 2 publish sent again (DUP) after its
// PUBREC and before PUBREL gets mochi's "packet identifier in use" (0x91)
// from an MQTT 5 client's view; mochi scans every client once a second for
// expired inflight messages and sessions.
package mqtt
