package oidc_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/exchange"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/gwtest"
)

const e2eCatalog = `
targets:
  - name: kb.search
    kind: read
    scope: kb:read
    tenants: [tenant_a]
    plain: true
  - name: payments.send
    kind: tool_call
    scope: pay:send
    tenants: [tenant_a]
    plain: true
`

const e2ePolicy = `
@id("allow-same-tenant")
permit (principal, action, resource) when { principal.tenant == resource.tenant };
`

func writeSeed(t *testing.T, path string, kp nkeys.KeyPair) {
	t.Helper()
	seed, err := kp.Seed()
	must(t, err)
	must(t, os.WriteFile(path, seed, 0o600))
}

// TestGatewayAcceptsExchangedCredential: a client-credentials token from
// a real OpenID provider, exchanged through the NATS service by the SDK,
// yields a credential that a real gateway (its public API, configured
// as `agentgw serve` would be) accepts end to end: the envelope reaches
// the capability subject. A scope outside the mapping is still denied
// by the gateway. The issuer seed comes from a file, as in production.
func TestGatewayAcceptsExchangedCredential(t *testing.T) {
	h := newHarness(t)
	ctx, dir := startGateway(t, h, e2eCatalog)

	// Hosted as the gateway would: issuer seeds from files, the
	// gateway's trust checked, audit published to agentgw.audit.<tenant>.
	h.cfg.IssuerSeeds = map[string]string{"tenant_a": "issuer_a.nk", "tenant_b": "issuer_b.nk"}
	issuers, err := exchange.LoadIssuers(h.cfg, func(p string) string { return filepath.Join(dir, p) })
	must(t, err)
	if _, err := exchange.New(h.cfg, map[string]nkeys.KeyPair{"tenant_a": h.issuerB, "tenant_b": h.issuerB}, h.box(), exchange.WithTrust(h.trust())); err == nil {
		t.Error("exchange.New accepted an issuer the gateway does not trust for its tenant")
	}
	stop, err := exchange.Start(ctx, h.nc, h.cfg, issuers, h.box(), exchange.WithTrust(h.trust()), exchange.WithClock(h.clock.Now))
	must(t, err)
	t.Cleanup(func() { must(t, stop()) })

	tok := h.token(h.corp, "billing-bot", "s3cret-billing")
	src, err := client.NewCredentialSource(h.nc, h.exchangeCfg(h.agent, tok))
	must(t, err)
	ag, err := client.NewExchangeAgent(h.nc, client.DefaultAgentConfig(), src)
	must(t, err)

	rcpt, err := ag.Send(ctx, client.Request{Capability: envelope.Read, Target: "kb.search", Plain: map[string]any{"q": "refund policy"}})
	must(t, err)
	if m := outputFor(t, h, rcpt.Seq); m.Subject != "agentgw.cap.tenant_a.kb.search" {
		t.Errorf("envelope with exchanged credential went to %s (%s); want agentgw.cap.tenant_a.kb.search", m.Subject, m.Header.Get(header.Reason))
	}
	rcpt, err = ag.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "payments.send", Plain: map[string]any{"amount_cents": 1}})
	must(t, err)
	if m := outputFor(t, h, rcpt.Seq); m.Header.Get(header.Reason) != "missing_scope" {
		t.Errorf("payments.send with an exchanged kb/refund credential: reason %q; want missing_scope", m.Header.Get(header.Reason))
	}

	// The exchange's audit event is in the gateway's audit stream, valid
	// against the schema.
	var found bool
	for _, m := range streamMsgs(t, h, gateway.StreamAudit) {
		evs, _ := audit.Decode(m.Data)
		for _, ev := range evs {
			if ev.Kind == audit.KindCredentialExchange && m.Subject == "agentgw.audit.tenant_a" {
				found = true
				checkEventSchema(t, ev)
			}
		}
	}
	if !found {
		t.Error("no credential_exchange event on agentgw.audit.tenant_a")
	}
}

// startGateway runs a real gateway (its public API, configured as
// `agentgw serve` would be) on the harness connection, trusting the
// harness issuers, with catalog and e2ePolicy; edit, when given, changes
// its config last. It returns the gateway's context and its directory,
// which holds the issuer seed files issuer_a.nk and issuer_b.nk.
func startGateway(t *testing.T, h *harness, catalog string, edit ...func(cfg *gateway.Config, dir string)) (context.Context, string) {
	t.Helper()
	dir := t.TempDir()
	signing, _ := identity.NewGatewayKey()
	h.gwKey, _ = signing.PublicKey()
	writeSeed(t, filepath.Join(dir, "signing.nk"), signing)
	writeSeed(t, filepath.Join(dir, "curve.nk"), h.gwCurve)
	writeSeed(t, filepath.Join(dir, "issuer_a.nk"), h.issuerA)
	writeSeed(t, filepath.Join(dir, "issuer_b.nk"), h.issuerB)
	must(t, os.WriteFile(filepath.Join(dir, "catalog.yaml"), []byte(catalog), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "policy.cedar"), []byte(e2ePolicy), 0o600))

	cfg := gateway.DefaultConfig()
	cfg.Audience = gwAudience
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Catalog = filepath.Join(dir, "catalog.yaml")
	cfg.Policies = []string{filepath.Join(dir, "policy.cedar")}
	cfg.Keys = gateway.KeysConfig{Signing: filepath.Join(dir, "signing.nk"), Curve: filepath.Join(dir, "curve.nk")}
	trust := h.trust()
	cfg.Tenants = map[string]gateway.TenantConfig{"tenant_a": {Issuers: trust["tenant_a"]}, "tenant_b": {Issuers: trust["tenant_b"]}}
	cfg.Consumer.FetchWait = 200 * time.Millisecond
	for _, e := range edit {
		e(&cfg, dir)
	}
	gw, err := gateway.New(cfg, gateway.WithConn(h.nc))
	must(t, err)
	h.gw = gw
	return gwtest.Run(t, gw, "for the exchange"), dir
}

// outputFor waits for the gateway's output for an ingress sequence.
func outputFor(t *testing.T, h *harness, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range []string{gateway.StreamCap, gateway.StreamDenied} {
			for _, m := range streamMsgs(t, h, s) {
				if m.Header.Get(header.IngressSeq) == fmt.Sprint(seq) {
					return m
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no output for ingress sequence %d", seq)
	return nil
}

func streamMsgs(t *testing.T, h *harness, name string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(h.nc)
	must(t, err)
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return nil
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if m, err := s.GetMsg(ctx, seq); err == nil {
			out = append(out, m)
		}
	}
	return out
}
