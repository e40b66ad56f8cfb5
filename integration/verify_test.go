package integration

import (
	"os/exec"
	"strings"
	"testing"
)

// `kedge bench verify` on a small run: three nodes, subscribers that
// disconnect every ~200ms and resume on another node, and a report of zero
// lost, duplicated or reordered messages (the full 100,000-message run and
// its output are in docs/verify.md).
func TestBenchVerify(t *testing.T) {
	out, err := exec.Command(kedgeBin, "bench", "verify", "--messages", "3000", "--keys", "30",
		"--subscribers", "2", "--publishers", "8", "--disconnect-every", "200ms", "--drain", "30s").CombinedOutput()
	if err != nil {
		t.Fatalf("kedge bench verify: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "OK: every subscriber got every message exactly once") {
		t.Fatalf("verifier did not report OK:\n%s", out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 9 && f[0] != "protocol" && (f[4] != "0" || f[5] != "0" || f[6] != "0") {
			t.Fatalf("lost/duplicated/reordered not zero: %q", line)
		}
	}
}
