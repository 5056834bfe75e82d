package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

// TestVerifySubIsAPrincipal: a signed, otherwise valid token whose sub
// holds a control character (C0, DEL or C1) is refused as
// exchange_token_invalid, since identity.Issue refuses the principal
// "<iss>#<sub>" it would give.
func TestVerifySubIsAPrincipal(t *testing.T) {
	j := newJWKSServer(t)
	k := newTestKey(t, "k1")
	j.publish(k)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	const iss = "https://login.example.com/realms/corp"
	p := newIdP(IdPConfig{
		Name: "corp", Issuer: iss, JWKSURL: j.srv.URL, Audience: "agentgw", Algorithms: Algorithms,
		KeysMaxAge: time.Minute, KeysMinRefresh: 5 * time.Second,
	}, &http.Client{Transport: tr}, clk.now, 5*time.Second, 1)
	tokenFor := func(sub string) string {
		payload, err := json.Marshal(map[string]any{
			"iss": iss, "sub": sub, "aud": "agentgw",
			"iat": clk.t.Unix(), "exp": clk.t.Add(time.Hour).Unix(),
		})
		if err != nil {
			t.Fatal(err)
		}
		return k.signPayload(t, payload)
	}
	ctx := context.Background()
	if tok, err := p.verify(ctx, tokenFor("billing-bot")); err != nil || tok.Subject != "billing-bot" {
		t.Fatalf("verify(plain sub) = %v, %v; want billing-bot", tok, err)
	}
	for _, sub := range []string{"bot\x00x", "bot\nx", "bot\x7fx", "bot\u0085x", "bot\u009fx"} {
		if _, err := p.verify(ctx, tokenFor(sub)); !errors.Is(err, reason.ExchangeTokenInvalid) {
			t.Errorf("verify(sub %q) = %v; want %s", sub, err, reason.ExchangeTokenInvalid)
		}
	}
}
