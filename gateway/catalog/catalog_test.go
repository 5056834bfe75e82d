package catalog

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/subjects/reason"
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
    payload_schema: '{"type":"object","required":["amount_cents"],"properties":{"amount_cents":{"type":"integer"},"note":{"type":"string"}},"additionalProperties":false}'
    policy_visible: [amount_cents]
    response_deadline: 1m
    response_schema: '{"type":"object","required":["status"],"properties":{"status":{"type":"string"},"email":{"type":"string"},"n":{"type":"number"}},"additionalProperties":false}'
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
	// nkeys' base32 decoding skips line breaks; a key with one is not a key.
	broken := "targets:\n  - name: sealed.target\n    kind: read\n    scope: s\n    tenants: [t]\n    consumer_xkey: \"" +
		xkey[:20] + `\n` + xkey[20:] + "\"\n"
	if _, err := Parse([]byte(broken), "."); err == nil || !strings.Contains(err.Error(), "consumer_xkey is not") {
		t.Errorf("Parse(consumer_xkey with a line break) = %v; want consumer_xkey is not a curve public key", err)
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

// TestNamedFieldsNeedClosedSchemas: a target whose payload fields are
// shown to policy or approvers (or whose response fields are removed as
// sensitive) by exact name is refused at load unless its schema is closed
// at the top level and declares exactly those names: an open schema
// would admit Amount_cents, unseen by the gateway, read as amount_cents
// by a case-insensitive decoder.
func TestNamedFieldsNeedClosedSchemas(t *testing.T) {
	const closed = `'{"type":"object","properties":{"amount_cents":{"type":"integer"},"currency":{"type":"string"}},"additionalProperties":false}'`
	target := func(extra string) string {
		return "targets:\n  - name: payments.send\n    kind: tool_call\n    scope: pay:send\n    tenants: [tenant_a]\n    plain: true\n" + extra
	}
	tests := []struct {
		name    string
		catalog string
		want    string // in the error; "" to load
	}{
		{"refuse/approver-visible-no-schema", target("    approver_visible: [amount_cents, currency]\n"), "needs a payload_schema closed"},
		{"refuse/policy-visible-no-schema", target("    policy_visible: [amount_cents]\n"), "needs a payload_schema closed"},
		{"refuse/open-schema", target(`    payload_schema: '{"type":"object","properties":{"amount_cents":{"type":"integer"}}}'` + "\n    policy_visible: [amount_cents]\n"), "needs a payload_schema closed"},
		{"refuse/additional-properties-schema", target(`    payload_schema: '{"type":"object","properties":{"amount_cents":{"type":"integer"}},"additionalProperties":{"type":"integer"}}'` + "\n    policy_visible: [amount_cents]\n"), "needs a payload_schema closed"},
		{"refuse/pattern-properties", target(`    payload_schema: '{"type":"object","properties":{"amount_cents":{"type":"integer"}},"patternProperties":{"^[A-Za-z_]+$":{}},"additionalProperties":false}'` + "\n    policy_visible: [amount_cents]\n"), "needs a payload_schema closed"},
		{"refuse/visible-not-declared", target("    payload_schema: " + closed + "\n    policy_visible: [amount]\n"), `visible field "amount" is not a property`},
		{"refuse/property-case-variant", target(`    payload_schema: '{"type":"object","properties":{"amount_cents":{"type":"integer"},"Amount_cents":{"type":"integer"}},"additionalProperties":false}'` + "\n    policy_visible: [amount_cents]\n"), `property "Amount_cents" differs only in case from visible field "amount_cents"`},
		{"refuse/visible-case-variants", target("    payload_schema: " + closed + "\n    policy_visible: [amount_cents]\n    approver_visible: [Amount_cents]\n"), "differ only in case"},
		{"refuse/sensitive-open-response", target("    response_deadline: 1m\n    sensitive: [email]\n"), "needs a response_schema closed"},
		{"load/closed", target("    payload_schema: " + closed + "\n    policy_visible: [amount_cents]\n    approver_visible: [amount_cents, currency]\n"), ""},
		{"load/nothing-visible-no-schema", target(""), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.catalog), ".")
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Parse = %v; want it to load", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Parse = %v; want an error with %q", err, tt.want)
			}
		})
	}
}

// TestCaseVariantOfNamedFieldDenied: a lone member differing only in
// case (under Unicode simple folding, as strings.EqualFold) from a
// visible field is denied before the schema sees it, with its own
// reason, and so is a response member differing from a sensitive field.
func TestCaseVariantOfNamedFieldDenied(t *testing.T) {
	c, err := Parse([]byte(good), ".")
	if err != nil {
		t.Fatal(err)
	}
	r, _ := c.Lookup("refunds.draft_refund")
	for _, payload := range []string{`{"Amount_cents":5}`, `{"AMOUNT_CENTS":5,"note":"x"}`, `{"amount_cent\u017f":5}`} {
		_, err := r.ValidatePayload([]byte(payload))
		if !errors.Is(err, reason.PayloadCaseVariant) || !strings.Contains(err.Error(), `"amount_cents"`) {
			t.Errorf("ValidatePayload(%s) = %v; want %s naming amount_cents", payload, err, reason.PayloadCaseVariant)
		}
	}
	if _, err := r.ValidatePayload([]byte(`{"amount_cents":5,"note":"Amount_cents"}`)); err != nil {
		t.Errorf("ValidatePayload(variant as a value) = %v; want nil", err)
	}
	if _, err := r.ValidateResponse([]byte(`{"status":"ok","Email":"a@b.c"}`)); !errors.Is(err, reason.PayloadCaseVariant) || strings.Contains(err.Error(), "a@b.c") {
		t.Errorf("ValidateResponse(Email) = %v; want %s without the value", err, reason.PayloadCaseVariant)
	}
}

