package ws

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kedgehq/kedge/core"
)

var requestSeeds = []string{
	`{"op":"subscribe","id":1,"subjects":["/demo/k1","/demo/+"],"positions":{"/demo/k1":"1-0-5"}}`,
	`{"op":"subscribe","id":"s1","subjects":["/demo/#"],"mode":"standard","snapshot":false}`,
	`{"op":"unsubscribe","id":2,"subjects":["/demo/+"]}`,
	`{"op":"publish","id":3,"subject":"/demo/k1","payload":"hello","headers":{"h":"v"}}`,
	`{"op":"publish","id":3,"subject":"/demo/k1","payload_b64":"/w=="}`,
	`{"op":"publish","id":3,"subject":"/demo/k1","payload":"x","payload_b64":"eA=="}`,
	`{"op":"publish","id":3,"subject":"/demo/k1","payload_b64":"not base64!"}`,
	`{"op":"ping","id":4}`,
	`{"op":"ping","id":-1.5e300}`,
	`{"op":"ping","id":null}`,
	`{"op":"ping","id":true}`,
	`{"op":"ping","id":{"a":1}}`,
	`{"op":"ping","id":"` + strings.Repeat("x", 70) + `"}`,
	`{"op":"ping"}}`,
	`{"op":"ping"} {"op":"ping"}`,
	`{"op":`,
	`{"op":5}`,
	`{"subjects":"nope"}`,
	`[1,2,3]`,
	`null`,
	`"op"`,
	``,
	"\xff\xfe",
	`{"op":"subscribe","mode":"fast"}`,
	`{"op":"publish","headers":{"k":1}}`,
}

func FuzzDecodeRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, perr := decodeRequest(data)
		if perr == nil {
			if r == nil {
				t.Fatal("no request and no error")
			}
			if r.Op == "" {
				t.Fatal("accepted a request without an op")
			}
		} else {
			switch perr.code {
			case codeInvalidJSON, codeMissingField, codeInvalidField:
			default:
				t.Fatalf("unexpected code %q", perr.code)
			}
			if perr.msg == "" || perr.Error() == "" {
				t.Fatal("error without a message")
			}
		}
		// Whatever id is echoed, every reply built with it is valid JSON
		// carrying that very id.
		id := idOf(r)
		if id != nil && !json.Valid(id) {
			t.Fatalf("echoed id %q is not JSON", id)
		}
		msg := "x"
		if perr != nil {
			msg = perr.msg
		}
		for _, fr := range [][]byte{ackFrame(id, &core.Position{}), errorFrame(id, "c", string(data), msg), pongFrame(id)} {
			_, body, err := readRawFrame(bytes.NewReader(fr))
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]json.RawMessage
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("reply %q is not a JSON object: %v", body, err)
			}
			if id != nil && !bytes.Equal(m["id"], id) {
				t.Fatalf("reply %q does not echo id %q", body, id)
			}
			if _, ok := m["id"]; id == nil && ok {
				t.Fatalf("reply %q has an id though none was valid", body)
			}
		}
		// The accessors never panic on anything decodeRequest returned.
		if r != nil {
			_, _ = r.mode()
			_, _ = r.payload()
			_ = r.headers()
		}
	})
}

func TestDecodeRequest(t *testing.T) {
	cases := []struct {
		in, code, op, id string
	}{
		{`{"op":"ping","id":4}`, "", "ping", "4"},
		{` {"op":"ping","id":"x"} `, "", "ping", `"x"`},
		{`{"op":"ping","id":-1.5e3}`, "", "ping", "-1.5e3"},
		{`{"op":"ping","id":null}`, "", "ping", ""},
		{`{"op":"ping"}`, "", "ping", ""},
		{`{"op":"anything","unknown":[1,{}]}`, "", "anything", ""},
		{`{"op":"ping","id":true}`, codeInvalidField, "", ""},
		{`{"op":"ping","id":[1]}`, codeInvalidField, "", ""},
		{`{"op":"ping","id":"` + strings.Repeat("x", 62) + `"}`, "", "ping", `"` + strings.Repeat("x", 62) + `"`},
		{`{"op":"ping","id":"` + strings.Repeat("x", 63) + `"}`, codeInvalidField, "", ""},
		{`{"id":1}`, codeMissingField, "", "1"},
		{`{"op":`, codeInvalidJSON, "", ""},
		{`[1,2]`, codeInvalidJSON, "", ""},
		{`"ping"`, codeInvalidJSON, "", ""},
		{`{"op":5}`, codeInvalidJSON, "", ""},
		{`{"op":"ping"} {"op":"ping"}`, codeInvalidJSON, "", ""},
		{`{"op":"ping"} x`, codeInvalidJSON, "", ""},
		{"{\"op\":\"\xff\"}", codeInvalidJSON, "", ""},
		{``, codeInvalidJSON, "", ""},
	}
	for _, tc := range cases {
		r, perr := decodeRequest([]byte(tc.in))
		code := ""
		if perr != nil {
			code = perr.code
		}
		if code != tc.code {
			t.Errorf("%s: code %q (%v), want %q", tc.in, code, perr, tc.code)
			continue
		}
		if perr == nil && r.Op != tc.op {
			t.Errorf("%s: op %q, want %q", tc.in, r.Op, tc.op)
		}
		if got := string(idOf(r)); got != tc.id {
			t.Errorf("%s: echoed id %q, want %q", tc.in, got, tc.id)
		}
	}
}

