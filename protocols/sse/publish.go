package sse

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kedgehq/kedge/auth"
	"github.com/kedgehq/kedge/core"
)

// Error codes of the HTTP endpoints beyond core.Code's; the same names as
// the WebSocket protocol's where they mean the same.
const (
	codeInvalidJSON      = "invalid_json"
	codeMissingField     = "missing_field"
	codeInvalidField     = "invalid_field"
	codeTooManySubs      = "too_many_subscriptions"
	codePayloadTooLarge  = "payload_too_large"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeOriginNotAllowed = "origin_not_allowed"
	codeRequestTimeout   = "request_timeout"
)

// apiError is a failed request: an HTTP status and a JSON body
// {"code", "message", "subject"}.
type apiError struct {
	status                 int
	code, subject, message string
	retryAfter             time.Duration // for 429 and 503: when to try again (default 1s)
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func apiErrf(code, subject, format string, args ...any) *apiError {
	return &apiError{status: statusOf(code), code: code, subject: subject, message: fmt.Sprintf(format, args...)}
}

// methodNotAllowed is a 405; fail sets the Allow header from its message.
func methodNotAllowed(allow string) *apiError {
	return apiErrf(codeMethodNotAllowed, "", "use %s", allow)
}

// coreError turns a core error into an API error with its stable code.
func coreError(err error, subject string) *apiError {
	code := core.Code(err)
	return &apiError{status: statusOf(code), code: code, subject: subject, message: err.Error()}
}

// statusOf maps an error code to its HTTP status.
func statusOf(code string) int {
	switch code {
	case codeInvalidJSON, codeMissingField, codeInvalidField, codeTooManySubs,
		"invalid_subject", "invalid_pattern", "invalid_position":
		return http.StatusBadRequest
	case "not_exposed", codeOriginNotAllowed, "forbidden":
		return http.StatusForbidden
	case "unauthorized", "token_expired":
		return http.StatusUnauthorized
	case codeNotFound:
		return http.StatusNotFound
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case codePayloadTooLarge:
		return http.StatusRequestEntityTooLarge
	case codeRequestTimeout:
		return http.StatusRequestTimeout
	case "too_many_connections", "rate_limited":
		return http.StatusTooManyRequests
	case "kafka_unavailable", "kafka_busy", "shutting_down", "auth_unavailable", "server_full":
		return http.StatusServiceUnavailable
	case "kafka_timeout":
		return http.StatusGatewayTimeout
	case "kafka_rejected":
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// fail writes an error response.
func (s *Server) fail(w http.ResponseWriter, e *apiError) {
	s.stats.errors.Add(1)
	if e.code == codeMethodNotAllowed {
		w.Header().Set("Allow", strings.TrimPrefix(e.message, "use "))
	}
	if e.status == http.StatusServiceUnavailable || e.status == http.StatusTooManyRequests {
		secs := max(1, int64((e.retryAfter+time.Second-1)/time.Second))
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	b := []byte(`{"code":`)
	b = appendString(b, e.code)
	if e.subject != "" {
		b = append(b, `,"subject":`...)
		b = appendString(b, validUTF8(e.subject))
	}
	b = append(b, `,"message":`...)
	b = appendString(b, validUTF8(e.message))
	b = append(b, "}\n"...)
	writeJSON(w, e.status, b)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// allowOrigin applies the CORS policy (Config.Origins). A request without
// Origin, or from the server's own origin, is always allowed. A preflight
// (OPTIONS) is answered here; false means the request has been answered.
func (s *Server) allowOrigin(w http.ResponseWriter, r *http.Request, methods string, proto auth.Protocol) bool {
	origin := r.Header.Get("Origin")
	if !s.cfg.Origins.Allowed(origin, r.Host) {
		s.node.Limited(core.LimitOrigin, proto)
		s.fail(w, apiErrf(codeOriginNotAllowed, "", "origin %q is not in http.cors.allowed.origins", origin))
		return false
	}
	h := w.Header()
	if origin != "" {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
	}
	if r.Method != http.MethodOptions {
		return true
	}
	h.Set("Access-Control-Allow-Methods", methods+", OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Last-Event-ID")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
	return false
}

// publishRequest is the body of POST /v1/publish.
type publishRequest struct {
	Subject    string            `json:"subject"`
	Payload    *string           `json:"payload"`
	PayloadB64 *string           `json:"payload_b64"`
	Headers    map[string]string `json:"headers"`
}

// decodePublish parses a publish body: one JSON object with a subject and
// exactly one of payload and payload_b64. maxPayload bounds the decoded
// payload.
func decodePublish(body []byte, maxPayload int) (string, []byte, []core.Header, *apiError) {
	if !utf8.Valid(body) {
		return "", nil, nil, apiErrf(codeInvalidJSON, "", "the body is not valid UTF-8")
	}
	var r publishRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&r); err != nil {
		return "", nil, nil, apiErrf(codeInvalidJSON, "", "the body is not a JSON publish object: %v", err)
	}
	if rest := bytes.TrimSpace(body[dec.InputOffset():]); len(rest) > 0 {
		return "", nil, nil, apiErrf(codeInvalidJSON, "", "one JSON object per request; found more after it")
	}
	if r.Subject == "" {
		return "", nil, nil, apiErrf(codeMissingField, "", `"subject" is required`)
	}
	var payload []byte
	switch {
	case r.Payload != nil && r.PayloadB64 != nil:
		return "", nil, nil, apiErrf(codeInvalidField, r.Subject, `give "payload" or "payload_b64", not both`)
	case r.Payload != nil:
		payload = []byte(*r.Payload)
	case r.PayloadB64 != nil:
		p, err := base64.StdEncoding.DecodeString(*r.PayloadB64)
		if err != nil {
			return "", nil, nil, apiErrf(codeInvalidField, r.Subject, `"payload_b64" is not standard base64: %v`, err)
		}
		payload = p
	default:
		return "", nil, nil, apiErrf(codeMissingField, r.Subject, `"payload" or "payload_b64" is required`)
	}
	if len(payload) > maxPayload {
		return "", nil, nil, apiErrf(codePayloadTooLarge, r.Subject, "payload is %d bytes; the limit is %d", len(payload), maxPayload)
	}
	var hs []core.Header
	for _, k := range slices.Sorted(maps.Keys(r.Headers)) {
		hs = append(hs, core.Header{Key: k, Value: []byte(r.Headers[k])})
	}
	return r.Subject, payload, hs, nil
}

// Publish serves POST /v1/publish: the message goes to Kafka, and the reply
// (200 with its position) is sent only after Kafka acknowledged it.
func (s *Server) Publish(w http.ResponseWriter, r *http.Request) {
	if !s.allowOrigin(w, r, "POST", auth.ProtocolHTTP) {
		return
	}
	if r.Method != http.MethodPost {
		s.fail(w, methodNotAllowed("POST"))
		return
	}
	release, err := s.node.Admit(auth.ProtocolHTTP, r.RemoteAddr)
	if err != nil {
		s.fail(w, coreError(err, ""))
		return
	}
	defer release()
	sess := s.authenticate(w, r, auth.ProtocolHTTP)
	if sess == nil {
		return
	}
	body, aerr := s.readBody(w, r)
	if aerr != nil {
		s.fail(w, aerr)
		return
	}
	subject, payload, headers, aerr := decodePublish(body, s.cfg.MaxPayload)
	if aerr != nil {
		if aerr.code == codePayloadTooLarge {
			s.node.Limited(core.LimitPayload, auth.ProtocolHTTP)
		}
		s.stats.publishErrors.Add(1)
		s.fail(w, aerr)
		return
	}
	if aerr := s.authorize(r.Context(), sess, auth.Publish, subject); aerr != nil {
		s.fail(w, aerr)
		return
	}
	if wait, err := s.node.Limits.AllowPublish(auth.ProtocolHTTP, r.RemoteAddr); err != nil {
		e := coreError(err, subject)
		e.retryAfter = wait
		s.fail(w, e)
		return
	}
	if s.isDraining() {
		s.fail(w, coreError(core.ErrShuttingDown, subject))
		return
	}
	// The client going away does not withdraw the message: Kafka decides.
	pos, err := s.node.Publish(context.WithoutCancel(r.Context()), subject, payload, headers)
	if err != nil {
		s.stats.publishErrors.Add(1)
		s.fail(w, coreError(err, subject))
		return
	}
	s.stats.published.Add(1)
	sess.Published(subject)
	b := []byte(`{"subject":`)
	b = appendString(b, subject)
	b = append(b, `,"position":"`...)
	b = pos.AppendTo(b)
	b = append(b, "\"}\n"...)
	writeJSON(w, http.StatusOK, b)
}

// readBody reads a publish body within Config.BodyTimeout and the size
// bound: 413 payload_too_large past it, 408 request_timeout for a client
// that sends it too slowly.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.bodyLimit()))
	if err == nil {
		return body, nil
	}
	var tooBig *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooBig):
		s.node.Limited(core.LimitPayload, auth.ProtocolHTTP)
		return nil, apiErrf(codePayloadTooLarge, "", "the body exceeds %d bytes", tooBig.Limit)
	case errors.As(err, &ne) && ne.Timeout():
		s.node.Limited(core.LimitHandshake, auth.ProtocolHTTP)
		return nil, apiErrf(codeRequestTimeout, "", "the body did not arrive within %v (http.handshake.timeout)", s.cfg.BodyTimeout)
	}
	return nil, apiErrf(codeInvalidJSON, "", "reading the body: %v", err)
}

// Snapshot serves GET /v1/snapshot?subject=…: the subject's latest cached
// message, or 404.
func (s *Server) Snapshot(w http.ResponseWriter, r *http.Request) {
	if !s.allowOrigin(w, r, "GET", auth.ProtocolHTTP) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.fail(w, methodNotAllowed("GET"))
		return
	}
	sess := s.authenticate(w, r, auth.ProtocolHTTP)
	if sess == nil {
		return
	}
	q := r.URL.Query()
	subject := q.Get("subject")
	if subject == "" || len(q["subject"]) > 1 {
		s.fail(w, apiErrf(codeMissingField, "", `give exactly one "subject" query parameter`))
		return
	}
	subj, err := s.node.ParseSubject(subject)
	if err != nil {
		s.fail(w, coreError(err, subject))
		return
	}
	if aerr := s.authorize(r.Context(), sess, auth.Subscribe, subj.Name); aerr != nil {
		s.fail(w, aerr)
		return
	}
	s.node.Prepare(r.Context(), subj.Topic)
	s.stats.snapshots.Add(1)
	m := s.node.Hub.Latest(subj.Name)
	if m == nil {
		s.fail(w, apiErrf(codeNotFound, subject, "no recent message of %s is cached on this node", subject))
		return
	}
	writeJSON(w, http.StatusOK, append(appendMessageJSON(nil, m, true), '\n'))
}
