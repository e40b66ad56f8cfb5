// Package core is kedge's protocol-neutral heart: subjects and patterns, messages
// and their Kafka positions, the Hub that indexes subscriptions and fans messages
// out, the per-subject cache that serves snapshots and recovery, and the
// Subscriber boundary that every protocol adapter implements.
//
// core imports no protocol package and no Kafka library. Messages enter through
// Hub.Dispatch (called by the kafka package, in Kafka's per-partition order) and
// leave through Subscriber.Deliver (implemented by protocols/*). A publish never
// short-cuts through the Hub: it goes to Kafka and comes back like any record, so
// every node and every protocol sees one order, Kafka's.
package core
