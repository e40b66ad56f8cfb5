// Package configs loads kedge's configuration with koanf, in this order, each
// layer overriding the one before: built-in defaults → a YAML file → KEDGE_…
// environment variables → KEDGE_KAFKA_EXTRA_OPTS → command-line flags.
//
// One table (schema.go) describes every key: its name, kind, default and
// documentation. Defaults, environment names, flags, type checks and the
// example file configs/kedge.yaml are all checked against it, so an unknown
// key anywhere is an error that names the key.
//
// Key names are lowercase words joined by dots, the first word being the
// section: "cache.expire.time". In YAML a section is a map and the rest of the
// name may stay dotted ("cache: {expire.time: 180s}") or be nested. Inside the
// kafka section, Kafka's own property names are accepted ("kafka:
// {linger.ms: 5}"); the kafka package maps them onto franz-go and rejects, by
// name, those it does not know or cannot honour.
//
// koanf is used with "/" as its path delimiter, not ".", because Kafka
// property names contain dots and "kafka.topics" (a list) sits beside
// "kafka.topics.regex" (a string), which dotted nesting cannot represent.
package configs
