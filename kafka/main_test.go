package kafka

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: every
// Source, Producer, History read and embedded broker a test starts must
// stop when it is closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
