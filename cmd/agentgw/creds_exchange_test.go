package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/e2e/oidc/testidp"
	"github.com/agentgw/agentgw/internal/natstest"
)

// TestCredsExchange: `agentgw creds exchange` obtains a credential from
// a real exchange service for a real OpenID provider's token, naming the
// public key of --curve-seed as its xkey, which the request proves it
// holds with a proof sealed to --gateway-xkey. A proof sealed to another
// key than the gateway's is refused (exit 3, exchange_proof_invalid),
// and the command needs both flags.
func TestCredsExchange(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	// The audit stream: a grant is answered once its event is stored.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := gateway.EnsureStreams(context.Background(), js, gateway.DefaultConfig().Streams, 1); err != nil {
		t.Fatal(err)
	}
	idp := testidp.Start(t)
	idp.AddClient(testidp.Client{ID: "billing-bot", Secret: "s3cret-billing", Audience: []string{"agentgw-exchange"},
		Claims: map[string]any{"groups": []string{"billing-agents"}}})
	issuer, err := identity.NewIssuer()
	if err != nil {
		t.Fatal(err)
	}
	gwCurve, err := identity.NewCurve()
	if err != nil {
		t.Fatal(err)
	}
	box, err := identity.NewBox(gwCurve)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	stop, err := exchange.Start(context.Background(), nc, exchange.Config{
		Audience: "billing-gateway",
		IdPs: []exchange.IdPConfig{{
			Name: "corp", Issuer: idp.Issuer, Audience: "agentgw-exchange", Tenants: []string{"tenant_a"}, Tenant: "tenant_a",
			Rules: []exchange.Rule{{ID: "billing", Claim: "groups", Contains: "billing-agents", Scopes: []string{"refund:draft"}}},
		}},
	}, map[string]nkeys.KeyPair{"tenant_a": issuer}, box, exchange.WithHTTPClient(&http.Client{Transport: tr}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tok, err := idp.Token(ctx, "billing-bot", "s3cret-billing")
	if err != nil {
		t.Fatal(err)
	}
	k := newCredsKit(t)
	otherGateway := strings.TrimSpace(mustRun(t, k.dir, exitOK, "keys", "new", "--type", "curve", "--out", "other.nk").stdout)
	env := []string{"IDP_TOKEN=" + tok}
	run := func(args ...string) result {
		t.Helper()
		r := agentgwEnv(t, k.dir, env, append([]string{"creds", "exchange", "--server", srv.ClientURL(), "--agent-seed", "agent.nk",
			"--audience", "billing-gateway", "--idp-token-env", "IDP_TOKEN"}, args...)...)
		k.assertNoSecrets(t, "creds exchange", r.stdout+r.stderr)
		return r
	}

	if r := run("--curve-seed", "curve.nk", "--gateway-xkey", box.PublicKey(), "--out", "agent.creds"); r.code != exitOK {
		t.Fatalf("creds exchange: %s", r)
	}
	cred, kp, err := identity.ReadCreds(filepath.Join(k.dir, "agent.creds"))
	if err != nil {
		t.Fatal(err)
	}
	kp.Wipe()
	claims, err := identity.NewVerifier(identity.VerifierConfig{Audience: "billing-gateway", Skew: time.Minute, MaxLifetime: time.Hour,
		Trust: map[string][]string{"tenant_a": {mustPub(t, issuer)}}}, identity.NewRevocations())
	if err != nil {
		t.Fatal(err)
	}
	c, err := claims.Verify(cred.Reveal(), time.Now())
	if err != nil || c.XKey != k.xkey || c.Subject != k.agent {
		t.Fatalf("exchanged credential = %+v, %v; want subject %s and xkey %s (--curve-seed's)", c, err, k.agent, k.xkey)
	}

	if r := run("--curve-seed", "curve.nk", "--gateway-xkey", otherGateway, "--out", "x.creds"); r.code != exitRejected ||
		!strings.Contains(r.stderr, "exchange_proof_invalid") {
		t.Errorf("creds exchange with the proof sealed to another key: %s; want exit %d, exchange_proof_invalid", r, exitRejected)
	}
	for _, args := range [][]string{
		{"--gateway-xkey", box.PublicKey(), "--out", "x.creds"},
		{"--curve-seed", "curve.nk", "--out", "x.creds"},
	} {
		if r := run(args...); r.code != exitUsage {
			t.Errorf("creds exchange %v: %s; want exit %d", args, r, exitUsage)
		}
	}
	if r := run("--curve-seed", "agent.nk", "--gateway-xkey", box.PublicKey(), "--out", "x.creds"); r.code == exitOK {
		t.Errorf("creds exchange with an agent seed as --curve-seed: %s; want refused", r)
	}
}

func mustPub(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
