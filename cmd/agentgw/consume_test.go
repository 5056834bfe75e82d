package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// capabilityMsg is an allowed plain request in the gateway's capability
// output shape, its decision token signed by gw.
func capabilityMsg(t *testing.T, gw *identity.Signer, agent, target, plain string) (*nats.Msg, string) {
	t.Helper()
	now := time.Now()
	body, err := envelope.Builder{
		Tenant: "tenant_a", Audience: "gw", Capability: envelope.Read, Target: target,
		Payload: envelope.Payload{Plain: json.RawMessage(plain)},
	}.Build(now)
	if err != nil {
		t.Fatal(err)
	}
	env, err := envelope.Parse(body, envelope.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := decision.Sign(gw, decision.Claims{
		Subject: agent, Audience: target, IssuedAt: now, Expires: now.Add(5 * time.Minute),
		Tenant: "tenant_a", Scope: "kb:read", TraceID: env.TraceID, MessageID: env.MessageID,
		BodyDigest: decision.Digest(body), PayloadDigest: decision.Digest(env.Payload.Plain),
		PolicyIDs: []string{"base.same_tenant_kind"}, Route: decision.RouteAllow,
	})
	if err != nil {
		t.Fatal(err)
	}
	subj, err := subjects.Capability("tenant_a", target)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(subj)
	if m.Data, err = (delivery.Doc{Decision: tok.Reveal(), Envelope: body}).Append(nil); err != nil {
		t.Fatal(err)
	}
	m.Header.Set(header.Agent, agent)
	m.Header.Set(header.MessageID, env.MessageID)
	m.Header.Set(header.TraceID, env.TraceID)
	return m, env.MessageID
}

func TestConsume(t *testing.T) {
	srv, js := streams(t)
	gw, impostor := testGateway(t), testGateway(t)
	agent, _ := testAgent(t, "tenant_a")

	good, goodID := capabilityMsg(t, gw, agent, "kb.search", `{"query": "refund policy"}`)
	forged, _ := capabilityMsg(t, impostor, agent, "kb.search", `{"query": "exfiltrate"}`)
	other, otherID := capabilityMsg(t, gw, agent, "kb.other", `{"query": "not served"}`)
	for _, m := range []*nats.Msg{good, other, forged} {
		publish(t, js, m)
	}

	r := mustRun(t, "", exitRejected, "consume", "--server", srv.ClientURL(), "--tenant", "tenant_a", "--target", "kb.search",
		"--gateway-key", gw.PublicKey(), "--count", "2", "--json")
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	var rows []map[string]any
	for dec.More() {
		var row map[string]any
		if err := dec.Decode(&row); err != nil {
			t.Fatalf("%v\n%s", err, r)
		}
		rows = append(rows, row)
	}
	if len(rows) != 2 {
		t.Fatalf("consume --count 2: %d rows\n%s", len(rows), r)
	}
	payload, _ := json.Marshal(rows[0]["payload"])
	if rows[0]["status"] != "verified" || rows[0]["message_id"] != goodID || rows[0]["agent"] != agent ||
		rows[0]["target"] != "kb.search" || string(payload) != `{"query":"refund policy"}` {
		t.Errorf("verified row = %v", rows[0])
	}
	if rows[1]["status"] != "rejected" || rows[1]["reason"] != string(reason.DecisionInvalid) || strings.Contains(r.stdout, "exfiltrate") {
		t.Errorf("forged row = %v; want rejected with %s and no payload", rows[1], reason.DecisionInvalid)
	}
	if strings.Contains(r.stdout+r.stderr, "eyJ") {
		t.Errorf("consume printed a token:\n%s", r)
	}

	// Text output, and a usage error that says what is missing.
	r = mustRun(t, "", exitOK, "consume", "--server", srv.ClientURL(), "--tenant", "tenant_a", "--target", "kb.other",
		"--gateway-key", gw.PublicKey(), "--count", "1")
	if r.stdout != fmt.Sprintf("verified  message_id=%s agent=%s target=kb.other trace_id=%s payload={\"query\":\"not served\"}\n",
		otherID, agent, other.Header.Get(header.TraceID)) {
		t.Errorf("consume text output:\n%s", r)
	}
	r = mustRun(t, "", exitUsage, "consume", "--server", srv.ClientURL(), "--tenant", "tenant_a", "--target", "kb.search")
	if !strings.Contains(r.stderr, "trusted gateway key") {
		t.Errorf("missing --gateway-key not explained:\n%s", r)
	}
}

// TestConsumeTimeout: consume says on stderr what it waits on, and
// --timeout ends a wait that got fewer than --count messages with exit 1.
func TestConsumeTimeout(t *testing.T) {
	srv, js := streams(t)
	gw := testGateway(t)
	args := []string{"consume", "--server", srv.ClientURL(), "--tenant", "tenant_a", "--target", "kb.search",
		"--gateway-key", gw.PublicKey(), "--count", "1", "--timeout", "1s"}

	r := mustRun(t, "", exitError, args...)
	for _, want := range []string{
		"waiting for deliveries on an ephemeral consumer of stream AGENTGW_CAP (subjects agentgw.cap.tenant_a.kb.search)",
		"--timeout 1s elapsed with 0 of 1 messages",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("consume on an empty subject: stderr lacks %q\n%s", want, r)
		}
	}
	if r.stdout != "" {
		t.Errorf("consume printed on stdout with nothing delivered:\n%s", r)
	}

	// A delivery in time: the waiting line still goes to stderr only.
	agent, _ := testAgent(t, "tenant_a")
	m, id := capabilityMsg(t, gw, agent, "kb.search", `{"query":"in time"}`)
	publish(t, js, m)
	r = mustRun(t, "", exitOK, append(args, "--json")...)
	if !strings.Contains(r.stdout, id) || strings.Contains(r.stdout, "waiting") || !strings.Contains(r.stderr, "waiting for deliveries") {
		t.Errorf("consume with a delivery in time:\n%s", r)
	}
}

// TestConsumePrintsNoControlCharacters: strict JSON refuses raw bytes
// below 0x20 in strings, not the C1 controls (U+0080 to U+009F; U+009B
// is CSI): consume's text line shows a payload through clean(), as every
// other value read from a stream, so none reaches the terminal.
func TestConsumePrintsNoControlCharacters(t *testing.T) {
	var out bytes.Buffer
	c := &cmd{name: "consume", out: &out, err: &out}
	p := &consumePrinter{c: c, out: newJSONLines(&out), text: true, stop: func() {}}
	d := &client.Delivery{
		Envelope: &envelope.Body{MessageID: "0123456789abcdef0123", TraceID: strings.Repeat("a", 32)},
		Agent:    "UAGENT", Target: "kb.search",
		Payload: []byte("{\"q\":\"ok\u009b1G\u009b2Kverified  message_id=FORGED\"}"),
	}
	if err := p.delivered(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	for _, r := range strings.TrimSuffix(out.String(), "\n") {
		if unicode.IsControl(r) {
			t.Fatalf("consume printed control character %U: %q", r, out.String())
		}
	}
}
