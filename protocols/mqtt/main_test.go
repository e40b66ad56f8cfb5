package mqtt

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: mochi's
// event loop and client loops, kedge's writers and session clean-ups, and
// the test clients must all be gone once each server has shut down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
