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
	"net/http"
	"slices"
	"strings"
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
)

// apiError is a failed request: an HTTP status and a JSON body
// {"code", "message", "subject"}.
type apiError struct {
	status                 int
	code, subject, message string
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
	case "kafka_unavailable", "kafka_busy", "shutting_down", "auth_unavailable":
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
	if e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
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

// allowOrigin applies the CORS policy. A request without Origin, or from the
// server's own origin, is always allowed. A preflight (OPTIONS) is answered
// here; false means the request has been answered.
func (s *Server) allowOrigin(w http.ResponseWriter, r *http.Request, methods string) bool {
	origin := r.Header.Get("Origin")
	if origin != "" && !s.originAllowed(origin, r.Host) {
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

func (s *Server) originAllowed(origin, host string) bool {
	if origin == "http://"+host || origin == "https://"+host {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
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
	if !s.allowOrigin(w, r, "POST") {
		return
	}
	if r.Method != http.MethodPost {
		s.fail(w, methodNotAllowed("POST"))
		return
	}
	sess := s.authenticate(w, r, auth.ProtocolHTTP)
	if sess == nil {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.bodyLimit()))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.fail(w, apiErrf(codePayloadTooLarge, "", "the body exceeds %d bytes", tooBig.Limit))
			return
		}
		s.fail(w, apiErrf(codeInvalidJSON, "", "reading the body: %v", err))
		return
	}
	subject, payload, headers, aerr := decodePublish(body, s.cfg.MaxPayload)
	if aerr != nil {
		s.stats.publishErrors.Add(1)
		s.fail(w, aerr)
		return
	}
	if aerr := s.authorize(r.Context(), sess, auth.Publish, subject); aerr != nil {
		s.fail(w, aerr)
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

// Snapshot serves GET /v1/snapshot?subject=…: the subject's latest cached
// message, or 404.
func (s *Server) Snapshot(w http.ResponseWriter, r *http.Request) {
	if !s.allowOrigin(w, r, "GET") {
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
