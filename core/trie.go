package core

import (
	"slices"
	"strings"
	"sync"
)

// topicPatterns indexes the wildcard subscriptions of one topic as a trie of
// key segments, so a dispatch visits only the branches its key can match.
type topicPatterns struct {
	mu   sync.RWMutex
	root trieNode
	// dead is set when the last pattern left and the trie was dropped from
	// the Hub; an insert that finds it dead must fetch a new trie.
	dead bool
}

type trieNode struct {
	children map[string]*trieNode
	plus     *trieNode
	hash     []*Subscription // filters ending in '#' below this node
	exact    []*Subscription // filters ending at this node
}

func (n *trieNode) isEmpty() bool {
	return len(n.children) == 0 && n.plus == nil && len(n.hash) == 0 && len(n.exact) == 0
}

// insert adds sub; it returns false, adding nothing, when the trie is dead.
func (tp *topicPatterns) insert(sub *Subscription) bool {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.dead {
		return false
	}
	n := &tp.root
	segs := sub.Filter.segs
	for i, seg := range segs {
		if seg == "#" {
			n.hash = append(n.hash, sub)
			return true
		}
		n = n.child(seg, true)
		if i == len(segs)-1 {
			n.exact = append(n.exact, sub)
		}
	}
	return true
}

func (n *trieNode) child(seg string, create bool) *trieNode {
	if seg == "+" {
		if n.plus == nil && create {
			n.plus = &trieNode{}
		}
		return n.plus
	}
	c := n.children[seg]
	if c == nil && create {
		if n.children == nil {
			n.children = make(map[string]*trieNode)
		}
		c = &trieNode{}
		n.children[seg] = c
	}
	return c
}

// remove deletes sub and prunes the nodes it leaves empty. When the trie is
// left empty it is marked dead and remove returns true: the caller drops it,
// so a topic's trie lives only while the topic has pattern subscriptions.
func (tp *topicPatterns) remove(sub *Subscription) bool {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.root.remove(sub, sub.Filter.segs)
	tp.dead = tp.root.isEmpty()
	return tp.dead
}

func (n *trieNode) remove(sub *Subscription, segs []string) {
	if segs[0] == "#" {
		n.hash = deleteSub(n.hash, sub)
		return
	}
	c := n.child(segs[0], false)
	if c == nil {
		return
	}
	if len(segs) == 1 {
		c.exact = deleteSub(c.exact, sub)
	} else {
		c.remove(sub, segs[1:])
	}
	if c.isEmpty() {
		if segs[0] == "+" {
			n.plus = nil
		} else {
			delete(n.children, segs[0])
		}
	}
}

func deleteSub(subs []*Subscription, sub *Subscription) []*Subscription {
	if i := slices.Index(subs, sub); i >= 0 {
		subs[i] = subs[len(subs)-1]
		subs[len(subs)-1] = nil
		subs = subs[:len(subs)-1]
	}
	return subs
}

// match calls fn for every pattern subscription matching the key. Callers
// hold tp.mu for reading.
func (tp *topicPatterns) match(key string, hasKey bool, fn func(*Subscription)) {
	if !hasKey {
		for _, s := range tp.root.hash {
			fn(s)
		}
		return
	}
	tp.root.match(key, fn)
}

func (n *trieNode) match(key string, fn func(*Subscription)) {
	for _, s := range n.hash {
		fn(s)
	}
	seg, rest, more := strings.Cut(key, "/")
	for _, c := range [2]*trieNode{n.children[seg], n.plus} {
		if c == nil {
			continue
		}
		if more {
			c.match(rest, fn)
			continue
		}
		for _, s := range c.exact {
			fn(s)
		}
		for _, s := range c.hash { // "a/#" matches "a" too
			fn(s)
		}
	}
}
