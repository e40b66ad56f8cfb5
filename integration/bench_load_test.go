package integration

import (
	"os/exec"
	"strings"
	"testing"
)

// The load harness end to end on a tiny load, kedge alone (the peers are
// `make bench`'s): worker processes, every protocol's clients, the Kafka,
// WebSocket and MQTT publishers, and the reports. Its numbers mean nothing.
func TestBenchLoadSmoke(t *testing.T) {
	runs := [][]string{
		{"fanout", "--protocol", "ws", "--publisher", "ws", "--subscribers", "20", "--subjects", "2", "--duration", "1s", "--peer", "none"},
		{"fanout", "--protocol", "sse", "--subscribers", "20", "--rate", "200", "--duration", "1s", "--direct"},
		{"fanout", "--protocol", "mqtt", "--subscribers", "20", "--duration", "1s", "--peer", "none"},
		{"idle", "--connections", "30", "--protocols", "ws,mqtt,sse", "--peers=false", "--settle", "200ms"},
		{"publish", "--via", "ws", "--connections", "2", "--duration", "1s"},
	}
	for _, args := range runs {
		t.Run(strings.Join(args[:3], " "), func(t *testing.T) {
			out, err := exec.Command(kedgeBin, append([]string{"bench"}, args...)...).CombinedOutput()
			if err != nil {
				t.Fatalf("kedge bench %v: %v\n%s", args, err, out)
			}
			if args[0] != "fanout" {
				return
			}
			for _, line := range strings.Split(string(out), "\n") {
				f := strings.Fields(line)
				// server via deliveries/s msgs/s CPU per-CPU p50 p99 p99.9 lost dead …
				if len(f) > 10 && f[0] == "kedge" && (f[9] != "0" || f[10] != "0" || f[2] == "0") {
					t.Fatalf("lost or dead subscribers, or nothing delivered: %q\n%s", line, out)
				}
			}
		})
	}
}
