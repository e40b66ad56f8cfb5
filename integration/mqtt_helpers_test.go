package integration

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
)

// mqttMsg is one message an MQTT test client received.
type mqttMsg struct {
	topic    string
	payload  string
	qos      byte
	retained bool
	user     map[string]string // MQTT 5 user properties
	ctype    string            // MQTT 5 content type
}

// mqtt3 is a paho.mqtt.golang (MQTT 3.1.1) client whose messages, from
// every subscription and from the session, go to msgs.
type mqtt3 struct {
	t    testing.TB
	c    paho3.Client
	msgs chan mqttMsg
	lost chan error
	// present is CONNACK's session present flag.
	present bool
}

func dialMQTT3(t testing.TB, broker, id string, clean bool) *mqtt3 {
	t.Helper()
	m := &mqtt3{t: t, msgs: make(chan mqttMsg, 100000), lost: make(chan error, 1)}
	handler := func(_ paho3.Client, msg paho3.Message) {
		m.msgs <- mqttMsg{topic: msg.Topic(), payload: string(msg.Payload()), qos: msg.Qos(), retained: msg.Retained()}
	}
	opts := paho3.NewClientOptions().AddBroker(broker).SetClientID(id).SetCleanSession(clean).
		SetAutoReconnect(false).SetOrderMatters(true).SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(handler).SetMessageChannelDepth(100000).
		SetConnectionLostHandler(func(_ paho3.Client, err error) { m.lost <- err })
	m.c = paho3.NewClient(opts)
	tok := m.c.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("MQTT connect to %s: %v", broker, tok.Error())
	}
	m.present = tok.(*paho3.ConnectToken).SessionPresent()
	t.Cleanup(func() { m.c.Disconnect(0) })
	return m
}

func (m *mqtt3) subscribe(filter string, qos byte) {
	m.t.Helper()
	tok := m.c.Subscribe(filter, qos, nil) // messages go to the default handler
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		m.t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	if st := tok.(*paho3.SubscribeToken); st.Result()[filter] >= 0x80 {
		m.t.Fatalf("subscribe %s refused: %#x", filter, st.Result()[filter])
	}
}

func (m *mqtt3) publish(topic string, qos byte, payload string) {
	m.t.Helper()
	tok := m.c.Publish(topic, qos, false, payload)
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		m.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// next returns the next message, failing after d.
func (m *mqtt3) next(d time.Duration) mqttMsg {
	m.t.Helper()
	return nextMsg(m.t, m.msgs, d)
}

func (m *mqtt3) expect(topic, payload string) mqttMsg {
	m.t.Helper()
	msg := m.next(10 * time.Second)
	if msg.topic != topic || msg.payload != payload {
		m.t.Fatalf("got %s %q, want %s %q", msg.topic, msg.payload, topic, payload)
	}
	return msg
}

func (m *mqtt3) quiet(d time.Duration) {
	m.t.Helper()
	quietMsgs(m.t, m.msgs, d)
}

func nextMsg(t testing.TB, ch chan mqttMsg, d time.Duration) mqttMsg {
	t.Helper()
	select {
	case msg := <-ch:
		return msg
	case <-time.After(d):
		t.Fatalf("no MQTT message within %v", d)
	}
	return mqttMsg{}
}

func quietMsgs(t testing.TB, ch chan mqttMsg, d time.Duration) {
	t.Helper()
	select {
	case msg := <-ch:
		t.Fatalf("unexpected MQTT message %+v", msg)
	case <-time.After(d):
	}
}

// mqtt5 is a paho.golang (MQTT 5) client.
type mqtt5 struct {
	t            testing.TB
	c            *paho.Client
	msgs         chan mqttMsg
	disconnected chan *paho.Disconnect
	connack      *paho.Connack
}

func dialMQTT5(t testing.TB, addr, id string, cp *paho.Connect) *mqtt5 {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	m := &mqtt5{t: t, msgs: make(chan mqttMsg, 100000), disconnected: make(chan *paho.Disconnect, 1)}
	m.c = paho.NewClient(paho.ClientConfig{
		ClientID: id, Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			msg := mqttMsg{topic: p.Topic, payload: string(p.Payload), qos: p.QoS, retained: p.Retain, user: map[string]string{}}
			if p.Properties != nil {
				msg.ctype = p.Properties.ContentType
				for _, u := range p.Properties.User {
					msg.user[u.Key] = u.Value
				}
			}
			m.msgs <- msg
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { m.disconnected <- d },
	})
	if cp == nil {
		cp = &paho.Connect{CleanStart: true}
	}
	cp.ClientID, cp.KeepAlive = id, 30
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m.connack, err = m.c.Connect(ctx, cp)
	if err != nil {
		_ = nc.Close()
		t.Fatalf("MQTT 5 connect: %v", err)
	}
	t.Cleanup(func() {
		_ = m.c.Disconnect(&paho.Disconnect{})
		select {
		case <-m.c.Done():
		case <-time.After(5 * time.Second):
		}
	})
	return m
}

func (m *mqtt5) subscribe(filter string, qos byte) *paho.Suback {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := m.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil && ack == nil {
		m.t.Fatalf("subscribe %s: %v", filter, err)
	}
	return ack
}

func (m *mqtt5) publish(topic string, qos byte, payload string, props *paho.PublishProperties) (*paho.PublishResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return m.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload), Properties: props})
}

func (m *mqtt5) expect(topic, payload string) mqttMsg {
	m.t.Helper()
	msg := nextMsg(m.t, m.msgs, 10*time.Second)
	if msg.topic != topic || msg.payload != payload {
		m.t.Fatalf("got %s %q, want %s %q", msg.topic, msg.payload, topic, payload)
	}
	return msg
}

// mqttURL is the node's MQTT over TCP URL for paho.mqtt.golang.
func (n *node) mqttURL() string { return "tcp://" + n.MQTT }

// mqttWSURL is the node's MQTT over WebSocket URL.
func (n *node) mqttWSURL() string { return "ws://" + n.HTTP + "/mqtt" }
