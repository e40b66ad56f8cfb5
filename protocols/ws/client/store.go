package client

import "sync"

// PositionStore keeps, per subscribed subject or pattern, the cursor the
// subscription resumes from. The Client sets it as messages are handled;
// a store that persists (a file, a mobile key-value store) lets an
// application resume where it left off after a restart. Implementations
// must be safe for concurrent use and should be fast: Set is called for
// every message.
type PositionStore interface {
	Get(subject string) (cursor string, ok bool)
	Set(subject, cursor string)
	Delete(subject string)
}

// MemoryStore is the default PositionStore: it lives as long as the process.
type MemoryStore struct {
	mu sync.Mutex
	m  map[string]string
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{m: make(map[string]string)} }

// Get implements PositionStore.
func (s *MemoryStore) Get(subject string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[subject]
	return c, ok
}

// Set implements PositionStore.
func (s *MemoryStore) Set(subject, cursor string) {
	s.mu.Lock()
	s.m[subject] = cursor
	s.mu.Unlock()
}

// Delete implements PositionStore.
func (s *MemoryStore) Delete(subject string) {
	s.mu.Lock()
	delete(s.m, subject)
	s.mu.Unlock()
}
