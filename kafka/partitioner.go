package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// partitioner maps partitioner.class onto franz-go. Java class names of
// Kafka's own partitioners are accepted as aliases.
func partitioner(name string) (kgo.Partitioner, error) {
	short := name[strings.LastIndexByte(name, '.')+1:]
	switch strings.ToLower(short) {
	case "default", "defaultpartitioner", "builtinpartitioner", "murmur2":
		return kgo.StickyKeyPartitioner(nil), nil
	case "null-key-zero":
		return nullKeyZero{kgo.StickyKeyPartitioner(nil)}, nil
	case "round-robin", "roundrobinpartitioner":
		return kgo.RoundRobinPartitioner(), nil
	}
	return nil, fmt.Errorf("%q is not default, null-key-zero or round-robin", name)
}

// nullKeyZero hashes keys exactly as Kafka does and sends every null-key
// record to partition 0, so that null-key subjects keep their order.
type nullKeyZero struct{ keyed kgo.Partitioner }

func (p nullKeyZero) ForTopic(t string) kgo.TopicPartitioner {
	return nullKeyZeroTopic{p.keyed.ForTopic(t)}
}

type nullKeyZeroTopic struct{ keyed kgo.TopicPartitioner }

func (nullKeyZeroTopic) RequiresConsistency(*kgo.Record) bool { return true }

func (p nullKeyZeroTopic) Partition(r *kgo.Record, n int) int {
	if r.Key == nil {
		return 0
	}
	return p.keyed.Partition(r, n)
}

// verifyChainOnly checks the broker's certificate chain against roots but not
// its host name, which is what Kafka does with an empty
// ssl.endpoint.identification.algorithm.
func verifyChainOnly(roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("broker sent no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
		return err
	}
}
