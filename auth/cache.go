package auth

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// ttlCache is a bounded least-recently-used cache whose entries also expire.
// An expired entry is dropped when it is next looked up, or evicted by size
// like any other, so the cache never holds more than its size. It starts no
// goroutine. A nil *ttlCache caches nothing.
type ttlCache[V any] struct {
	lru *lru.Cache[string, ttlEntry[V]]
	now func() time.Time
}

type ttlEntry[V any] struct {
	v       V
	expires time.Time
}

// newTTLCache returns a cache of at most size entries; nil when size <= 0.
func newTTLCache[V any](size int, now func() time.Time) *ttlCache[V] {
	if size <= 0 {
		return nil
	}
	l, err := lru.New[string, ttlEntry[V]](size)
	if err != nil {
		panic(err) // only for size <= 0, excluded above
	}
	return &ttlCache[V]{lru: l, now: now}
}

func (c *ttlCache[V]) get(key string) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	e, ok := c.lru.Get(key)
	if !ok {
		return zero, false
	}
	if !c.now().Before(e.expires) {
		c.lru.Remove(key)
		return zero, false
	}
	return e.v, true
}

// add stores v until expires; an entry already expired is not stored.
func (c *ttlCache[V]) add(key string, v V, expires time.Time) {
	if c == nil || !c.now().Before(expires) {
		return
	}
	c.lru.Add(key, ttlEntry[V]{v: v, expires: expires})
}

func (c *ttlCache[V]) len() int {
	if c == nil {
		return 0
	}
	return c.lru.Len()
}
