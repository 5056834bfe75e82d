package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/audit"
)

// TestPolicyTestNotReEvaluable: a recorded allow that a candidate policy
// reading context.budget takes in cannot be judged from the audit trail
// (it holds no budget state): policy test says so and exits 4, in text
// and JSON, never "no decision would flip" with 0; a candidate it can
// judge and that flips nothing exits 0.
func TestPolicyTestNotReEvaluable(t *testing.T) {
	srv, js := streams(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cat := write("catalog.yaml", "targets:\n  - {name: kb.search, kind: read, scope: kb:read, tenants: [tenant_a], plain: true}\n")
	budget := write("budget.cedar", `@id("allow") permit (principal, action, resource);
@id("budget-floor")
forbid (principal, action, resource == Target::"kb.search")
when { context.budget has agent_remaining && context.budget.agent_remaining < 1 };
`)
	plain := write("plain.cedar", `@id("allow") permit (principal, action, resource);
@id("no-ops") forbid (principal, action, resource == Target::"ops.forbidden");
`)
	ev := audit.Event{
		Time: time.Now().UTC(), Kind: audit.KindDecision, Route: "allow", Tenant: "tenant_a", Agent: "UAGENT",
		Scopes: []string{"kb:read"}, Capability: "read", Target: "kb.search", IngressSeq: 7,
	}
	publish(t, js, &nats.Msg{Subject: "agentgw.audit.tenant_a", Data: ev.AppendLine(nil)})

	r := mustRun(t, dir, exitUndetermined, "policy", "test", "--server", srv.ClientURL(), "--catalog", cat, budget)
	if strings.Contains(r.stdout, "no decision would flip") ||
		!strings.Contains(r.stdout, "not re-evaluable: budget_state_not_recorded") ||
		!strings.Contains(r.stdout, "1 the candidate could change are not re-evaluable") {
		t.Errorf("policy test with a budget-reading candidate:\n%s", r)
	}
	r = mustRun(t, dir, exitUndetermined, "policy", "test", "--json", "--server", srv.ClientURL(), "--catalog", cat, budget)
	if !strings.Contains(r.stdout, `"undetermined":1`) {
		t.Errorf("policy test --json with a budget-reading candidate:\n%s", r)
	}
	r = mustRun(t, dir, exitOK, "policy", "test", "--server", srv.ClientURL(), "--catalog", cat, plain)
	if !strings.Contains(r.stdout, "no decision would flip") {
		t.Errorf("policy test with a candidate that flips nothing:\n%s", r)
	}
}
