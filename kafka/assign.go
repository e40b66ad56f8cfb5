package kafka

import (
	"context"
	"hash/fnv"
	"maps"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startFrom says where a newly consumed partition begins.
type startFrom int

const (
	fromEnd   startFrom = iota // at start without recover-on-start
	fromTime                   // at start with it, and topics that appear later
	fromStart                  // a re-created topic, added partitions
)

// plan is what one discovery changes for one topic.
type plan struct {
	topic   string
	detail  topicDetail
	epoch   uint32
	from    startFrom
	at      time.Time // for fromTime
	add     []int32   // partitions to start consuming
	rebegin []int32   // partitions consumed on, under a new epoch
}

// apply reconciles the consumed partitions with the cluster's topics. Start
// offsets are resolved to numbers (ListOffsets) before consuming, so that the
// Hub learns exactly from which offset it has every record (Begin).
func (s *Source) apply(ctx context.Context, details map[string]topicDetail, first bool) {
	remove := make([]map[string][]int32, len(s.clients))
	for i := range remove {
		remove[i] = map[string][]int32{}
	}
	var plans []*plan
	for _, name := range slices.Sorted(maps.Keys(details)) {
		d := details[name]
		if d.err != nil || d.internal || !s.cfg.Exposure.Exposed(name) {
			continue
		}
		if p := s.planTopic(name, d, first, remove); p != nil {
			plans = append(plans, p)
		}
	}
	for name, st := range s.topics {
		if _, ok := details[name]; !ok {
			s.log.Info("topic deleted; no longer consumed", "topic", name)
			s.drop(name, st.partitions, remove)
			s.purge = append(s.purge, name)
			delete(s.topics, name)
			s.epochs.Delete(name)
			s.out.Forget(name)
		}
	}
	for i, cl := range s.clients {
		if len(remove[i]) > 0 {
			cl.RemoveConsumePartitions(remove[i])
		}
	}
	if len(s.purge) > 0 {
		// A deleted or re-created topic must be forgotten entirely, or
		// franz-go keeps fetching it by its old topic ID.
		for _, cl := range s.clients {
			cl.PurgeTopicsFromClient(s.purge...)
		}
		s.purge = s.purge[:0]
	}
	offsets, failed := s.resolve(ctx, plans)
	if first {
		s.beginRecovery(ctx, plans, offsets, failed)
	}
	s.start(plans, offsets, failed)
}

func (s *Source) planTopic(name string, d topicDetail, first bool, remove []map[string][]int32) *plan {
	n := d.partitions
	p := &plan{topic: name, detail: d, epoch: epochOf(d.id, n)}
	old := s.topics[name]
	switch {
	case old == nil && first && s.cfg.RecoverFor > 0:
		p.from, p.at = fromTime, s.since
	case old == nil && first:
		p.from = fromEnd
	case old == nil:
		p.from, p.at = fromTime, time.Now().Add(-s.cfg.NewTopicsFrom)
	case old.id != d.id:
		s.log.Warn("topic re-created: positions of the old one are void", "topic", name)
		s.drop(name, old.partitions, remove)
		s.purge = append(s.purge, name)
		p.from = fromStart
	case old.partitions != n:
		s.log.Warn("partition count changed: positions of the topic are void", "topic", name, "from", old.partitions, "to", n)
		p.from = fromStart
		for q := range min(old.partitions, n) {
			p.rebegin = append(p.rebegin, int32(q))
		}
		for q := n; q < old.partitions; q++ {
			remove[s.owner(name, int32(q))][name] = append(remove[s.owner(name, int32(q))][name], int32(q))
		}
		for q := old.partitions; q < n; q++ {
			p.add = append(p.add, int32(q))
		}
		return p
	default:
		return nil
	}
	for q := range n {
		p.add = append(p.add, int32(q))
	}
	return p
}

// resolve lists the start offset of every partition to add. Topics whose
// offsets cannot be listed are left for the next discovery.
func (s *Source) resolve(ctx context.Context, plans []*plan) (map[topicPartition]int64, map[string]bool) {
	adm := kadm.NewClient(s.clients[0])
	offsets := map[topicPartition]int64{}
	failed := map[string]bool{}
	byMode := map[startFrom]map[time.Time][]string{}
	for _, p := range plans {
		if len(p.add) == 0 {
			continue
		}
		if byMode[p.from] == nil {
			byMode[p.from] = map[time.Time][]string{}
		}
		byMode[p.from][p.at] = append(byMode[p.from][p.at], p.topic)
	}
	for mode, groups := range byMode {
		for at, topics := range groups {
			var listed kadm.ListedOffsets
			var err error
			switch mode {
			case fromEnd:
				listed, err = adm.ListEndOffsets(ctx, topics...)
			case fromStart:
				listed, err = adm.ListStartOffsets(ctx, topics...)
			default:
				listed, err = adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), topics...)
			}
			s.collectOffsets(listed, err, topics, offsets, failed)
		}
	}
	return offsets, failed
}

