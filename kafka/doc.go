// Package kafka connects kedge to Kafka with franz-go: a Source that consumes
// every partition of every exposed topic and dispatches records to the core
// Hub in each partition's order, a Publisher that produces client publishes
// with acks=all and idempotence, the mapping of Kafka's own property names
// onto franz-go options, and an embedded development broker built on kfake.
//
// Consumption uses no consumer group: every node reads every partition
// ("everybody reads everything"), so a Source assigns partitions itself. A
// discovery loop reads cluster metadata (every metadata.max.age.ms, and at
// once when a client asks for a topic it does not know), spreads partitions
// over the `consumers` clients with AddConsumePartitions, and derives each
// topic's epoch from its topic ID and partition count, so that a re-created
// topic or a changed partition count is visible in every position.
//
// Where franz-go falls short: it has no notion of Kafka's Java property names,
// so properties.go maps them; and kfake retention only runs on a timer for
// topics with their own retention configs, so Embedded applies broker-wide
// retention itself on a ticker.
package kafka
