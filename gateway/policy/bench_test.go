package policy

import (
	"path/filepath"
	"testing"

	cedar "github.com/cedar-policy/cedar-go"
)

// benchPolicies are the demo policies plus five more, about ten in all.
const benchPolicies = `
@id("bench.read") permit (principal, action == Action::"read", resource) when { resource.kind == "read" && principal.tenant == resource.tenant };
@id("bench.scope") forbid (principal, action == Action::"delegate", resource) unless { principal.scopes.contains("agent:delegate") };
@id("bench.night") forbid (principal, action == Action::"workflow_command", resource) when { context.hour < 6 };
@id("bench.budget") forbid (principal, action, resource) when { context.budget has agent_remaining && context.budget.agent_remaining < 0 };
@id("bench.note") forbid (principal, action == Action::"tool_call", resource) when { context has payload && context.payload has note && context.payload.note like "*DROP TABLE*" };
`

func benchSet(b *testing.B) *Set {
	b.Helper()
	files, _ := filepath.Glob("../../internal/devenv/material/policies/*.cedar")
	demo, err := Load(files...)
	if err != nil {
		b.Fatal(err)
	}
	extra := mustParse(b, benchPolicies)
	s := &Set{version: demo.version, meta: map[cedar.PolicyID]policyMeta{}}
	for _, from := range []*Set{demo, extra} {
		s.entries = append(s.entries, from.entries...)
		for k, v := range from.meta {
			s.meta[k] = v
		}
	}
	return s
}

func BenchmarkDecide(b *testing.B) {
	s := benchSet(b)
	req := Request{
		Principal: principal(),
		Action:    "tool_call",
		Resource:  target("refunds.draft_refund", "tool_call", "medium"),
		Time:      t0,
		Budget:    map[string]int64{"agent_remaining": 3, "tenant_remaining": 90, "target_remaining": 9},
	}
	b.Run("authorize", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d := s.Decide(req); !d.Allow {
				b.Fatalf("Decide = %+v", d)
			}
		}
	})
	req.Payload = map[string]any{"amount_cents": float64(2500), "order_id": "ord_123"}
	b.Run("content", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d := s.Decide(req); !d.Allow {
				b.Fatalf("Decide = %+v", d)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		e := NewEngine(s)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				e.Decide(req)
			}
		})
	})
}
