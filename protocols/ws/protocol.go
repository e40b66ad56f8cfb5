package ws

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/kedgehq/kedge/core"
)

// Error codes specific to the WebSocket protocol; the others come from core.Code.
const (
	codeInvalidJSON     = "invalid_json"
	codeUnknownOp       = "unknown_op"
	codeMissingField    = "missing_field"
	codeInvalidField    = "invalid_field"
	codeTooManySubs     = "too_many_subscriptions"
	codeBinaryFrame     = "binary_frame"
	codePayloadTooLarge = "payload_too_large"
)

// request is any client frame; which fields count depends on Op.
type request struct {
	Op         string            `json:"op"`
	ID         json.RawMessage   `json:"id"`
	Subjects   []string          `json:"subjects"`
	Subject    string            `json:"subject"`
	Payload    *string           `json:"payload"`
	PayloadB64 *string           `json:"payload_b64"`
	Headers    map[string]string `json:"headers"`
	Mode       string            `json:"mode"`
	Snapshot   *bool             `json:"snapshot"`
	Positions  map[string]string `json:"positions"`
	Token      string            `json:"token"`
}

// protoError is a request that cannot be served; it becomes an error frame.
type protoError struct {
	code, subject, msg string
}

func (e *protoError) Error() string { return e.code + ": " + e.msg }

func errf(code, format string, args ...any) *protoError {
	return &protoError{code: code, msg: fmt.Sprintf(format, args...)}
}

// decodeRequest parses one text frame.
func decodeRequest(data []byte) (*request, *protoError) {
	if !utf8.Valid(data) {
		return nil, errf(codeInvalidJSON, "frame is not valid UTF-8")
	}
	var r request
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&r); err != nil {
		return idOnly(data), errf(codeInvalidJSON, "frame is not a JSON request object: %v", err)
	}
	if rest := bytes.TrimSpace(data[dec.InputOffset():]); len(rest) > 0 {
		return nil, errf(codeInvalidJSON, "one JSON object per frame; found more after it")
	}
	if err := checkID(r.ID); err != nil {
		return &r, err
	}
	if r.Op == "" {
		return &r, errf(codeMissingField, `"op" is required`)
	}
	return &r, nil
}

// idOnly recovers the id of a request whose other fields did not decode
// (a wrong type, say), so that its error frame still carries the id.
func idOnly(data []byte) *request {
	var r struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(data, &r) != nil {
		return nil
	}
	return &request{ID: r.ID}
}

// checkID accepts a number or a string as the request id, echoed verbatim.
func checkID(id json.RawMessage) *protoError {
	if len(id) == 0 || string(id) == "null" {
		return nil
	}
	switch id[0] {
	case '"', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if len(id) <= 64 {
			return nil
		}
	}
	return errf(codeInvalidField, `"id" must be a number or a string of at most 62 characters`)
}

// idOf returns the id to echo; nil when absent or invalid.
func idOf(r *request) []byte {
	if r == nil || checkID(r.ID) != nil || string(r.ID) == "null" {
		return nil
	}
	return r.ID
}

func (r *request) mode() (core.Mode, *protoError) {
	switch r.Mode {
	case "", "guaranteed":
		return core.Guaranteed, nil
	case "standard":
		return core.Standard, nil
	}
	return 0, errf(codeInvalidField, `"mode" must be "guaranteed" or "standard", got %q`, r.Mode)
}

// payload returns the decoded payload of a publish.
func (r *request) payload() ([]byte, *protoError) {
	switch {
	case r.Payload != nil && r.PayloadB64 != nil:
		return nil, errf(codeInvalidField, `give "payload" or "payload_b64", not both`)
	case r.Payload != nil:
		return []byte(*r.Payload), nil
	case r.PayloadB64 != nil:
		p, err := base64.StdEncoding.DecodeString(*r.PayloadB64)
		if err != nil {
			return nil, errf(codeInvalidField, `"payload_b64" is not standard base64: %v`, err)
		}
		return p, nil
	}
	return nil, errf(codeMissingField, `"payload" or "payload_b64" is required`)
}

func (r *request) headers() []core.Header {
	if len(r.Headers) == 0 {
		return nil
	}
	hs := make([]core.Header, 0, len(r.Headers))
	for k, v := range r.Headers {
		hs = append(hs, core.Header{Key: k, Value: []byte(v)})
	}
	return hs
}

// coreError turns a core error into a protocol error with its stable code.
func coreError(err error, subject string) *protoError {
	var pe *protoError
	if errors.As(err, &pe) {
		return pe
	}
	return &protoError{code: core.Code(err), subject: subject, msg: err.Error()}
}
