package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPermissionsAuthorize(t *testing.T) {
	clk := newClock()
	p := &Permissions{Now: clk.Now}
	alice := &Identity{Name: "alice",
		Subscribe: []string{"/vehicles/#", "/alerts/+"},
		Publish:   []string{"/vehicles/17/position", "/chat/+"}}
	for _, tc := range []struct {
		action  Action
		subject string
		wantErr error
		msg     string // a part of the error message
	}{
		{Subscribe, "/vehicles/1/speed", nil, ""},
		{Subscribe, "/vehicles/+/speed", nil, ""},
		{Subscribe, "/vehicles/#", nil, ""},
		{Subscribe, "/vehicles", nil, ""},
		{Subscribe, "/alerts/fire", nil, ""},
		{Subscribe, "/alerts/+", nil, ""},
		{Subscribe, "/alerts/#", ErrForbidden, `"alice" may not subscribe to "/alerts/#": no subscribe permission covers every subject it matches`},
		{Subscribe, "/alerts/fire/now", ErrForbidden, `"alice" may not subscribe to "/alerts/fire/now": no subscribe permission grants it`},
		{Subscribe, "/chat/x", ErrForbidden, "no subscribe permission grants it"}, // publish permission only
		{Subscribe, "/a/#/b", ErrForbidden, "'#' must be the last segment"},
		{Publish, "/vehicles/17/position", nil, ""},
		{Publish, "/chat/room1", nil, ""},
		{Publish, "/vehicles/18/position", ErrForbidden, `"alice" may not publish on "/vehicles/18/position": no publish permission grants it`},
		{Publish, "/vehicles/1/speed", ErrForbidden, "no publish permission"}, // subscribe permission only
		{Publish, "/chat/+", ErrForbidden, "not a valid subject to publish on"},
		{Publish, "/chat/#", ErrForbidden, "not a valid subject to publish on"},
		{Publish, "chat", ErrForbidden, "not a valid subject"},
		{Action(0), "/chat/x", ErrForbidden, "unknown action"},
	} {
		err := p.Authorize(t.Context(), alice, tc.action, tc.subject)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("%v %q: err = %v, want %v", tc.action, tc.subject, err, tc.wantErr)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v %q: message %q does not contain %q", tc.action, tc.subject, err, tc.msg)
		}
	}
}

func TestPermissionsIdentityChecks(t *testing.T) {
	clk := newClock()
	p := &Permissions{Now: clk.Now}
	err := p.Authorize(t.Context(), nil, Publish, "/a")
	if !errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrForbidden) {
		t.Fatalf("nil identity: %v", err)
	}
	id := &Identity{Name: "bob", Expires: clk.Now().Add(time.Minute), Publish: []string{"/#"}}
	if err := p.Authorize(t.Context(), id, Publish, "/a"); err != nil {
		t.Fatalf("before expiry: %v", err)
	}
	clk.Add(time.Minute)
	err = p.Authorize(t.Context(), id, Publish, "/a")
	if !errors.Is(err, ErrExpired) || !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("at expiry: %v", err)
	}
	if want := `"bob" may not publish on "/a": identity expired at 2026-11-21T20:01:00Z`; !strings.Contains(err.Error(), want) {
		t.Fatalf("message %q lacks %q", err, want)
	}
	// The zero value works, with the real clock.
	var zero Permissions
	if err := zero.Authorize(t.Context(), &Identity{Publish: []string{"/a"}}, Publish, "/a"); err != nil {
		t.Fatalf("zero Permissions: %v", err)
	}
}

