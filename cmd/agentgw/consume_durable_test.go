package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
)

// TestConsumeDurableNeedsSettle: consume reads a durable only with
// --settle-durable. Without it a run with a gateway key that is not the
// gateway's (rotated out, mistyped) is refused as a usage error before
// it reads anything, and the genuine delivery is still there for a run
// that trusts the right key; the refusal says why. The same holds for
// --bind to a pre-created durable. An ephemeral consumer needs no flag.
func TestConsumeDurableNeedsSettle(t *testing.T) {
	srv, js, gw, old, goodID := durableScene(t)
	base := []string{"consume", "--server", srv.ClientURL(), "--tenant", "tenant_a", "--target", "kb.search", "--count", "1", "--timeout", "10s"}

	r := mustRun(t, "", exitUsage, append(base, "--durable", "svc", "--gateway-key", old.PublicKey())...)
	for _, want := range []string{"consumer svc is durable", "--settle-durable", "ephemeral"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("consume --durable without --settle-durable: stderr lacks %q\n%s", want, r)
		}
	}
	if r.stdout != "" {
		t.Errorf("a refused consume printed:\n%s", r)
	}
	// Nothing was terminated: the right key, with the flag, gets it.
	r = mustRun(t, "", exitOK, append(base, "--durable", "svc", "--gateway-key", gw.PublicKey(), "--settle-durable")...)
	if !strings.Contains(r.stdout, "verified  message_id="+goodID) {
		t.Errorf("consume with the right key after a refused run: want %s verified\n%s", goodID, r)
	}

	// A pre-created durable, bound: refused alike without the flag.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateConsumer(ctx, gateway.StreamCap, jetstream.ConsumerConfig{
		Durable: "tenant_a~kb~search", FilterSubject: "agentgw.cap.tenant_a.kb.search", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, "", exitUsage, append(base, "--bind", "--gateway-key", old.PublicKey())...)
	if !strings.Contains(r.stderr, "consumer tenant_a~kb~search is durable") {
		t.Errorf("consume --bind without --settle-durable:\n%s", r)
	}
	r = mustRun(t, "", exitOK, append(base, "--bind", "--gateway-key", gw.PublicKey(), "--settle-durable")...)
	if !strings.Contains(r.stdout, "verified  message_id="+goodID) {
		t.Errorf("consume --bind --settle-durable with the right key: want %s verified\n%s", goodID, r)
	}
}

// durableScene is a server with the streams, the gateway's key and a
// rotated-out one, and one delivery for kb.search signed by the
// gateway, with its message id.
func durableScene(t *testing.T) (*server.Server, jetstream.JetStream, *identity.Signer, *identity.Signer, string) {
	t.Helper()
	srv, js := streams(t)
	gw, old := testGateway(t), testGateway(t)
	agent, _ := testAgent(t, "tenant_a")
	good, goodID := capabilityMsg(t, gw, agent, "kb.search", `{"query": "refund policy"}`)
	publish(t, js, good)
	return srv, js, gw, old, goodID
}

// TestConsumeDurableHandsBackForWantOfKey: consume --settle-durable with a
// rotated-out --gateway-key rejects the delivery and hands it back on the
// durable, rather than terminating it for the tool in service: a run
// with the gateway's key then gets it.
func TestConsumeDurableHandsBackForWantOfKey(t *testing.T) {
	srv, _, gw, old, goodID := durableScene(t)
	base := []string{"consume", "--server", srv.ClientURL(), "--tenant", "tenant_a", "--target", "kb.search", "--count", "1", "--timeout", "10s", "--durable", "svc", "--settle-durable"}

	r := mustRun(t, "", exitRejected, append(base, "--gateway-key", old.PublicKey())...)
	if !strings.Contains(r.stdout, "rejected  subject=agentgw.cap.tenant_a.kb.search reason=decision_token_invalid") || !strings.Contains(r.stdout, "unknown_key=true") {
		t.Errorf("consume with a rotated-out key: want the delivery rejected and handed back\n%s", r)
	}
	r = mustRun(t, "", exitOK, append(base, "--gateway-key", gw.PublicKey())...)
	if !strings.Contains(r.stdout, "verified  message_id="+goodID) {
		t.Errorf("consume with the gateway's key after a run that lacked it: want %s verified\n%s", goodID, r)
	}
}
