package integration

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// `kedge bench verify` on a small run: three nodes; WebSocket, SSE and MQTT
// subscribers that disconnect every ~200ms and resume on another node (MQTT
// with its persistent session); messages published through
// WebSocket, HTTP and MQTT; and a report of zero lost, duplicated or
// reordered messages for every protocol (the full 100,000-message run and
// its output are in docs/verify.md).
func TestBenchVerify(t *testing.T) {
	out, err := exec.Command(kedgeBin, "bench", "verify", "--messages", "3000", "--keys", "30",
		"--subscribers", "2", "--publishers", "9", "--disconnect-every", "200ms", "--drain", "30s").CombinedOutput()
	if err != nil {
		t.Fatalf("kedge bench verify: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "OK: every subscriber got every message exactly once") {
		t.Fatalf("verifier did not report OK:\n%s", out)
	}
	subscribers, publishers := map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 9 && isNumber(f[1]): // protocol subscribers expected delivered lost duplicated reordered resets reconnects
			if f[2] != "6000" || f[3] != "6000" || f[4] != "0" || f[5] != "0" || f[6] != "0" {
				t.Fatalf("%s: not every message exactly once and in order: %q\n%s", f[0], line, out)
			}
			if f[8] == "0" {
				t.Fatalf("%s: no reconnection: %q", f[0], line)
			}
			subscribers[f[0]] = true
		case len(f) == 5 && isNumber(f[1]): // publisher clients keys published failed
			if f[4] != "0" || f[3] == "0" {
				t.Fatalf("%s publishers: %q", f[0], line)
			}
			publishers[f[0]] = true
		}
	}
	for _, p := range []string{"ws", "sse", "mqtt"} {
		if !subscribers[p] {
			t.Errorf("no %s subscribers in the report:\n%s", p, out)
		}
	}
	for _, p := range []string{"ws", "http", "mqtt"} {
		if !publishers[p] {
			t.Errorf("no %s publishers in the report:\n%s", p, out)
		}
	}
}

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}
