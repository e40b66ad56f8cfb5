// Package console is kedge's web console, served at "/": a page that
// connects over Server-Sent Events or WebSocket, subscribes to subjects and
// patterns, shows messages as they arrive with their position and time, and
// publishes. It is plain HTML, JavaScript and CSS embedded in the binary,
// loading nothing from elsewhere, so it works offline. Its WebSocket mode
// uses the TypeScript client @kedge/client (static/kedge-client.js, built
// from protocols/ws/js by `make build` and committed, so `go build` alone
// works too).
package console

import (
	"bytes"
	"embed"
	"html"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// Handler serves the console. wsPath is the WebSocket endpoint's path
// (ws.path), written into the page.
func Handler(wsPath string) http.Handler {
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	index, err := fs.ReadFile(files, "index.html")
	if err != nil {
		panic(err)
	}
	index = bytes.ReplaceAll(index, []byte("{{WS_PATH}}"), []byte(html.EscapeString(wsPath)))
	assets := http.FileServerFS(files)
	started := time.Now()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path == "/" || r.URL.Path == "/index.html" {
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeContent(w, r, "index.html", started, bytes.NewReader(index))
			return
		}
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		assets.ServeHTTP(w, r)
	})
}