func (s *Source) collectOffsets(listed kadm.ListedOffsets, err error, topics []string, offsets map[topicPartition]int64, failed map[string]bool) {
	if err != nil {
		s.log.Warn("listing start offsets failed; retrying at the next discovery", "topics", topics, "err", err)
		for _, t := range topics {
			failed[t] = true
		}
		return
	}
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset < 0 {
			failed[o.Topic] = true
			return
		}
		offsets[topicPartition{o.Topic, o.Partition}] = o.Offset
	})
}

// start announces each planned partition to the Hub and starts consuming it.
func (s *Source) start(plans []*plan, offsets map[topicPartition]int64, failed map[string]bool) {
	add := make([]map[string]map[int32]kgo.Offset, len(s.clients))
	for i := range add {
		add[i] = map[string]map[int32]kgo.Offset{}
	}
	for _, p := range plans {
		if failed[p.topic] {
			continue
		}
		firsts := make(map[int32]int64, len(p.rebegin)+len(p.add))
		for _, q := range p.rebegin {
			tp := topicPartition{p.topic, q}
			if v, ok := s.progress.Load(tp); ok {
				firsts[q] = v.(*progress).next.Load()
			}
		}
		for _, q := range p.add {
			tp := topicPartition{p.topic, q}
			off := offsets[tp]
			pr := &progress{}
			pr.next.Store(off)
			s.progress.Store(tp, pr)
			firsts[q] = off
			i := s.owner(p.topic, q)
			if add[i][p.topic] == nil {
				add[i][p.topic] = map[int32]kgo.Offset{}
			}
			add[i][p.topic][q] = kgo.NewOffset().At(off)
		}
		if len(firsts) > 0 {
			s.out.BeginAll(p.topic, p.epoch, firsts)
		}
		s.topics[p.topic] = &topicState{id: p.detail.id, partitions: p.detail.partitions, epoch: p.epoch}
		s.epochs.Store(p.topic, p.epoch)
	}
	for i, cl := range s.clients {
		if len(add[i]) > 0 {
			cl.AddConsumePartitions(add[i])
		}
	}
}

// beginRecovery starts tracking the recover-on-start read-back: from the
// resolved start offsets to the end offsets of now.
func (s *Source) beginRecovery(ctx context.Context, plans []*plan, starts map[topicPartition]int64, failed map[string]bool) {
	if s.cfg.RecoverFor <= 0 {
		s.recovery.finish()
		return
	}
	var topics []string
	for _, p := range plans {
		if !failed[p.topic] {
			topics = append(topics, p.topic)
		}
	}
	if err := s.recovery.begin(ctx, kadm.NewClient(s.clients[0]), topics, starts); err != nil {
		s.log.Warn("recover on start: could not list end offsets; serving without waiting for the read-back", "err", err)
		s.recovery.finish()
		return
	}
	if s.recovery.isDone() {
		s.log.Info("recover on start: nothing to read back", "since", s.since)
	}
}

func (s *Source) drop(name string, partitions int, remove []map[string][]int32) {
	for p := range partitions {
		i := s.owner(name, int32(p))
		remove[i][name] = append(remove[i][name], int32(p))
		s.progress.Delete(topicPartition{name, int32(p)})
		s.recovery.forget(topicPartition{name, int32(p)})
	}
}

// owner is the index of the client that consumes a partition.
func (s *Source) owner(topic string, p int32) int {
	h := fnv.New32a()
	h.Write([]byte(topic))
	return int((h.Sum32() + uint32(p)) % uint32(len(s.clients)))
}

// epochOf derives a topic's epoch from its ID and partition count: it changes
// exactly when positions stop being comparable.
func epochOf(id [16]byte, partitions int) uint32 {
	h := fnv.New32a()
	h.Write(id[:])
	h.Write([]byte{byte(partitions >> 24), byte(partitions >> 16), byte(partitions >> 8), byte(partitions)})
	return h.Sum32()
}
