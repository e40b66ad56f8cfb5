// Package integration holds kedge's end-to-end tests: a real kedge binary
// (built with -race once per run) on random loopback ports, Kafka either
// embedded in kedge or a kfake broker inside the test process (for fault
// injection), and real clients of each protocol plus franz-go as the outside
// Kafka world.
package integration
