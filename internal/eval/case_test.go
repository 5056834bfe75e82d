package eval_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/internal/eval"
)

const okFile = `
version: 1
actors:
  agent: {tenant: tenant_a, scopes: ["kb:read"]}
cases:
  - name: allow/read
    from: agent
    send: {capability: read, target: kb.search, plain: {q: x}}
    expect: {route: allow}
`

func TestParse(t *testing.T) {
	if _, err := eval.Parse([]byte(okFile)); err != nil {
		t.Fatalf("Parse(ok) = %v", err)
	}
	seed := "SUAM" + strings.Repeat("A", 54)
	jwt := "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJ4In0.sig"
	tests := []struct{ name, from, to string }{
		{"unknown-field", "    expect: {route: allow}", "    expect: {route: allow}\n    expext: {route: deny}"},
		{"version", "version: 1", "version: 2"},
		{"unknown-actor", "from: agent", "from: nobody"},
		{"unknown-tamper", "    expect: {route: allow}", "    tamper: [teleport]\n    expect: {route: allow}"},
		{"unknown-reason", "expect: {route: allow}", "expect: {route: deny, reason: felt_wrong}"},
		{"deny-without-reason", "expect: {route: allow}", "expect: {route: deny}"},
		{"reason-with-allow", "expect: {route: allow}", "expect: {route: allow, reason: bad_signature}"},
		{"no-payload", "plain: {q: x}", "target: kb.search"},
		{"plain-and-sealed", "plain: {q: x}", "plain: {q: x}, sealed: {q: y}"},
		{"seal-tamper-on-plain", "    expect: {route: allow}", "    tamper: [seal_corrupt]\n    expect: {route: allow}"},
		{"credential-header-in-raw", "send: {capability: read, target: kb.search, plain: {q: x}}", "send: {raw: {body: x, headers: {Agentgw-Credential: abc}}}"},
		{"seed-in-raw-body", "send: {capability: read, target: kb.search, plain: {q: x}}", "send: {raw: {body: " + seed + "}}"},
		{"jwt-in-raw-header", "send: {capability: read, target: kb.search, plain: {q: x}}", "send: {raw: {body: x, headers: {X-Token: " + jwt + "}}}"},
		{"answer-to-unknown-case", "send: {capability: read, target: kb.search, plain: {q: x}}", "send: {answer: {to: nowhere, decision: grant}}"},
		{"answer-with-target", "send: {capability: read, target: kb.search, plain: {q: x}}", "send: {target: kb.search, answer: {to: allow/read, decision: grant}}"},
		{"bad-issuer", "agent: {tenant: tenant_a,", "agent: {tenant: tenant_a, issuer: someone,"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(okFile, tt.from, tt.to, 1)
			if doc == okFile {
				t.Fatalf("the edit %q did not apply", tt.from)
			}
			if _, err := eval.Parse([]byte(doc)); !errors.Is(err, eval.ErrInvalid) {
				t.Errorf("Parse(%s) = %v; want ErrInvalid", tt.name, err)
			}
		})
	}
}
