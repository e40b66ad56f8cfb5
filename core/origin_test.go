package core

import "testing"

func TestOrigin(t *testing.T) {
	n := &Node{Hub: NewHub(CacheConfig{})}
	if _, ok := n.Origin("t"); ok {
		t.Fatal("Origin of an unknown topic")
	}
	n.Hub.Begin("t", 7, 0, 10)
	n.Hub.Begin("t", 7, 1, 0)
	n.Hub.Dispatch(&Message{Subject: "/t/k", Topic: "t", Key: "k", HasKey: true, Pos: Position{Epoch: 7, Partition: 0, Offset: 10}})
	c, ok := n.Origin("t")
	if !ok || c.String() != "7-0-9,7-1--1" {
		t.Fatalf("Origin = %v, %v; want 7-0-9,7-1--1", c, ok)
	}
	if f, _ := n.Hub.Frontier("t"); f.String() != "7-0-10,7-1--1" {
		t.Fatalf("Frontier = %v", f)
	}
	n.Hub.Begin("t", 8, 1, 0) // mixed epochs
	if _, ok := n.Origin("t"); ok {
		t.Fatal("Origin of mixed epochs")
	}
}
