package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/internal/natstest"
)

// TestDryRunExitCodes: 'denied replay --dry-run' exits by what the dry
// run says, the same with --json as without: 0 for a route that lets the
// message through, 3 for a predicted denial, exitUndetermined when the
// gateway does not predict the decision, which the text output says as
// such. A stand-in for the gateway answers the operator subject with
// each result in turn.
func TestDryRunExitCodes(t *testing.T) {
	srv, _ := streams(t)
	nc := natstest.Connect(t, srv)
	answer := make(chan operator.Result, 1)
	sub, err := nc.Subscribe(operator.Subject, func(m *nats.Msg) {
		data, _ := json.Marshal(<-answer)
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	creds := operatorCreds(t)
	args := []string{"denied", "replay", "--server", srv.ClientURL(), "--credential", creds, "--tenant", "tenant_a", "--dry-run", "--timeout", "10s", "7"}
	for _, c := range []struct {
		res  operator.Result
		code int
		text string
	}{
		{operator.Result{DryRun: true, Route: "allow", PolicyIDs: []string{"allow-kb"}}, exitOK, "would be allow by allow-kb"},
		{operator.Result{DryRun: true, Route: "approval"}, exitOK, "would be approval"},
		{operator.Result{DryRun: true, Route: "deny", Reason: "revoked", Detail: "credential revoked"}, exitRejected, "would be deny (revoked: credential revoked)"},
		{operator.Result{DryRun: true, Route: gateway.DryRunNotPredicted, Detail: "the real replay runs the approval gate"}, exitUndetermined,
			"not predicted: the real replay runs the approval gate"},
	} {
		answer <- c.res
		r := agentgw(t, "", args...)
		if r.code != c.code || !strings.Contains(r.stdout, c.text) {
			t.Errorf("dry run answered %+v: %s\nwant exit %d and %q", c.res, r, c.code, c.text)
		}
		answer <- c.res
		r = agentgw(t, "", append(args, "--json")...)
		var got operator.Result
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.Route != c.res.Route {
			t.Errorf("dry run answered %+v, --json printed %q (%v)", c.res, r.stdout, err)
		}
		if r.code != c.code {
			t.Errorf("dry run answered %+v, --json: exit %d; want %d, as without --json", c.res, r.code, c.code)
		}
	}
}

// operatorCreds writes an operator credential of tenant_a with scope
// operator:replay and returns its path.
func operatorCreds(t *testing.T) string {
	t.Helper()
	iss, _ := identity.NewIssuer()
	op, _ := identity.NewAgent()
	cv, _ := identity.NewCurve()
	pub, _ := op.PublicKey()
	x, _ := cv.PublicKey()
	tok, err := identity.Issue(iss, identity.IssueRequest{Subject: pub, Audience: "gw", Tenant: "tenant_a", XKey: x,
		Scopes: []string{operator.Scope}, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := op.Seed()
	p := filepath.Join(t.TempDir(), "operator.creds")
	if err := identity.WriteCreds(p, tok, identity.Seed(seed)); err != nil {
		t.Fatal(err)
	}
	return p
}
