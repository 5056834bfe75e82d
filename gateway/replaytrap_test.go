package gateway

import (
	"context"
	"os"
	"testing"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestReplayDryRunAfterResubmission: the revoke-then-replay trap. A
// message denied while its agent was revoked, replayed while still
// revoked, is denied again and its one re-submission is used up; after
// the un-revocation the dry run must say so (replay_refused), not
// "would be allow" for a replay the gateway will then refuse.
func TestReplayDryRunAfterResubmission(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	op := h.operator("operator:replay")

	must(t, os.WriteFile(h.cfg.Revocations.File, []byte("jtis: []\nprincipals: []\nkeys: ["+h.agent.pub+"]\n"), 0o600))
	must(t, h.gw.Reload())
	in := h.send(h.body(func(b *envelope.Builder) {}))
	h.wantReason(in, reason.Revoked)
	denied := h.deniedSeq(in)

	res, err := op.Replay(ctx, denied, false)
	must(t, err)
	h.wantReason(res.IngressSeq, reason.Revoked)

	must(t, os.WriteFile(h.cfg.Revocations.File, []byte("jtis: []\nkeys: []\nprincipals: []\n"), 0o600))
	must(t, h.gw.Reload())
	res, err = op.Replay(ctx, denied, true)
	must(t, err)
	if res.Route != "deny" || res.Reason != string(reason.ReplayRefused) {
		t.Fatalf("dry run after a used-up re-submission = %+v; want deny replay_refused", res)
	}
	if _, err := op.Replay(ctx, denied, false); err == nil {
		t.Fatal("a second re-submission was accepted")
	}
	h.stop()
}
