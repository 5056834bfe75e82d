package transport_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/internal/natstest"
)

// streamMsgs returns the number of messages of each stream, read as js.
func streamMsgs(t testing.TB, js jetstream.JetStream, streams ...string) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, name := range streams {
		st, err := js.Stream(context.Background(), name)
		must(t, err)
		info, err := st.Info(context.Background())
		must(t, err)
		out[name] = info.State.Msgs
	}
	return out
}

// TestOperatorCannotRepublish: an operator reads the denied and audit
// streams, whose records carry agents' signed envelopes, but cannot make
// the server write them anywhere: no consumer of its own (a push
// consumer's deliver subject is not checked against its creator's
// permissions), and no reply subject that lands in AGENTGW (the server
// answers a read, and the gateway an operator request, on whatever reply
// subject the requester set). Targets: another agent's and another
// tenant's ingress, a capability, an approval queue, another tenant's
// replies.
func TestOperatorCannotRepublish(t *testing.T) {
	d := newDeployment(t, nil)
	d.startGateway(t)
	ctx := context.Background()
	agentNC, _ := d.connectUser(t, agent1)
	a1 := d.agent(t, agentNC, d.users[agent1], "kb:read")
	// A denied record and its audit event to republish.
	if _, err := a1.Send(ctx, client.Request{Capability: envelope.Read, Target: "no.such_target", Plain: map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	admin, _ := d.connectCert(t, d.pki.admin)
	ajs, _ := jetstream.New(admin)
	outputs := []string{gateway.StreamIngress, gateway.StreamCap, gateway.StreamApproval, gateway.StreamReply}
	deadline := time.Now().Add(15 * time.Second)
	for streamMsgs(t, ajs, gateway.StreamDenied)[gateway.StreamDenied] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the denied message never reached " + gateway.StreamDenied)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := streamMsgs(t, ajs, outputs...)

	nc, _ := d.connectCert(t, d.pki.operator)
	targets := []string{
		"agentgw.in.tenant_a." + d.users[agent2].pub,
		"agentgw.in.tenant_b." + d.users[agentB1].pub,
		"agentgw.cap.tenant_a.refunds.draft_refund",
		"agentgw.approval.tenant_a.payments.send",
		"agentgw.reply.tenant_b." + d.users[agentB1].pub,
	}
	created := natstest.Republish(t, nc, []string{"$JS.API", apiPrefix},
		[]string{gateway.StreamDenied, gateway.StreamAudit}, targets, []string{"agentgw.ops.replay"})
	if len(created) > 0 {
		t.Errorf("the operator created consumers: %q; want none", created)
	}
	time.Sleep(500 * time.Millisecond)
	after := streamMsgs(t, ajs, outputs...)
	for _, s := range outputs {
		if after[s] != before[s] {
			t.Errorf("%s went from %d to %d messages while the operator tried to republish; want no change", s, before[s], after[s])
		}
	}
}
