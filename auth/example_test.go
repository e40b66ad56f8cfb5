package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/kedgehq/kedge/auth"
)

// deviceKeys is a custom Authenticator: devices present an API key in the
// X-Api-Key header (or, over MQTT, as the password), looked up in the
// device registry.
type deviceKeys struct {
	registry map[string]string // API key → device name
}

func (d *deviceKeys) Authenticate(_ context.Context, c *auth.Credentials) (*auth.Identity, error) {
	key := c.Header.Get("X-Api-Key")
	if c.Protocol == auth.ProtocolMQTT {
		key = c.Password
	}
	device, ok := d.registry[key]
	if !ok {
		// Wrap ErrUnauthenticated, so that every protocol refuses alike.
		return nil, fmt.Errorf("%w: unknown API key", auth.ErrUnauthenticated)
	}
	return &auth.Identity{Name: device}, nil
}

// ownSubjects is a custom Authorizer: a device may publish only under
// /devices/<name>/ and subscribe only to its own commands.
type ownSubjects struct{}

func (ownSubjects) Authorize(_ context.Context, id *auth.Identity, action auth.Action, subject string) error {
	var perm string
	switch action {
	case auth.Publish:
		perm = "/devices/" + id.Name + "/#"
	case auth.Subscribe:
		perm = "/commands/" + id.Name + "/#"
	}
	// Covers is exact for patterns too: "/commands/d1/+" is allowed,
	// "/commands/+/reboot" (every device's) is not.
	if !auth.Covers(perm, subject) {
		return &auth.Error{Kind: auth.ErrForbidden, User: id.Name, Action: action, Subject: subject,
			Reason: "devices may only use their own subjects"}
	}
	return nil
}

// Example_custom shows a custom Authenticator and Authorizer, composed into
// the Auth that kedge's protocol adapters call.
func Example_custom() {
	a := auth.Compose(&deviceKeys{registry: map[string]string{"k-123": "d1"}}, ownSubjects{})
	ctx := context.Background()

	// A WebSocket connection with a header; an MQTT one with a password.
	ws := &auth.Credentials{Protocol: auth.ProtocolWS, Remote: "192.0.2.1:5000",
		Header: http.Header{"X-Api-Key": {"k-123"}}}
	id, err := a.Authenticate(ctx, ws)
	fmt.Println(id.Name, id.Protocol, err)
	_, err = a.Authenticate(ctx, &auth.Credentials{Protocol: auth.ProtocolMQTT, Password: "nope"})
	fmt.Println(err)

	for _, req := range []struct {
		action  auth.Action
		subject string
	}{
		{auth.Publish, "/devices/d1/temperature"},
		{auth.Publish, "/devices/d2/temperature"},
		{auth.Subscribe, "/commands/d1/+"},
		{auth.Subscribe, "/commands/+/reboot"},
	} {
		err := a.Authorize(ctx, id, req.action, req.subject)
		fmt.Printf("%s %s: allowed=%v forbidden=%v\n", req.action, req.subject, err == nil, errors.Is(err, auth.ErrForbidden))
	}
	// Output:
	// d1 ws <nil>
	// unauthenticated: unknown API key
	// publish /devices/d1/temperature: allowed=true forbidden=false
	// publish /devices/d2/temperature: allowed=false forbidden=true
	// subscribe /commands/d1/+: allowed=true forbidden=false
	// subscribe /commands/+/reboot: allowed=false forbidden=true
}

func ExampleCovered() {
	perms := []string{"/vehicles/#", "/alerts/+/fire"}
	for _, pattern := range []string{"/vehicles/+/speed", "/vehicles/#", "/alerts/+/fire", "/alerts/#"} {
		ok, _ := auth.Covered(perms, pattern)
		fmt.Println(pattern, ok)
	}
	// A pattern permission does not cover a broader pattern.
	fmt.Println(auth.Covers("/vehicles/+/speed", "/vehicles/#"))
	// Output:
	// /vehicles/+/speed true
	// /vehicles/# true
	// /alerts/+/fire true
	// /alerts/# false
	// false
}

func ExampleNew() {
	a, err := auth.New(auth.Config{
		Mode: []string{"static"},
		Static: auth.StaticConfig{Tokens: []auth.StaticToken{{
			Name: "dashboard", Token: "change-me-to-something-long",
			Subscribe: []string{"/vehicles/#"},
		}}},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(a)
	ctx := context.Background()
	id, err := a.Authenticate(ctx, &auth.Credentials{Protocol: auth.ProtocolSSE, Token: "change-me-to-something-long"})
	fmt.Println(id.Name, err)
	fmt.Println(a.Authorize(ctx, id, auth.Subscribe, "/vehicles/+/speed"))
	err = a.Authorize(ctx, id, auth.Publish, "/vehicles/1/speed")
	fmt.Println(strings.ReplaceAll(err.Error(), `"`, "'"))
	// Output:
	// authentication static, authorization permissions
	// dashboard <nil>
	// <nil>
	// forbidden: 'dashboard' may not publish on '/vehicles/1/speed': no publish permission grants it
}
