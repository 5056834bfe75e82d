package policy_test

import (
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/policy"
)

// The pipeline's content stage (gateway/pipeline.go decide): strict decode,
// ValidateObject, Pick policy-visible fields, DecideContent.
const setsCatalog = `
targets:
  - name: payments.batch
    kind: tool_call
    scope: pay:send
    tenants: [tenant_a]
    plain: true
    payload_schema: '{"type":"object","additionalProperties":false,"required":["account_ids"],"properties":{"account_ids":{"type":"array","items":{"type":"integer"}}}}'
    policy_visible: [account_ids]
`

// Allow-list of accounts: forbid any batch that names an account outside it.
const setsPolicy = `
@id("allow") permit (principal, action, resource);
@id("only-known-accounts")
forbid (principal, action == Action::"tool_call", resource == Target::"payments.batch")
when { context has payload && !([1001, 1002].containsAll(context.payload.account_ids)) };
`

func contentDecision(t *testing.T, payload string) policy.Decision {
	t.Helper()
	cat, err := catalog.Parse([]byte(setsCatalog), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.Parse("p.cedar", []byte(setsPolicy))
	if err != nil {
		t.Fatal(err)
	}
	tgt, _ := cat.Lookup("payments.batch")
	obj, err := envelope.DecodePayload([]byte(payload), envelope.Limits{MaxBytes: 64 << 10})
	if err != nil {
		t.Fatalf("strict decode refused %s: %v", payload, err)
	}
	if err := tgt.ValidateObject(obj); err != nil {
		t.Fatalf("schema refused %s: %v", payload, err)
	}
	req := policy.Request{
		Principal: policy.Principal{Agent: "UAGENT", Tenant: "tenant_a", Scopes: []string{"pay:send"}},
		Action:    "tool_call",
		Resource:  policy.Resource{Target: tgt.Name, Tenant: "tenant_a", Kind: tgt.Kind, Risk: tgt.Risk},
		Time:      time.Unix(1_700_000_000, 0),
	}
	auth := set.Decide(req)
	if !auth.Allow {
		t.Fatalf("authorize stage denied")
	}
	req.Payload = catalog.Pick(obj, tgt.PolicyVisible)
	return set.DecideContent(auth, req)
}

// TestUnrepresentableElementOmitsWholeField: an array element Cedar
// cannot hold (an integer past int64) leaves the whole field out of the
// policy's view, so the allow-list forbid reading it errors and denies;
// were only the element left out, containsAll would pass the set that
// remains, and the unknown account would be allowed.
func TestUnrepresentableElementOmitsWholeField(t *testing.T) {
	// Control: an unknown, representable account is forbidden.
	if d := contentDecision(t, `{"account_ids":[1001,4242]}`); d.Allow {
		t.Fatalf("control: unknown account 4242 allowed")
	}
	// An account id past int64 is schema-valid ("integer"), and the
	// consumer receives it; Cedar cannot hold it, so the whole field is
	// left out and the forbid reading it errors, which denies.
	d := contentDecision(t, `{"account_ids":[1001,99999999999999999999]}`)
	if d.Allow {
		t.Errorf("forbid only-known-accounts sidestepped: unknown account 99999999999999999999 ALLOWED (errors=%q, policy_ids=%v)", d.Errors, d.PolicyIDs)
	}
}
