package catalog

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/envelope"
	"github.com/agentgw/agentgw/reason"
)

const xkey = "XBSHZ4TUNLRHJXE6F3H7CUYIPJE75ZZM6M7ERNX2N3WHM2OBEEMFAP4Y"

const good = `
targets:
  - name: refunds.draft_refund
    kind: tool_call
    scope: refund:draft
    tenants: [tenant_a]
    risk: medium
    consumer_xkey: ` + xkey + `
    payload_schema: '{"type":"object","required":["amount_cents"],"properties":{"amount_cents":{"type":"integer"}}}'
    response_deadline: 1m
    response_schema: '{"type":"object","required":["status"]}'
    sensitive: [email]
  - name: payments.send
    kind: tool_call
    scope: pay:send
    tenants: [tenant_a]
    risk: critical
    consumer_xkey: ` + xkey + `
`

func TestParseReportsEveryProblem(t *testing.T) {
	bad := `
approval_risks: [extreme]
targets:
  - name: "Bad Name"
    kind: shell
    tenants: ["*"]
    consumer_xkey: nope
  - name: ok.target
    kind: read
    scope: s
    tenants: [t]
    plain: true
  - name: other.target
    kind: read
    scope: s
    tenants: [t]
    plain: true
    sensitive: [email]
  - name: plain.answers
    kind: read
    scope: s
    tenants: [t]
    plain: true
    response_deadline: 1m
  - name: ok.target
    kind: read
    scope: s
    tenants: [t]
    plain: true
`
	_, err := Parse([]byte(bad), ".")
	if err == nil {
		t.Fatal("Parse accepted a broken catalog")
	}
	for _, want := range []string{"approval_risks", "name must be", "kind \"shell\"", "scope is required", "tenant \"*\"", "consumer_xkey is not", "need a response_deadline", "response_deadline needs a consumer_xkey", "duplicate target"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := Parse([]byte("targets: []\nunknown: 1\n"), "."); err == nil {
		t.Error("Parse accepted an unknown field")
	}
}

func TestAuthorize(t *testing.T) {
	c, err := Parse([]byte(good), ".")
	if err != nil {
		t.Fatal(err)
	}
	has := func(scopes ...string) func(string) bool {
		return func(s string) bool {
			for _, g := range scopes {
				if g == s {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		name   string
		target string
		cap    envelope.Capability
		tenant string
		scopes []string
		want   reason.Code
	}{
		{"allow", "refunds.draft_refund", envelope.ToolCall, "tenant_a", []string{"refund:draft"}, ""},
		{"deny/unknown_target", "refunds.nope", envelope.ToolCall, "tenant_a", []string{"refund:draft"}, reason.UnknownTarget},
		{"deny/capability_mismatch", "refunds.draft_refund", envelope.Read, "tenant_a", []string{"refund:draft"}, reason.CapabilityMismatch},
		{"deny/tenant_not_allowed", "refunds.draft_refund", envelope.ToolCall, "tenant_b", []string{"refund:draft"}, reason.TenantNotAllowed},
		{"deny/missing_scope", "refunds.draft_refund", envelope.ToolCall, "tenant_a", []string{"refund:read"}, reason.MissingScope},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Authorize(tt.target, tt.cap, tt.tenant, has(tt.scopes...))
			if got := reason.Of(err); got != tt.want {
				t.Errorf("Authorize = %v; want %q", err, tt.want)
			}
		})
	}
	if p, _ := c.Lookup("payments.send"); !p.NeedsApproval {
		t.Error("a critical target does not need approval by default")
	}
}

func TestPayloadAndResponseValidation(t *testing.T) {
	c, err := Parse([]byte(good), ".")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := c.Lookup("refunds.draft_refund")
	if _, err := r.ValidatePayload([]byte(`{"amount_cents":"lots"}`)); !errors.Is(err, reason.PayloadInvalid) || strings.Contains(err.Error(), "lots") {
		t.Errorf("ValidatePayload(bad) = %v; want payload_invalid without the value", err)
	}
	obj, err := r.ValidatePayload([]byte(`{"amount_cents":5}`))
	if err != nil || Pick(obj, []string{"amount_cents", "absent"})["amount_cents"] == nil {
		t.Errorf("ValidatePayload(good) = %v, %v", obj, err)
	}
	out, err := r.ValidateResponse([]byte(`{"status":"ok","email":"a@b.c","n":12345678901234567890}`))
	if err != nil || strings.Contains(string(out), "a@b.c") || !strings.Contains(string(out), "12345678901234567890") {
		t.Errorf("ValidateResponse = %s, %v; want email removed and numbers exact", out, err)
	}
	if _, err := r.ValidateResponse([]byte(`{"email":"a@b.c"}`)); !errors.Is(err, reason.ResponseInvalid) {
		t.Errorf("ValidateResponse(no status) = %v; want response_invalid", err)
	}
}
