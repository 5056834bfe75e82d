package transport_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
)

// pubAckShape is how every JetStream PubAck for the ingress stream starts.
var pubAckShape = []byte(`{"stream":"AGENTGW_IN"`)

// injectViaReply publishes to the agent's own ingress subject with reply
// subjects the agent may not publish to. JetStream sends its PubAck there.
func injectViaReply(t *testing.T, nc *nats.Conn, ingress string, replies []string) {
	t.Helper()
	for _, r := range replies {
		must(t, nc.PublishMsg(&nats.Msg{Subject: ingress, Reply: r, Data: []byte(`{"not":"an envelope"}`)}))
	}
	must(t, nc.Flush())
	time.Sleep(300 * time.Millisecond)
}

// injected lists the messages of the agentgw streams that are PubAcks.
func injected(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	for _, sc := range gateway.StreamConfigs(gateway.DefaultConfig().Streams, 1) {
		st, err := js.Stream(ctx, sc.Name)
		must(t, err)
		info, err := st.Info(ctx)
		must(t, err)
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			if m, err := st.GetMsg(ctx, seq); err == nil && bytes.HasPrefix(m.Data, pubAckShape) {
				out = append(out, fmt.Sprintf("%s: %s", m.Subject, m.Data))
			}
		}
	}
	return out
}

// TestReplySubjectInjection is why tenants have their own accounts.
//
// NATS permissions check the subject a client publishes to, not the reply
// subject it sets. JetStream answers every stored message with a PubAck
// on that reply subject, as the server. In one shared account an agent
// allowed to publish only to its own ingress subject can therefore make
// JetStream write into agentgw.cap.>, agentgw.audit.> or another agent's
// ingress subject. Across the deploy layout's service import the reply is
// rewritten and the PubAck returns into the tenant account, where no
// stream listens.
func TestReplySubjectInjection(t *testing.T) {
	targets := func(self, other string) []string {
		return []string{
			"agentgw.cap.tenant_a.refunds.draft_refund",
			"agentgw.approval.tenant_a.payments.send",
			"agentgw.denied.tenant_a.bad_signature",
			"agentgw.audit.tenant_a",
			"agentgw.reply.tenant_a." + other,
			"agentgw.in.tenant_a." + other,
		}
	}

	t.Run("one-account-permissions-only/injects", func(t *testing.T) {
		users := newUsers(t)
		self, other := users[agent1], users[agent2]
		dir := t.TempDir()
		conf := filepath.Join(dir, "shared.conf")
		must(t, os.WriteFile(conf, fmt.Appendf(nil, `
jetstream {}
accounts {
  AGENTGW {
    jetstream: enabled
    users: [
      { user: admin, password: admin }
      { nkey: %[1]s, permissions: {
          publish:   { allow: ["agentgw.in.tenant_a.%[1]s"] }
          subscribe: { allow: ["_INBOX.%[1]s.>"] }
      } }
    ]
  }
}
`, self.pub), 0o600))
		srv := startServer(t, serverOptions(t, conf), &serverLog{})
		admin, err := nats.Connect(srv.ClientURL(), nats.UserInfo("admin", "admin"))
		must(t, err)
		defer admin.Close()
		ajs, _ := jetstream.New(admin)
		must(t, gateway.EnsureStreams(context.Background(), ajs, gateway.DefaultConfig().Streams, 1))
		nc, err := nats.Connect(srv.ClientURL(), nats.Nkey(self.pub, self.kp.Sign), nats.CustomInboxPrefix("_INBOX."+self.pub))
		must(t, err)
		defer nc.Close()
		injectViaReply(t, nc, "agentgw.in.tenant_a."+self.pub, targets(self.pub, other.pub))
		// Every target subject received a PubAck it was never allowed to
		// publish.
		if got := injected(t, ajs); len(got) != len(targets("", "")) {
			t.Fatalf("PubAcks written into agentgw streams in a shared account: %q; want one per target (the attack works there)", got)
		}
	})

	t.Run("deploy/contained", func(t *testing.T) {
		d := newDeployment(t, nil)
		admin, _ := d.connectCert(t, d.pki.admin)
		ajs, _ := jetstream.New(admin)
		must(t, gateway.EnsureStreams(context.Background(), ajs, gateway.DefaultConfig().Streams, 1))
		nc, errs := d.connectUser(t, agent1)
		self, other := d.users[agent1], d.users[agent2]
		injectViaReply(t, nc, "agentgw.in.tenant_a."+self.pub, targets(self.pub, other.pub))
		if got := injected(t, ajs); len(got) > 0 {
			t.Fatalf("PubAcks written into agentgw streams from a tenant account: %q", got)
		}
		// The messages themselves landed, on the agent's own subject only.
		st, _ := ajs.Stream(context.Background(), gateway.StreamIngress)
		info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(">"))
		must(t, err)
		if info.State.Msgs != uint64(len(targets("", ""))) || len(info.State.Subjects) != 1 {
			t.Errorf("ingress holds %d messages on %v; want %d on the agent's subject", info.State.Msgs, info.State.Subjects, len(targets("", "")))
		}
		if got := errs.Errors(); len(got) > 0 {
			t.Errorf("the agent's own publishes were refused: %v", got)
		}
	})
}
