package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/gateway/whatif"
)

// TestWhatIfFlipCounts records a run of mixed traffic through the real
// gateway, then evaluates a candidate policy against its audit trail.
func TestWhatIfFlipCounts(t *testing.T) {
	h := newHarness(t)
	h.start()
	var seqs []uint64
	for range 3 {
		seqs = append(seqs, h.send(h.body(nil))) // kb.search: allow
	}
	seqs = append(seqs,
		h.send(h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" })), // policy_denied
		h.send(h.body(func(b *envelope.Builder) {
			b.Capability, b.Target = envelope.ToolCall, "payments.send" // approval
			b.Payload = envelope.Payload{Plain: json.RawMessage(`{"amount_cents":5}`)}
		})),
		h.send(h.body(func(b *envelope.Builder) { b.Target = "no.such.target" })), // before policy
	)
	sealed, _ := h.sealedRefund(h.agent, 500000, nil)
	seqs = append(seqs, h.send(sealed)) // content_denied
	for _, s := range seqs {
		h.outputFor(s)
	}
	h.stop()
	events := h.auditEvents()
	cat, err := catalog.Load(h.cfg.Catalog)
	must(t, err)
	candidate, err := policy.Parse("candidate.cedar", []byte(strings.Replace(testPolicy,
		"@id(\"forbid-ops\")\nforbid (principal, action, resource == Target::\"ops.forbidden\");",
		"@id(\"no-search\")\nforbid (principal, action, resource == Target::\"kb.search\");", 1)))
	must(t, err)
	r := whatif.Evaluate(events, cat, candidate)
	if r.Decisions != 7 || r.Evaluated != 5 {
		t.Errorf("decisions %d evaluated %d; want 7 and 5 (%+v)", r.Decisions, r.Evaluated, r)
	}
	if r.Changes["allow→deny"] != 3 || r.Changes["deny→allow"] != 1 || len(r.Changes) != 2 {
		t.Errorf("changes = %v; want allow→deny 3, deny→allow 1", r.Changes)
	}
	if r.Skipped[whatif.SkipBeforePolicy] != 1 || r.Skipped[whatif.SkipContent] != 1 {
		t.Errorf("skipped = %v; want one before policy, one content stage", r.Skipped)
	}
	for _, f := range r.Flips {
		if f.To == "deny" && (len(f.PolicyIDs) != 1 || f.PolicyIDs[0] != "no-search") {
			t.Errorf("flip %+v; want decided by no-search", f)
		}
	}
}