func TestPermissionsPublishDoesNotAllocate(t *testing.T) {
	p := &Permissions{Now: newClock().Now}
	id := &Identity{Name: "x", Publish: []string{"/a/#", "/b/+/c", "/vehicles/+/position"}}
	ctx := context.Background()
	n := testing.AllocsPerRun(100, func() {
		if err := p.Authorize(ctx, id, Publish, "/vehicles/17/position"); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("an allowed publish allocates %v times", n)
	}
}

func TestAllowAll(t *testing.T) {
	a := NewAllowAll("dev")
	id, err := a.Authenticate(t.Context(), &Credentials{})
	if err != nil || id.Name != "dev" {
		t.Fatalf("Authenticate = %+v, %v", id, err)
	}
	for _, action := range []Action{Subscribe, Publish} {
		if err := a.Authorize(t.Context(), nil, action, "/anything/+/#"); err != nil {
			t.Errorf("%v: %v", action, err)
		}
	}
	// Its identity carries the permissions, so any Authorizer agrees.
	if err := (&Permissions{}).Authorize(t.Context(), id, Subscribe, "/x/#"); err != nil {
		t.Errorf("Permissions on an AllowAll identity: %v", err)
	}
	// The zero value, and a nil pointer, refuse everything.
	for _, z := range []*AllowAll{{}, nil} {
		if _, err := z.Authenticate(t.Context(), &Credentials{}); !errors.Is(err, ErrUnauthenticated) ||
			!strings.Contains(err.Error(), "NewAllowAll") {
			t.Errorf("zero AllowAll authenticates: %v", err)
		}
		if err := z.Authorize(t.Context(), id, Publish, "/a"); !errors.Is(err, ErrForbidden) {
			t.Errorf("zero AllowAll authorizes: %v", err)
		}
	}
}

func TestErrorMessages(t *testing.T) {
	long := strings.Repeat("é", 60) // 120 bytes: cut on a rune boundary
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{&Error{Kind: ErrUnauthenticated, Reason: "no token"}, "unauthenticated: may not connect: no token"},
		{&Error{Kind: ErrExpired, User: "bob", Reason: "token expired"},
			`unauthenticated: credentials expired: "bob" may not connect: token expired`},
		{&Error{Kind: ErrForbidden, User: "al", Action: Publish, Subject: "/a", Reason: "r"},
			`forbidden: "al" may not publish on "/a": r`},
		{&Error{Kind: ErrForbidden, Action: Subscribe, Subject: "/a/#"}, `forbidden: may not subscribe to "/a/#"`},
		{&Error{Kind: ErrForbidden, User: "al", Action: Subscribe, Subject: "/a", Reason: "webhook",
			Cause: ErrUnavailable}, `forbidden: "al" may not subscribe to "/a": webhook: auth backend unavailable`},
		{&Error{Kind: ErrForbidden, User: "al", Action: Publish, Subject: "/" + long},
			`forbidden: "al" may not publish on "/` + strings.Repeat("é", 31) + `"…`},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q\n          want %q", got, tc.want)
		}
	}
	e := &Error{Kind: ErrForbidden, Cause: ErrUnavailable}
	if !errors.Is(e, ErrForbidden) || !errors.Is(e, ErrUnavailable) || errors.Is(e, ErrUnauthenticated) {
		t.Error("errors.Is does not see Kind and Cause")
	}
	if !errors.Is(ErrExpired, ErrUnauthenticated) {
		t.Error("ErrExpired does not wrap ErrUnauthenticated")
	}
	if Subscribe.String() != "subscribe" || Publish.String() != "publish" || Action(9).String() != "unknown action" {
		t.Error("Action.String")
	}
}

func BenchmarkAuthorize(b *testing.B) {
	p := &Permissions{Now: newClock().Now}
	id := &Identity{Name: "x",
		Subscribe: []string{"/vehicles/#", "/alerts/+/fire", "/chat/room1", "/chat/room2", "/+/status"},
		Publish:   []string{"/a/#", "/b/+/c", "/vehicles/+/position"}}
	ctx := context.Background()
	for _, bc := range []struct {
		name    string
		action  Action
		subject string
	}{
		{"publish", Publish, "/vehicles/17/position"},
		{"subscribe-subject", Subscribe, "/vehicles/17/speed"},
		{"subscribe-pattern", Subscribe, "/vehicles/+/speed"},
		{"subscribe-pattern-denied", Subscribe, "/chat/+"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Authorize(ctx, id, bc.action, bc.subject)
			}
		})
	}
}
