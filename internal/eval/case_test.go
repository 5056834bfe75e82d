package eval_test

import (
	"errors"
	"fmt"
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

// TestParseRefusesAliases: anchors and aliases are refused before any
// decoding, so nested aliases (a "billion laughs" file) are never
// expanded; the error says why.
func TestParseRefusesAliases(t *testing.T) {
	laughs := "version: 1\na: &a [x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g"} {
		laughs += n + ": &" + n + " [" + strings.TrimSuffix(strings.Repeat("*"+prev+", ", 9), ", ") + "]\n"
		prev = n
	}
	laughs += "cases: [{name: x, from: *g}]\n"
	for name, doc := range map[string]string{
		"billion-laughs": laughs,
		"anchor-only":    strings.Replace(okFile, "actors:\n", "actors: &actors\n", 1),
	} {
		_, err := eval.Parse([]byte(doc))
		if !errors.Is(err, eval.ErrInvalid) || !strings.Contains(fmt.Sprint(err), "anchors and aliases are not allowed") {
			t.Errorf("Parse(%s) = %v; want ErrInvalid saying anchors and aliases are not allowed", name, err)
		}
	}
	if _, err := eval.Parse([]byte(strings.Replace(okFile, "{q: x}", `{q: "&x *y"}`, 1))); err != nil {
		t.Errorf("Parse of a string holding & and * = %v; want it accepted", err)
	}
}

// TestParseErrorsQuoteNoSecret: a case file refused for the seed or JWT
// in it, or a secret file given as a case file, is refused without
// printing the secret.
func TestParseErrorsQuoteNoSecret(t *testing.T) {
	seed := "SUAM" + strings.Repeat("A", 54)
	for name, doc := range map[string]string{
		"seed-file":        seed + "\n",
		"seed-in-raw-body": strings.Replace(okFile, "send: {capability: read, target: kb.search, plain: {q: x}}", "send: {raw: {body: "+seed+"}}", 1),
		"seed-as-key":      okFile + seed + ": 1\n",
	} {
		_, err := eval.Parse([]byte(doc))
		if err == nil || strings.Contains(err.Error(), seed[:12]) {
			t.Errorf("Parse(%s) = %v; want an error without the seed", name, err)
		}
	}
}
