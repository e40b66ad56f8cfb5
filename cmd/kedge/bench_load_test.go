package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestPayloadStamp(t *testing.T) {
	now := time.Unix(1_790_000_000, 123456789)
	for _, size := range []int{minPayload, 64, 1000} {
		p := appendPayload([]byte("prefix"), size, now)
		if got := len(p) - len("prefix"); got != size {
			t.Errorf("size %d: payload of %d bytes", size, got)
		}
		envelope := append([]byte(`{"op":"message","payload":"`), p...)
		if got := stampOf(envelope); got != now.UnixNano() {
			t.Errorf("size %d: stamp %d, want %d", size, got, now.UnixNano())
		}
	}
	for _, bad := range []string{"", "@@12", "@@12345678901234567x9|", "no mark at all, long enough to hold one"} {
		if got := stampOf([]byte(bad)); got != 0 {
			t.Errorf("stampOf(%q) = %d, want 0", bad, got)
		}
	}
}

// serverFrame builds an unmasked server frame, as kedge and nats-server send.
func serverFrame(op byte, p []byte) []byte {
	b := []byte{0x80 | op}
	switch n := len(p); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xFFFF:
		b = binary.BigEndian.AppendUint16(append(b, 126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 127), uint64(n))
	}
	return append(b, p...)
}

func TestFrameReader(t *testing.T) {
	payloads := [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 200), bytes.Repeat([]byte("c"), 70000), nil}
	var stream []byte
	for _, p := range payloads {
		stream = append(stream, serverFrame(wsText, p)...)
	}
	// Byte by byte, the handshake's leftover first, and a buffer smaller
	// than a frame: every refill path.
	fr := newFrameReader(iotest.OneByteReader(bytes.NewReader(stream[3:])), stream[:3], 16)
	for i, want := range payloads {
		op, got, err := fr.next()
		if err != nil || op != wsText || !bytes.Equal(got, want) {
			t.Fatalf("frame %d: op %d, %d bytes, err %v; want %d bytes", i, op, len(got), err, len(want))
		}
	}
	if _, _, err := fr.next(); err == nil {
		t.Fatal("no error at the end of the stream")
	}
}

func TestClientFrameIsMasked(t *testing.T) {
	p := []byte(`{"op":"subscribe"}`)
	f := appendClientFrame(nil, wsText, p)
	if f[0] != 0x81 || f[1] != 0x80|byte(len(p)) {
		t.Fatalf("header % x", f[:2])
	}
	key, body := f[2:6], append([]byte(nil), f[6:]...)
	for i := range body {
		body[i] ^= key[i&3]
	}
	if !bytes.Equal(body, p) {
		t.Fatalf("unmasked %q", body)
	}
	long := appendClientFrame(nil, wsBinary, make([]byte, 300))
	if long[1] != 0x80|126 || binary.BigEndian.Uint16(long[2:]) != 300 || len(long) != 4+4+300 {
		t.Fatalf("300-byte frame header % x, length %d", long[:4], len(long))
	}
}

func TestPacketReader(t *testing.T) {
	var stream []byte
	stream = appendMQTTPublish(stream, "bench/s0", []byte("hello"), 0, 0)
	big := bytes.Repeat([]byte("x"), 20000) // a two-byte remaining length
	stream = appendMQTTPublish(stream, "bench/s1", big, 1, 7)
	stream = append(stream, mqttPingresp<<4, 0)
	pr := newPacketReader(iotest.HalfReader(bytes.NewReader(stream)), 64)
	first, body, err := pr.next()
	if err != nil || first>>4 != mqttPublish || !bytes.HasSuffix(body, []byte("hello")) || !bytes.Contains(body, []byte("bench/s0")) {
		t.Fatalf("first packet %x %q %v", first, body, err)
	}
	first, body, err = pr.next()
	if err != nil || first != mqttPublish<<4|2 || binary.BigEndian.Uint16(body[2+len("bench/s1"):]) != 7 || !bytes.HasSuffix(body, big) {
		t.Fatalf("second packet %x, %d bytes, %v", first, len(body), err)
	}
	if first, body, err = pr.next(); err != nil || first>>4 != mqttPingresp || len(body) != 0 {
		t.Fatalf("third packet %x %q %v", first, body, err)
	}
}

func TestMQTTPackets(t *testing.T) {
	c := mqttConnectPacket("id", 30)
	want := []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 2, 'i', 'd'}
	if !bytes.Equal(c, want) {
		t.Errorf("CONNECT % x, want % x", c, want)
	}
	s := mqttSubscribePacket(1, "a/b", 0)
	want = []byte{0x82, 8, 0, 1, 0, 3, 'a', '/', 'b', 0}
	if !bytes.Equal(s, want) {
		t.Errorf("SUBSCRIBE % x, want % x", s, want)
	}
}

func TestNATSParser(t *testing.T) {
	stream := "INFO {}\r\nMSG bench.s0 1 5\r\nhello\r\nPING\r\nMSG bench.s1 1 reply.to 3\r\nabc\r\n+OK\r\nMSG x 1 0\r\n\r\n"
	var got []string
	pings := 0
	// Split at every point: messages must come out whole whatever the
	// WebSocket frames cut.
	for cut := 0; cut <= len(stream); cut++ {
		got, pings = got[:0], 0
		var np natsParser
		for _, part := range []string{stream[:cut], stream[cut:]} {
			err := np.feed([]byte(part), func(p []byte) { got = append(got, string(p)) }, func() { pings++ })
			if err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
		}
		if strings.Join(got, ",") != "hello,abc," || pings != 1 {
			t.Fatalf("cut %d: messages %q, pings %d", cut, got, pings)
		}
	}
	var np natsParser
	if err := np.feed([]byte("-ERR 'Slow Consumer'\r\n"), func([]byte) {}, func() {}); err == nil {
		t.Fatal("no error for -ERR")
	}
}

func TestLatencyHist(t *testing.T) {
	var h latencyHist
	for i := 1; i <= 1000; i++ {
		h.record(int64(i) * int64(time.Millisecond) / 10) // 0.1ms .. 100ms
	}
	h.record(-5) // clocks a hair apart
	check := func(q float64, want time.Duration) {
		t.Helper()
		got := h.quantile(q)
		if d := float64(got-want) / float64(want); d < -0.04 || d > 0.04 {
			t.Errorf("quantile %v = %v, want %v ±4%%", q, got, want)
		}
	}
	check(0.5, 50*time.Millisecond)
	check(0.99, 99*time.Millisecond)
	round := histFromSparse(h.sparse())
	if round.n != h.n || round.quantile(0.9) != h.quantile(0.9) {
		t.Errorf("sparse round trip: n %d/%d", round.n, h.n)
	}
	for i := range histBuckets - 1 {
		if histIndex(histLow(i)) != i || histLow(i+1) <= histLow(i) {
			t.Fatalf("bucket %d: low %d maps to %d", i, histLow(i), histIndex(histLow(i)))
		}
	}
}

func TestReadProc(t *testing.T) {
	st, err := readProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.RSS <= 0 || st.CPU < 0 {
		t.Fatalf("%+v", st)
	}
}

func TestHuman(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := human(v); got != want {
			t.Errorf("human(%v) = %q, want %q", v, got, want)
		}
	}
}
