package ws

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests: every
// connection's read loop and writer, every fake publisher callback and every
// test client must be gone. No goroutine is ignored: the test harness closes
// its clients, waits for the server to count zero connections and then
// closes the httptest server, so gorilla and httptest leave nothing behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
