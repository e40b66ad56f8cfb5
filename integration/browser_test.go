package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// artifactsDir is where tests leave files for people to look at (the
// repository's artifacts/, ignored by git).
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rowWith is a JavaScript expression: the console shows a message row of
// subject with payload, and a position and time.
func rowWith(subject, payload string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#messages tr")].some(tr =>
		tr.dataset.subject === %s && tr.dataset.payload === %s &&
		tr.querySelector(".position").textContent !== "" && tr.querySelector(".time").textContent !== "")`,
		jsString(subject), jsString(payload))
}

// The web console in headless Chromium: it subscribes over EventSource, a
// record produced to Kafka appears on the page, and a message published
// from the page arrives in Kafka; then the same over WebSocket. A
// screenshot is saved in artifacts/.
func TestBrowserConsole(t *testing.T) {
	n := startKedge(t)
	producer := kafkaClient(t, n.Kafka)
	produce(t, producer, &kgo.Record{Topic: "demo", Key: []byte("setup"), Value: []byte("topic created")})
	waitCached(t, n, "/demo/setup")
	nonce := fmt.Sprint(time.Now().UnixNano())

	b := startBrowser(t)
	b.navigate("http://" + n.HTTP + "/")
	if title := b.evalString("document.title"); title != "kedge console" {
		t.Fatalf("page title %q", title)
	}
	b.eval(`document.getElementById("subjects").value = "/demo/#"; document.getElementById("transport").value = "sse";
		document.getElementById("connect").click(); true`)
	b.waitTrue(20*time.Second, "the EventSource stream", `document.getElementById("status").dataset.state === "open"`)
	b.waitTrue(10*time.Second, "the snapshot row", `document.querySelector("#messages tr.snapshot") !== null`)

	// Kafka → page
	fromKafka := "from kafka " + nonce
	produce(t, producer, &kgo.Record{Topic: "demo", Key: []byte("browser"), Value: []byte(fromKafka)})
	b.waitTrue(20*time.Second, "the Kafka record on the page", rowWith("/demo/browser", fromKafka))

	// page → Kafka
	fromPage := "from the page " + nonce
	b.eval(fmt.Sprintf(`document.getElementById("pub-subject").value = "/demo/page";
		document.getElementById("pub-payload").value = %s;
		document.getElementById("pub-headers").value = "via=console";
		document.getElementById("publish").click(); true`, jsString(fromPage)))
	b.waitTrue(20*time.Second, "the publish ack", `document.getElementById("pub-result").dataset.status === "ok"`)
	if res := b.evalString(`document.getElementById("pub-result").textContent`); !strings.Contains(res, "acknowledged by Kafka at ") {
		t.Fatalf("publish result %q", res)
	}
	found := false
	for _, r := range consumeAll(t, n.Kafka, "demo", 3) {
		if string(r.Value) == fromPage {
			found = string(r.Key) == "page" && len(r.Headers) == 1 && r.Headers[0].Key == "via" && string(r.Headers[0].Value) == "console"
			if !found {
				t.Fatalf("the page's record in Kafka: key %q headers %v", r.Key, r.Headers)
			}
		}
	}
	if !found {
		t.Fatalf("the message published from the page is not in Kafka")
	}
	b.waitTrue(20*time.Second, "the page's own message back over SSE", rowWith("/demo/page", fromPage))
	b.screenshot(filepath.Join(artifactsDir(t), "browser-console-sse.png"))

	// The same over WebSocket.
	b.eval(`document.getElementById("transport").value = "ws"; document.getElementById("connect").disabled = false;
		document.getElementById("connect").click(); true`)
	b.waitTrue(20*time.Second, "the WebSocket subscription", `document.getElementById("status").textContent.startsWith("WebSocket:")`)
	overWS := "over websocket " + nonce
	produce(t, producer, &kgo.Record{Topic: "demo", Key: []byte("ws"), Value: []byte(overWS)})
	b.waitTrue(20*time.Second, "the Kafka record over WebSocket", rowWith("/demo/ws", overWS))
	// The WebSocket mode is @kedge/client's (the bundle built from protocols/ws/js).
	if v := b.evalString(`typeof kedge === "object" && typeof kedge.connect === "function" ? "client" : "none"`); v != "client" {
		t.Fatalf("the console has no @kedge/client: %s", v)
	}
	// page → Kafka over WebSocket: acknowledged only after Kafka's ack.
	wsPub := "published over websocket " + nonce
	b.eval(`document.getElementById("pub-result").dataset.status = ""; true`)
	b.eval(fmt.Sprintf(`document.getElementById("pub-subject").value = "/demo/wspage";
		document.getElementById("pub-payload").value = %s;
		document.getElementById("publish").click(); true`, jsString(wsPub)))
	b.waitTrue(20*time.Second, "the WebSocket publish ack", `document.getElementById("pub-result").dataset.status === "ok"`)
	if via := b.evalString(`document.getElementById("pub-via").textContent`); !strings.Contains(via, "WebSocket") {
		t.Fatalf("publish went %q, want via the WebSocket", via)
	}
	b.waitTrue(20*time.Second, "the WebSocket publish back on the page", rowWith("/demo/wspage", wsPub))
	if findRecord(consumeAll(t, n.Kafka, "demo", 5), "demo", wsPub) == nil {
		t.Fatal("the message published over WebSocket from the page is not in Kafka")
	}
	b.screenshot(filepath.Join(artifactsDir(t), "browser-console.png"))
	t.Logf("screenshots in %s", artifactsDir(t))

	if errs := b.pageErrors(); len(errs) > 0 {
		t.Fatalf("the page reported errors: %v", errs)
	}
}