// Regression, fixed: once decodeRequest checks for trailing data with json.Decoder.More, which
// reports false when the next byte is '}' or ']', so a frame with a stray
// closing bracket after the object is accepted as a valid request.
func TestDecodeRequestRejectsTrailingBrackets(t *testing.T) {
	for _, in := range []string{`{"op":"ping","id":1}}`, `{"op":"ping","id":1}]`, `{"op":"ping","id":1} ]]]`} {
		if _, perr := decodeRequest([]byte(in)); perr == nil || perr.code != codeInvalidJSON {
			t.Errorf("%s: got %v, want invalid_json (it is not one JSON object)", in, perr)
		}
	}
}

func TestRequestAccessors(t *testing.T) {
	dec := func(s string) *request {
		t.Helper()
		r, perr := decodeRequest([]byte(s))
		if perr != nil {
			t.Fatalf("%s: %v", s, perr)
		}
		return r
	}
	for _, tc := range []struct {
		in, code string
		want     []byte
	}{
		{`{"op":"publish","payload":"héllo"}`, "", []byte("héllo")},
		{`{"op":"publish","payload":""}`, "", []byte{}},
		{`{"op":"publish","payload_b64":"/wA="}`, "", []byte{0xff, 0}},
		{`{"op":"publish","payload_b64":""}`, "", []byte{}},
		{`{"op":"publish","payload":"a","payload_b64":"YQ=="}`, codeInvalidField, nil},
		{`{"op":"publish","payload_b64":"*"}`, codeInvalidField, nil},
		{`{"op":"publish","payload_b64":"YQ"}`, codeInvalidField, nil}, // unpadded is not standard
		{`{"op":"publish"}`, codeMissingField, nil},
		{`{"op":"publish","payload":null}`, codeMissingField, nil},
	} {
		p, perr := dec(tc.in).payload()
		code := ""
		if perr != nil {
			code = perr.code
		}
		if code != tc.code || (perr == nil && !bytes.Equal(p, tc.want)) {
			t.Errorf("%s: payload %q, %v; want %q, code %q", tc.in, p, perr, tc.want, tc.code)
		}
	}
	for _, tc := range []struct {
		in   string
		mode core.Mode
		ok   bool
	}{
		{`{"op":"subscribe"}`, core.Guaranteed, true},
		{`{"op":"subscribe","mode":"guaranteed"}`, core.Guaranteed, true},
		{`{"op":"subscribe","mode":"standard"}`, core.Standard, true},
		{`{"op":"subscribe","mode":"Standard"}`, 0, false},
	} {
		m, perr := dec(tc.in).mode()
		if (perr == nil) != tc.ok || (tc.ok && m != tc.mode) {
			t.Errorf("%s: mode %v, %v", tc.in, m, perr)
		}
		if perr != nil && perr.code != codeInvalidField {
			t.Errorf("%s: code %q", tc.in, perr.code)
		}
	}
	hs := dec(`{"op":"publish","headers":{"a":"1","b":"é"}}`).headers()
	got := map[string]string{}
	for _, h := range hs {
		got[h.Key] = string(h.Value)
	}
	if len(hs) != 2 || got["a"] != "1" || got["b"] != "é" {
		t.Errorf("headers %v", hs)
	}
	if dec(`{"op":"publish"}`).headers() != nil {
		t.Error("no headers should give nil")
	}
}
