package gateway

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
)

// The wire vectors (../testdata/wire, docs/wire.md) as the gateway sees
// them: only the fields this test reads.
type wireMsg struct {
	Subject string `json:"subject"`
	Headers []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"headers"`
	Body    string `json:"body"`
	DataHex string `json:"data_hex"`
}

func (m wireMsg) header() nats.Header {
	h := nats.Header{}
	for _, kv := range m.Headers {
		h[kv.Name] = append(h[kv.Name], kv.Value)
	}
	return h
}

func loadWire(t *testing.T, name string, v any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "wire", name))
	must(t, err)
	must(t, json.Unmarshal(raw, v))
}

// TestWireVectorsThroughGateway publishes the envelopes of
// testdata/wire/envelope.json, in their order, to a real gateway holding
// the vectors' keys, catalog and policy at the vectors' instant, and
// checks that every output is the vector's: the deliveries, the approval
// request and the reply, header for header and byte for byte — except
// where the gateway draws randomness (a decision token's jti, a seal's
// nonce, and so the token and the payload digest it binds), where the
// output must open to the vector's plaintext and carry the vector's
// other claims.
func TestWireVectorsThroughGateway(t *testing.T) {
	var keys struct {
		Keys []struct{ Label, Seed, Public string }
	}
	var envs struct {
		VerifyAtUnix int64 `json:"verify_at_unix"`
		Envelopes    []struct {
			Name       string  `json:"name"`
			IngressSeq uint64  `json:"ingress_seq"`
			Message    wireMsg `json:"message"`
		}
	}
	var deliveries struct {
		Deliveries []struct {
			Name        string  `json:"name"`
			Token       string  `json:"token"`
			Message     wireMsg `json:"message"`
			WantPayload string  `json:"want_payload"`
		}
	}
	var appr struct {
		Request wireMsg `json:"request"`
	}
	var resp struct {
		Reply      wireMsg `json:"reply"`
		ReplyPlain string  `json:"reply_plaintext"`
		ReplyToken string  `json:"reply_token"`
	}
	var dec struct {
		Batches []struct {
			Tokens []struct{ Name, Audience, Token string }
		}
	}
	loadWire(t, "keys.json", &keys)
	loadWire(t, "envelope.json", &envs)
	loadWire(t, "delivery.json", &deliveries)
	loadWire(t, "approval.json", &appr)
	loadWire(t, "response.json", &resp)
	loadWire(t, "decision.json", &dec)
	seeds, pubs := map[string]string{}, map[string]string{}
	for _, k := range keys.Keys {
		seeds[k.Label], pubs[k.Label] = k.Seed, k.Public
	}
	box := func(label string) *identity.Box {
		kp, err := nkeys.FromSeed([]byte(seeds[label]))
		must(t, err)
		b, err := identity.NewBox(kp)
		must(t, err)
		return b
	}

	h := newHarness(t)
	must(t, os.WriteFile(h.cfg.Keys.Signing, []byte(seeds["gateway-signing"]), 0o600))
	must(t, os.WriteFile(h.cfg.Keys.Curve, []byte(seeds["gateway-xkey"]), 0o600))
	h.gwCurve, h.gwSigning = pubs["gateway-xkey"], pubs["gateway-signing"]
	for _, f := range []string{"catalog.yaml", "policy.cedar"} {
		data, err := os.ReadFile(filepath.Join("..", "testdata", "wire", f))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(h.dir, f), data, 0o600))
	}
	h.cfg.Tenants = map[string]TenantConfig{"tenant_a": {Issuers: []string{pubs["issuer"]}}}
	now := time.Unix(envs.VerifyAtUnix, 0).UTC()
	h.clock.now = now
	h.start()
	<-h.gw.Ready()

	trusted := []string{pubs["gateway-signing"]}
	claimsOf := func(tok, aud string) decision.Claims {
		t.Helper()
		c, err := decision.Verify(tok, decision.VerifyOptions{TrustedGateways: trusted, Audience: aud, Now: now})
		if err != nil {
			t.Fatalf("decision.Verify = %v", err)
		}
		return *c
	}
	vectorTokens := map[string]struct{ aud, tok string }{}
	for _, b := range dec.Batches {
		for _, tok := range b.Tokens {
			vectorTokens[tok.Name] = struct{ aud, tok string }{tok.Audience, tok.Token}
		}
	}
	// sameClaims compares a gateway token with a vector token, but for
	// the jti (random) and, when resealed, the payload digest (it binds a
	// seal with a random nonce).
	sameClaims := func(name, got string, resealed bool) {
		t.Helper()
		v := vectorTokens[name]
		g, w := claimsOf(got, v.aud), claimsOf(v.tok, v.aud)
		g.ID, w.ID = "", ""
		if resealed {
			g.PayloadDigest, w.PayloadDigest = "", ""
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s: gateway token claims\n%+v\nwant the vector's\n%+v", name, g, w)
		}
	}
	sameHeaders := func(name string, got nats.Header, want wireMsg, skip ...string) {
		t.Helper()
		wh := want.header()
		for k := range got {
			if _, ok := wh[k]; !ok {
				t.Errorf("%s: gateway header %s is not in the vector", name, k)
			}
		}
		for k, v := range wh {
			if !slices.Contains(skip, k) && !slices.Equal(got[k], v) {
				t.Errorf("%s: header %s = %q; want %q", name, k, got[k], v)
			}
		}
	}

	outputs := map[uint64]*jetstream.RawStreamMsg{}
	for _, e := range envs.Envelopes {
		seq := h.publish(e.Message.Subject, []byte(e.Message.Body), e.Message.header())
		if seq != e.IngressSeq {
			t.Fatalf("%s: ingress sequence %d; want %d", e.Name, seq, e.IngressSeq)
		}
		m := h.outputFor(seq)
		if m.Header.Get(header.Reason) != "" {
			t.Fatalf("%s: denied: %s: %s", e.Name, m.Header.Get(header.Reason), m.Header.Get(header.Detail))
		}
		outputs[seq] = m
	}

	// Deliveries: ingress 1 (refund), 2 (search), 4 (the approved payment).
	for i, seq := range []uint64{1, 2, 4} {
		want := deliveries.Deliveries[i]
		m := outputs[seq]
		if m.Subject != want.Message.Subject {
			t.Errorf("%s: subject %s; want %s", want.Name, m.Subject, want.Message.Subject)
			continue
		}
		sameHeaders(want.Name, m.Header, want.Message)
		got, err := delivery.Parse(m.Data, 1<<20)
		must(t, err)
		wantDoc, err := delivery.Parse([]byte(want.Message.Body), 1<<20)
		must(t, err)
		sameClaims(want.Token, got.Decision, got.Sealed != "")
		if got.Signature != wantDoc.Signature || got.SealedFrom != wantDoc.SealedFrom || string(got.Envelope) != string(wantDoc.Envelope) {
			t.Errorf("%s: delivery document differs from the vector's", want.Name)
		}
		if got.Sealed == "" {
			// Nothing random but the token: the bytes are the vector's.
			if body := strings.Replace(string(m.Data), got.Decision, vectorTokens[want.Token].tok, 1); body != want.Message.Body {
				t.Errorf("%s: body\n%s\nwant\n%s", want.Name, body, want.Message.Body)
			}
			continue
		}
		ct, err := base64.RawURLEncoding.DecodeString(got.Sealed)
		must(t, err)
		if pt, err := box("consumer-xkey").Open(ct, got.SealedFrom); err != nil || string(pt) != want.WantPayload {
			t.Errorf("%s: re-sealed payload opens to %q, %v; want %q", want.Name, pt, err, want.WantPayload)
		}
	}

	// The approval request: nothing random but its token's jti.
	if m := outputs[3]; m.Subject != appr.Request.Subject || string(m.Data) != appr.Request.Body {
		t.Errorf("approval request %s\n%s\nwant %s\n%s", m.Subject, m.Data, appr.Request.Subject, appr.Request.Body)
	} else {
		sameHeaders("approval request", m.Header, appr.Request, header.Decision)
		sameClaims("payment-approval-request", m.Header.Get(header.Decision), false)
	}

	// The reply.
	m := outputs[5]
	if m.Subject != resp.Reply.Subject {
		t.Fatalf("reply subject %s; want %s", m.Subject, resp.Reply.Subject)
	}
	sameHeaders("reply", m.Header, resp.Reply, header.Decision)
	sameClaims(resp.ReplyToken, m.Header.Get(header.Decision), true)
	if pt, err := box("agent-xkey").Open(m.Data, m.Header.Get(header.SealedFrom)); err != nil || string(pt) != resp.ReplyPlain {
		t.Errorf("reply opens to %q, %v; want %q", pt, err, resp.ReplyPlain)
	}
}