// TestTargetsFitDecisionTokens: a decision token carries the target as
// aud and the catalog scope as scope (a reply token "respond:<target>"),
// each at most decision.MaxClaimID characters of its alphabet. A target
// whose token could not be signed is refused when the catalog loads, not
// when a request to it has been allowed.
func TestTargetsFitDecisionTokens(t *testing.T) {
	name := func(n int) string { // dotted parts of at most 64 bytes
		var b strings.Builder
		for b.Len() < n {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(strings.Repeat("a", min(64, n-b.Len())))
		}
		s := b.String()
		if strings.HasSuffix(s, ".") || len(s) != n {
			t.Fatalf("name(%d) = %q", n, s)
		}
		return s
	}
	entry := func(name, scope, extra string) string {
		return "targets:\n  - name: " + name + "\n    kind: tool_call\n    scope: \"" + scope + "\"\n    tenants: [tenant_a]\n    consumer_xkey: " + xkey + "\n" + extra
	}
	responses := "    response_deadline: 1m\n"
	for _, tc := range []struct {
		name, catalog string
		ok            bool
	}{
		{"ok/name-128", entry(name(128), "x:y", ""), true},
		{"ok/scope-128", entry("a.b", "x:"+strings.Repeat("y", 126), ""), true},
		{"ok/responding-name-120", entry(name(120), "x:y", responses), true},
		{"deny/name-129", entry(name(129), "x:y", ""), false},
		{"deny/name-255", entry(name(255), "x:y", ""), false},
		{"deny/scope-129", entry("a.b", "x:"+strings.Repeat("y", 127), ""), false},
		{"deny/scope-alphabet", entry("a.b", "x:y z", ""), false},
		{"deny/scope-pattern", entry("a.b", "x:*", ""), false},
		{"deny/responding-name-121", entry(name(121), "x:y", responses), false},
	} {
		_, err := Parse([]byte(tc.catalog), ".")
		if (err == nil) != tc.ok {
			t.Errorf("Parse(%s) = %v; want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// TestSchemaErrorsNameNoPayloadMember: a schema denial says where in
// the schema validation failed, never where in the payload: with an open
// map the instance path would be the payload's own member names, which
// are the plaintext of a sealed payload (or a response) and must not
// reach the denied record, the audit event or the log.
func TestSchemaErrorsNameNoPayloadMember(t *testing.T) {
	const open = `
targets:
  - name: notes.add
    kind: tool_call
    scope: notes:add
    tenants: [tenant_a]
    consumer_xkey: ` + xkey + `
    payload_schema: '{"type":"object","properties":{"meta":{"type":"object","additionalProperties":{"type":"string"}}}}'
    response_deadline: 1m
    response_schema: '{"type":"object","properties":{"meta":{"type":"object","additionalProperties":{"type":"string"}}}}'
`
	c, err := Parse([]byte(open), ".")
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := c.Lookup("notes.add")
	const secret = "SSN-123-45-6789"
	_, perr := tg.ValidatePayload([]byte(`{"meta":{"` + secret + `":5}}`))
	_, rerr := tg.ValidateResponse([]byte(`{"meta":{"` + secret + `":5}}`))
	for _, err := range []error{perr, rerr} {
		if err == nil || !(errors.Is(err, reason.PayloadInvalid) || errors.Is(err, reason.ResponseInvalid)) {
			t.Fatalf("validation = %v; want a schema denial", err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("denial %q names the payload's member", err)
		}
		if !strings.Contains(err.Error(), "at schema #/properties/meta/additionalProperties/type") {
			t.Errorf("denial %q does not say which part of the schema refused it", err)
		}
	}
}

// TestConsumerKeysPerTenant: consumer_xkeys gives each tenant of a
// target its own consumer key, the others falling back to consumer_xkey;
// a sealed target needs a key for every tenant, and each entry must
// name a tenant of the target and hold a curve key.
func TestConsumerKeysPerTenant(t *testing.T) {
	const other = "XDPWVGRQMKXIU3MNLJDIKUOJFUGVFXDEJGMI2I2SWQKXDHTFRLXS743O"
	c, err := Parse([]byte(`
targets:
  - name: split.target
    kind: read
    scope: s
    tenants: [a, b, c]
    consumer_xkey: `+xkey+`
    consumer_xkeys: {b: `+other+`}
`), ".")
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := c.Lookup("split.target")
	for tn, want := range map[string]string{"a": xkey, "b": other, "c": xkey} {
		if got := tg.ConsumerKey(tn); got != want {
			t.Errorf("ConsumerKey(%s) = %s; want %s", tn, got, want)
		}
	}
	_, err = Parse([]byte(`
targets:
  - name: split.target
    kind: read
    scope: s
    tenants: [a, b, c]
    plain: true
    response_deadline: 1m
    consumer_xkeys: {b: `+other+`, z: `+other+`, a: nope}
`), ".")
	for _, want := range []string{`"z" is not one of the target's tenants`, `the key of "a" is not a curve public key`, "response_deadline needs a consumer_xkey"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse = %v; want an error containing %q", err, want)
		}
	}
	_, err = Parse([]byte(`
targets:
  - name: split.target
    kind: read
    scope: s
    tenants: [a, b]
    consumer_xkeys: {b: `+other+`}
`), ".")
	if err == nil || !strings.Contains(err.Error(), "consumer_xkeys for a") {
		t.Errorf("Parse(sealed, no key for tenant a) = %v; want consumer_xkey (or consumer_xkeys for a) is required", err)
	}
}

// TestParseBoundsBudgetsAndWaits: a budget whose rate is NaN or infinite
// would never run out, and a burst past 2^53 is not counted exactly; a
// wait of centuries gives records a deadline the ledger cannot store,
// so every request to the target would fail its batch for ever.
func TestParseBoundsBudgetsAndWaits(t *testing.T) {
	target := "targets:\n  - name: kb.search\n    kind: read\n    scope: kb:read\n    tenants: [t]\n    consumer_xkey: " + xkey + "\n"
	for _, tc := range []struct{ extra, want string }{
		{"    budget: {rate: .nan, burst: 2}\n", "budget rate"},
		{"    budget: {rate: .inf, burst: 2}\n", "budget rate"},
		{"    budget: {rate: -.inf, burst: 2}\n", "budget rate"},
		{"    budget: {rate: 1, burst: 9007199254740993}\n", "budget rate"},
		{"    approval_ttl: 1600000h\n", "approval_ttl must be between"},
		{"    response_deadline: 1600000h\n", "response_deadline must be between"},
	} {
		if _, err := Parse([]byte(target+tc.extra), "."); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v; want %q", strings.TrimSpace(tc.extra), err, tc.want)
		}
	}
	for _, ok := range []string{"    budget: {rate: 0.5, burst: 9007199254740992}\n", "    approval_ttl: 8784h\n", "    response_deadline: 8784h\n"} {
		if _, err := Parse([]byte(target+ok), "."); err != nil {
			t.Errorf("Parse(%q) = %v", strings.TrimSpace(ok), err)
		}
	}
}

// TestRecursiveSchemaRefused: a schema that refers back to itself is
// refused at load, for payloads and responses alike: under oneOf it
// validated a 231-byte payload eleven levels deep in 2.4 s, four times
// longer at each level more. A definition shared by two properties is
// no cycle and loads.
func TestRecursiveSchemaRefused(t *testing.T) {
	const expr = `{"type":"object","additionalProperties":false,"required":["filter"],"properties":{"filter":{"$ref":"#/$defs/expr"}},"$defs":{"expr":{"oneOf":[{"type":"object","required":["op","args"],"properties":{"op":{"const":"and"},"args":{"type":"array","items":{"$ref":"#/$defs/expr"}}}},{"type":"object","required":["op","args"],"properties":{"op":{"const":"eq"},"args":{"type":"array","items":{"type":["string","number"]}}}}]}}}`
	target := func(key, schema string) []byte {
		return []byte("targets:\n  - name: search.query\n    kind: read\n    scope: kb:read\n    tenants: [tenant_a]\n    plain: true\n    " + key + ": '" + schema + "'\n")
	}
	for name, src := range map[string][]byte{
		"payload/defs-cycle": target("payload_schema", expr),
		"payload/self":       target("payload_schema", `{"type":"object","properties":{"child":{"$ref":"#"}}}`),
		"payload/dynamic":    target("payload_schema", `{"$schema":"https://json-schema.org/draft/2020-12/schema","$dynamicAnchor":"node","type":"object","properties":{"child":{"$dynamicRef":"#node"}}}`),
	} {
		if _, err := Parse(src, t.TempDir()); err == nil || !strings.Contains(err.Error(), "recursive schemas are refused") {
			t.Errorf("%s: Parse = %v; want the recursive schema refused", name, err)
		}
	}
	shared := `{"type":"object","additionalProperties":false,"properties":{"from":{"$ref":"#/$defs/account"},"to":{"$ref":"#/$defs/account"}},"$defs":{"account":{"type":"object","properties":{"id":{"type":"string"}}}}}`
	if _, err := Parse(target("payload_schema", shared), t.TempDir()); err != nil {
		t.Errorf("a definition shared by two properties: Parse = %v; want it loaded", err)
	}
}
