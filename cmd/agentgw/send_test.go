package main

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
)

func TestSend(t *testing.T) {
	srv, js := streams(t)
	url := srv.ClientURL()
	k := newCredsKit(t)
	mustRun(t, k.dir, exitOK, "creds", "issue", "--issuer", "issuer.nk", "--agent-seed", "agent.nk", "--tenant", "tenant_a",
		"--audience", "gw", "--scopes", "kb:read,refund:draft", "--xkey", k.xkey, "--out", "agent.creds")
	gwCurve, err := identity.NewCurve()
	if err != nil {
		t.Fatal(err)
	}
	gwBox, err := identity.NewBox(gwCurve)
	if err != nil {
		t.Fatal(err)
	}
	rawAgent, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(k.agent))
	if err != nil {
		t.Fatal(err)
	}

	send := func(want int, args ...string) (result, *envelope.Body) {
		t.Helper()
		r := mustRun(t, k.dir, want, append([]string{"send", "--no-wait-decision", "--server", url, "--credential", "agent.creds"}, args...)...)
		k.assertNoSecrets(t, "send", r.stdout+r.stderr)
		if want != exitOK {
			return r, nil
		}
		var rc struct {
			MessageID string `json:"message_id"`
			TraceID   string `json:"trace_id"`
			Seq       uint64 `json:"seq"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &rc); err != nil {
			t.Fatalf("send --json: %v\n%s", err, r)
		}
		m := lastIngress(t, js, rc.Seq)
		env, err := envelope.Parse(m.Data, envelope.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if env.MessageID != rc.MessageID || env.TraceID != rc.TraceID || env.Tenant != "tenant_a" || env.Audience != "gw" {
			t.Errorf("stored envelope %s/%s/%s/%s; receipt %+v", env.MessageID, env.TraceID, env.Tenant, env.Audience, rc)
		}
		if err := envelope.Verify(ed25519.PublicKey(rawAgent), m.Data, m.Header.Get(header.Signature)); err != nil {
			t.Errorf("the agent's signature does not verify: %v", err)
		}
		return r, env
	}

	r, env := send(exitOK, "--capability", "read", "--target", "kb.search", "--plain", `{"q":"secret-plain"}`, "--idempotency-key", "k-1", "--json")
	if string(env.Payload.Plain) != `{"q":"secret-plain"}` || env.IdempotencyKey != "k-1" || env.Capability != envelope.Read || env.Target != "kb.search" {
		t.Errorf("plain envelope = %+v", env)
	}
	if strings.Contains(r.stdout+r.stderr, "secret-plain") {
		t.Error("send printed the payload")
	}

	r, env = send(exitOK, "--capability", "tool_call", "--target", "refunds.draft_refund", "--sealed", `{"amount_cents":2500}`,
		"--curve-seed", "curve.nk", "--gateway-xkey", gwBox.PublicKey(), "--json")
	sealed, err := base64.RawURLEncoding.DecodeString(env.Payload.Sealed)
	if err != nil || env.Payload.From != k.xkey || env.Payload.To != gwBox.PublicKey() {
		t.Fatalf("sealed payload %+v: %v", env.Payload, err)
	}
	if plain, err := gwBox.Open(sealed, env.Payload.From); err != nil || string(plain) != `{"amount_cents":2500}` {
		t.Errorf("the gateway opens %q, %v", plain, err)
	}
	if strings.Contains(r.stdout, "amount_cents") {
		t.Error("send printed the sealed payload")
	}

	// Waiting for the decision needs the key that signs the notice.
	if r := mustRun(t, k.dir, exitUsage, "send", "--server", url, "--credential", "agent.creds", "--capability", "read", "--target", "kb.search", "--plain", "{}"); !strings.Contains(r.stderr, "--gateway-key") || !strings.Contains(r.stderr, "--no-wait-decision") {
		t.Errorf("send without --gateway-key: %s\nwant a hint at --gateway-key and --no-wait-decision", r)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no-payload", []string{"--capability", "read", "--target", "kb.search"}, "exactly one of --plain"},
		{"two-payloads", []string{"--capability", "read", "--target", "kb.search", "--plain", "{}", "--sealed", "{}"}, "exactly one of --plain"},
		{"sealed-no-curve", []string{"--capability", "read", "--target", "kb.search", "--sealed", "{}"}, "--curve-seed"},
		{"bad-capability", []string{"--capability", "admin", "--target", "kb.search", "--plain", "{}"}, "--capability"},
		{"bad-json", []string{"--capability", "read", "--target", "kb.search", "--plain", "{"}, "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := send(exitUsage, tc.args...)
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%s\nwant %q", r, tc.want)
			}
		})
	}
}
