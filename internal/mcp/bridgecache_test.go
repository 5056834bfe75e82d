package mcp

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
)

// TestBridgeAnswersEachAgentItsOwn: message ids are the agents' own, so
// another agent may reuse one (the gateway keys its replay ledger by
// tenant, agent and id). The bridge remembers answers to send them again
// on a redelivery; an agent that reuses another's message id for its own
// call must get its own call's answer, never the other agent's.
func TestBridgeAnswersEachAgentItsOwn(t *testing.T) {
	h := newHarness(t)
	h.startBridge()
	victim := h.agent(newActor(t), "refund:draft")
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Second)
	defer cancel()
	rcpt, _, err := victim.SendAndWait(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"secret-order","amount_cents":500}`)}, client.WaitOptions{TrustedGateways: []string{h.gwSigning}})
	must(t, err)

	// Another agent, holding kb:read only, searches under the victim's id.
	other := newActor(t)
	cred := h.credential(other, "kb:read")
	box, err := identity.NewBox(other.curve)
	must(t, err)
	ct, err := box.Seal([]byte(`{"query":"refunds"}`), h.gwCurve)
	must(t, err)
	body, err := envelope.Builder{MessageID: rcpt.MessageID, Tenant: tenant, Audience: gwAudience, Capability: envelope.Read,
		Target: "kb.search", Payload: envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(ct), From: other.xkey, To: h.gwCurve}}.Build(time.Now())
	must(t, err)
	replies, err := subjects.Reply(tenant, other.pub)
	must(t, err)
	sub, err := h.nc.SubscribeSync(replies)
	must(t, err)
	sig, err := other.kp.Sign(envelope.SigningInput(body))
	must(t, err)
	m := nats.NewMsg("agentgw.in." + tenant + "." + other.pub)
	m.Data = body
	m.Header.Set(header.Credential, cred.Reveal())
	m.Header.Set(header.Signature, base64.RawURLEncoding.EncodeToString(sig))
	m.Header.Set(header.MsgID, "other-"+rcpt.MessageID)
	_, err = h.js.PublishMsg(ctx, m)
	must(t, err)
	for {
		rm, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			t.Fatalf("no reply for the other agent's search: %v (upstream calls %q)", err, h.upstream.calls())
		}
		if rm.Header.Get("Agentgw-Request-Id") == "" {
			continue // its decision notice
		}
		plain, err := box.Open(rm.Data, h.gwCurve)
		must(t, err)
		if strings.Contains(string(plain), "secret-order") || !strings.Contains(string(plain), "3 articles about refunds") {
			t.Errorf("the other agent's reply = %s; want its own search's answer, not the victim's refund", plain)
		}
		break
	}
	if got := h.upstream.calls(); len(got) != 2 || !strings.HasPrefix(got[1], "search ") {
		t.Errorf("upstream calls = %q; want the refund and then the other agent's search", got)
	}
}

// TestBearerOnlyToTheUpstream: the bridge's upstream bearer token goes
// with requests to the upstream's own scheme and host only; a redirect
// to another host (which the HTTP client follows through the same
// transport) carries none.
func TestBearerOnlyToTheUpstream(t *testing.T) {
	var seen []string
	base := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		seen = append(seen, r.URL.Host+" "+r.Header.Get("Authorization"))
		return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Request: r}, nil
	})
	tr := bearerTransport{token: "upstream-secret", origin: "https://tools.example", base: base}
	for _, u := range []string{"https://tools.example/mcp", "https://elsewhere.example/mcp", "http://tools.example/mcp"} {
		req, err := http.NewRequest(http.MethodPost, u, nil)
		must(t, err)
		req.Header.Set("Authorization", "Bearer stale")
		resp, err := tr.RoundTrip(req)
		must(t, err)
		resp.Body.Close()
	}
	want := []string{"tools.example Bearer upstream-secret", "elsewhere.example ", "tools.example "}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("requests carried %q; want %q", seen, want)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestTasksOfOnePrincipalLeaveRoomForOthers: a principal that fills its
// share of the task table with calls that fail at once (kept for their
// TTL) is refused more, and another principal's task call still runs.
func TestTasksOfOnePrincipalLeaveRoomForOthers(t *testing.T) {
	h := newEndpointHarness(t)
	alice := h.token("alice-ide", "s3cret-alice")
	bob := h.token("bob-ide", "s3cret-bob")
	post := func(tok, body string) string {
		_, got := h.postRPC(tok, body)
		return got
	}
	var last string
	for i := range maxTasksPerPrincipal + 1 {
		last = post(alice, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"search","arguments":"x","task":{}}}`, i))
	}
	if !strings.Contains(last, "too many tasks") {
		t.Errorf("alice's task call past her share: %s; want too many tasks", last)
	}
	if got := post(bob, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"x"},"task":{}}}`); strings.Contains(got, "too many tasks") || !strings.Contains(got, "taskId") {
		t.Errorf("bob's task call after alice filled her share: %s; want a task", got)
	}
}
