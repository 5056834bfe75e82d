package journal

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/agentgw/agentgw/internal/natstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}

func jsFor(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// setup starts a server with the journal stream and returns a JetStream
// handle on it.
func setup(t testing.TB, c Config) (jetstream.JetStream, string) {
	t.Helper()
	s := natstest.Start(t, natstest.Options{})
	js := jsFor(t, s.ClientURL())
	if err := EnsureStream(context.Background(), js, c); err != nil {
		t.Fatalf("EnsureStream = %v", err)
	}
	return js, s.ClientURL()
}

func newWriter(t testing.TB, js jetstream.JetStream, c Config, opts ...Option) *Writer {
	t.Helper()
	w, err := NewWriter(js, c, opts...)
	if err != nil {
		t.Fatalf("NewWriter = %v", err)
	}
	return w
}

func replayAll(t testing.TB, js jetstream.JetStream, p int, since time.Time) []Record {
	t.Helper()
	var out []Record
	if err := Replay(context.Background(), js, p, since, func(r Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatalf("Replay(p%d) = %v", p, err)
	}
	return out
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// at is a time as Replay returns it: UTC, no monotonic reading.
func at(d time.Duration) time.Time { return time.Unix(0, time.Now().Add(d).UnixNano()).UTC() }

func digest(i int) (d [32]byte) {
	copy(d[:], fmt.Sprintf("digest-%026d", i))
	return d
}

func decision(i int) Decision {
	return Decision{Route: "allow", Target: "refunds.draft_refund", Capability: "tool_call",
		PolicyIDs: []string{"base.same_tenant_kind"}, PolicyVersion: "v1", OutputMsgID: fmt.Sprintf("out-%d", i)}
}

// ingressRecords are what the gateway journals for one ingress message:
// its outcome, then its replay and idempotency entries.
func ingressRecords(i int, outputBytes int, expires time.Time) []Record {
	seq := uint64(i + 1)
	id := fmt.Sprintf("msg-%016d-%016d", i, i*7)
	recs := []Record{
		{Op: OpReplay, Tenant: "tenant_a", Agent: "UAGENTXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", ID: id, Seq: seq, Expires: expires, Digest: digest(i), Decision: decision(i)},
		{Op: OpIdem, Tenant: "tenant_a", Agent: "UAGENTXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", ID: "idem-" + id, Digest: digest(-i), FirstMessageID: id, Expires: expires, Decision: decision(i)},
	}
	if outputBytes > 0 {
		out := []byte(strings.Repeat("o", outputBytes))
		recs = append([]Record{{Op: OpOutcome, Seq: seq, Value: out}}, recs...)
	}
	return recs
}
