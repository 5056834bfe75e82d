package eval_test

import (
	"encoding/base64"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/eval"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestExportSealMismatchNamesTheWrongEnd: a seal_mismatch denial is
// exported as the tamper its detail names, seal_to_other for a payload
// sealed to no key of the gateway and seal_from_other for one not from
// the credential's key, whichever gateway key the payload names (the
// current one or one of keys.accepted_curves). A detail that names
// neither is judged by the key the gateway sealed the credential to.
func TestExportSealMismatchNamesTheWrongEnd(t *testing.T) {
	key := func() string {
		kp, err := identity.NewCurve()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		return pub
	}
	current, accepted, from := key(), key(), key()
	for _, tt := range []struct {
		name, detail, to, want string
	}{
		{"not sealed to the gateway", gateway.SealNotToGateway, key(), "seal_to_other"},
		{"from another key, to an accepted key", gateway.SealNotFromCredential, accepted, "seal_from_other"},
		{"from a gateway key", gateway.SealFromGateway, current, "seal_from_other"},
		{"no detail, to another key", "", accepted, "seal_to_other"},
		{"no detail, to the current key", "", current, "seal_from_other"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body, err := (&envelope.Builder{
				Tenant: "tenant_a", Audience: "aud", Capability: envelope.ToolCall, Target: "refunds.draft_refund",
				Payload: envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(make([]byte, 64)), From: from, To: tt.to},
			}).Build(time.Now())
			if err != nil {
				t.Fatal(err)
			}
			h := nats.Header{}
			h.Set(header.Reason, string(reason.SealMismatch))
			h.Set(header.CredentialSealedTo, current)
			if tt.detail != "" {
				h.Set(header.Detail, tt.detail)
			}
			f, skipped := eval.Export([]eval.Record{{Seq: 7, Header: h, Body: body, Event: &audit.Event{Tenant: "tenant_a"}}}, eval.ExportOptions{})
			if len(f.Cases) != 1 {
				t.Fatalf("exported %d cases (skipped %+v); want 1", len(f.Cases), skipped)
			}
			if got := f.Cases[0].Tamper; !slices.Contains(got, tt.want) || len(got) != 1 {
				t.Errorf("tamper = %v; want [%s]", got, tt.want)
			}
		})
	}
}
