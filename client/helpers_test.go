package client

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.uber.org/goleak"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/subjects"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}

const (
	testTenant   = "tenant_a"
	testAudience = "billing-gateway"
	testTarget   = "refunds.draft_refund"
)

// testClock is the fixed instant tests sign and verify at.
var testClock = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// actor is an agent, approver or consumer with its keys and credential.
type actor struct {
	kp    nkeys.KeyPair
	pub   string
	curve nkeys.KeyPair
	xkey  string
	box   *identity.Box
	token identity.Token
}

// world is a real embedded nats-server with the gateway's output and
// ingress streams, a tenant issuer and the gateway's keys.
type world struct {
	t       testing.TB
	srv     *server.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	issuer  nkeys.KeyPair
	gwSign  *identity.Signer // decision tokens
	gwCurve *identity.Box    // the gateway's curve key
}

func newWorld(t testing.TB) *world {
	t.Helper()
	return newWorldOn(t, natstest.Options{})
}

// newWorldOn is newWorld on a server started with o.
func newWorldOn(t testing.TB, o natstest.Options) *world {
	t.Helper()
	w := &world{t: t}
	w.srv = natstest.Start(t, o)
	w.nc = natstest.Connect(t, w.srv)
	var err error
	if w.js, err = jetstream.New(w.nc); err != nil {
		t.Fatal(err)
	}
	w.issuer = mustKey(t, identity.NewIssuer)
	if w.gwSign, err = identity.NewSigner(mustKey(t, identity.NewGatewayKey)); err != nil {
		t.Fatal(err)
	}
	if w.gwCurve, err = identity.NewBox(mustKey(t, identity.NewCurve)); err != nil {
		t.Fatal(err)
	}
	return w
}

func mustKey(t testing.TB, f func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// ingressStream creates AGENTGW_IN as the gateway does: four-token
// subjects, partition transform, a duplicate window.
func (w *world) ingressStream() jetstream.Stream {
	w.t.Helper()
	src, dest := subjects.IngressTransform(1)
	return w.stream(jetstream.StreamConfig{
		Name:             "AGENTGW_IN",
		Subjects:         []string{subjects.IngressStreamSubject},
		SubjectTransform: &jetstream.SubjectTransformConfig{Source: src, Destination: dest},
		Storage:          jetstream.FileStorage,
		Duplicates:       10 * time.Minute,
	})
}

func (w *world) stream(sc jetstream.StreamConfig) jetstream.Stream {
	w.t.Helper()
	s, err := w.js.CreateOrUpdateStream(context.Background(), sc)
	if err != nil {
		w.t.Fatalf("stream %s: %v", sc.Name, err)
	}
	return s
}

// newActor makes keys and a credential of tenant with scopes.
func (w *world) newActor(tenant string, scopes ...string) *actor {
	w.t.Helper()
	a := &actor{kp: mustKey(w.t, identity.NewAgent), curve: mustKey(w.t, identity.NewCurve)}
	var err error
	a.pub, _ = a.kp.PublicKey()
	if a.box, err = identity.NewBox(a.curve); err != nil {
		w.t.Fatal(err)
	}
	a.xkey = a.box.PublicKey()
	a.token, err = identity.Issue(w.issuer, identity.IssueRequest{
		Subject: a.pub, Audience: testAudience, Tenant: tenant, Scopes: scopes, XKey: a.xkey, TTL: 30 * time.Minute,
	}, testClock)
	if err != nil {
		w.t.Fatal(err)
	}
	return a
}

func (w *world) agentConfig(a *actor) AgentConfig {
	return AgentConfig{
		Credential:     a.token,
		Key:            a.kp,
		Curve:          a.curve,
		GatewayXKey:    w.gwCurve.PublicKey(),
		AttemptTimeout: 2 * time.Second,
		RetryWait:      10 * time.Millisecond,
	}
}

func (w *world) agent(a *actor) *Agent {
	w.t.Helper()
	ag, err := NewAgent(w.nc, w.agentConfig(a), WithClock(func() time.Time { return testClock }))
	if err != nil {
		w.t.Fatalf("NewAgent: %v", err)
	}
	return ag
}

// all returns every message of stream, in order.
func (w *world) all(name string) []*jetstream.RawStreamMsg {
	w.t.Helper()
	ctx := context.Background()
	s, err := w.js.Stream(ctx, name)
	if err != nil {
		w.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			w.t.Fatalf("get %s/%d: %v", name, seq, err)
		}
		out = append(out, m)
	}
	return out
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
