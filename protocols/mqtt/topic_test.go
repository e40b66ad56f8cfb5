package mqtt

import (
	"errors"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/kedgehq/kedge/core"
)

func testNode(t testing.TB, topics ...string) *core.Node {
	exp, err := core.NewExposure(topics, "")
	if err != nil {
		t.Fatal(err)
	}
	return &core.Node{Hub: core.NewHub(core.CacheConfig{}), Exposure: exp}
}

func TestTopicMapping(t *testing.T) {
	node := testNode(t, "demo", "vehicles")
	cases := []struct {
		topic      string
		topicKafka string
		key        string
		hasKey     bool
		code       packets.Code // for a refusal
		sentinel   error
	}{
		{topic: "demo/k1", topicKafka: "demo", key: "k1", hasKey: true},
		{topic: "demo", topicKafka: "demo"},
		{topic: "vehicles/1/speed", topicKafka: "vehicles", key: "1/speed", hasKey: true},
		{topic: "demo/ünï cödé", topicKafka: "demo", key: "ünï cödé", hasKey: true},
		{topic: "secret/k1", code: packets.ErrNotAuthorized, sentinel: core.ErrNotExposed},
		{topic: "demo//k1", code: packets.ErrTopicNameInvalid, sentinel: core.ErrEmptySegment},
		{topic: "demo/", code: packets.ErrTopicNameInvalid, sentinel: core.ErrEmptySegment},
		{topic: "/demo", code: packets.ErrTopicNameInvalid, sentinel: core.ErrEmptySegment},
		{topic: "", code: packets.ErrTopicNameInvalid, sentinel: core.ErrEmptySegment},
		{topic: "de mo/k", code: packets.ErrTopicNameInvalid, sentinel: core.ErrTopicChars},
		{topic: "demo/+", code: packets.ErrTopicNameInvalid, sentinel: core.ErrWildcardPublish},
		{topic: "$SYS/x", code: packets.ErrNotAuthorized, sentinel: errLocalTopic},
		{topic: "$share/g/demo", code: packets.ErrNotAuthorized, sentinel: errLocalTopic},
	}
	for _, tc := range cases {
		subj, terr := parseTopic(node, tc.topic)
		if tc.sentinel != nil {
			if terr == nil || terr.code != tc.code || !errors.Is(terr, tc.sentinel) {
				t.Errorf("%q: got %v, want code %#x wrapping %v", tc.topic, terr, tc.code.Code, tc.sentinel)
			}
			if terr != nil && !strings.Contains(terr.Error(), "topic \""+clip(tc.topic)+"\"") {
				t.Errorf("%q: reason %q does not name the topic", tc.topic, terr)
			}
			continue
		}
		if terr != nil || subj.Topic != tc.topicKafka || subj.Key != tc.key || subj.HasKey != tc.hasKey {
			t.Errorf("%q: got %+v %v", tc.topic, subj, terr)
			continue
		}
		if back, ok := TopicOf(subj.Name); !ok || back != tc.topic {
			t.Errorf("%q: back to %q %v", tc.topic, back, ok)
		}
	}
}

func TestFilterMapping(t *testing.T) {
	node := testNode(t, "demo")
	ok := []string{"demo/k1", "demo/+", "demo/#", "demo/+/x/#", "demo"}
	for _, f := range ok {
		if got, terr := parseFilter(node, f); terr != nil || got.Name != "/"+f {
			t.Errorf("%q: %+v %v", f, got, terr)
		}
	}
	bad := map[string]packets.Code{
		"#": packets.ErrTopicFilterInvalid, "+/k": packets.ErrTopicFilterInvalid,
		"demo/#/x": packets.ErrTopicFilterInvalid, "demo/a#": packets.ErrTopicFilterInvalid,
		"demo//x": packets.ErrTopicFilterInvalid, "other/+": packets.ErrNotAuthorized,
	}
	for f, code := range bad {
		if _, terr := parseFilter(node, f); terr == nil || terr.code != code {
			t.Errorf("%q: %v, want code %#x", f, terr, code.Code)
		}
	}
}

func TestTopicOfRefusesWhatMQTTCannotCarry(t *testing.T) {
	for _, s := range []string{"/demo/a\x00b", "/demo/" + strings.Repeat("k", maxTopicLen)} {
		if _, ok := TopicOf(s); ok {
			t.Errorf("TopicOf(%.20q…) accepted", s)
		}
	}
	if tp, ok := TopicOf("/demo/" + strings.Repeat("k", maxTopicLen-5)); !ok || len(tp) != maxTopicLen {
		t.Errorf("the longest topic was refused")
	}
}

// mqttMatch is MQTT's own matching rule (MQTT 5, 4.7), written from the
// specification to check that the mapping keeps MQTT's semantics.
func mqttMatch(filter, topic string) bool {
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) {
			return false
		}
		if f != "+" && f != ts[i] {
			return false
		}
	}
	return len(fs) == len(ts)
}

func FuzzTopicMapping(f *testing.F) {
	for _, s := range []string{"demo/k1", "demo", "a/b/c", "/a", "a//b", "a/", "$SYS/x", "demo/+", "#", "ü/x", "a\x00b", "..", "a.b-c_d/ε"} {
		f.Add(s)
	}
	node := testNode(f)
	f.Fuzz(func(t *testing.T, topic string) {
		subj, terr := parseTopic(node, topic)
		if terr != nil {
			if terr.code != packets.ErrTopicNameInvalid && terr.code != packets.ErrNotAuthorized {
				t.Fatalf("%q: code %#x", topic, terr.code.Code)
			}
			return
		}
		// Every accepted topic is an MQTT topic name with no empty level
		// and no wildcard, and maps back to itself.
		if strings.ContainsAny(topic, "+#") || strings.HasPrefix(topic, "$") || strings.Contains("/"+topic+"/", "//") {
			t.Fatalf("%q accepted", topic)
		}
		// Its Kafka record comes back to the same subject.
		if name, ok := core.SubjectFor(subj.Topic, subj.KafkaKey()); !ok || name != subj.Name {
			t.Fatalf("%q: the Kafka record of %+v has subject %q", topic, subj, name)
		}
		back, ok := TopicOf(subj.Name)
		if strings.IndexByte(topic, 0) >= 0 || len(topic) > maxTopicLen {
			if ok {
				t.Fatalf("%q: TopicOf accepted what MQTT cannot carry", topic)
			}
			return
		}
		if !ok || back != topic {
			t.Fatalf("%q → %q → %q %v", topic, subj.Name, back, ok)
		}
	})
}

func FuzzFilterMatchesMQTT(f *testing.F) {
	f.Add("demo/+", "demo/k1")
	f.Add("demo/#", "demo")
	f.Add("demo/#", "demo/a/b")
	f.Add("demo/+/x", "demo/a/x")
	f.Add("demo/+", "demo")
	f.Add("demo/k1", "demo/k1")
	node := testNode(f)
	f.Fuzz(func(t *testing.T, filter, topic string) {
		flt, terr := parseFilter(node, filter)
		if terr != nil {
			return
		}
		subj, terr := parseTopic(node, topic)
		if terr != nil || flt.Topic != subj.Topic {
			return
		}
		if got, want := flt.Matches(subj.Key, subj.HasKey), mqttMatch(filter, topic); got != want {
			t.Fatalf("filter %q, topic %q: kedge matches %v, MQTT %v", filter, topic, got, want)
		}
	})
}
