package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/internal/devenv"
	"github.com/agentgw/agentgw/internal/natstest"
)

// startRun runs `agentgw run --dir data` in the background until the test
// ends and returns the NATS URL once the gateway serves. edit, when not
// nil, may change the dev material before the gateway starts.
func startRun(t *testing.T, data string, edit func(*devenv.Material)) (string, *devenv.Material) {
	t.Helper()
	m, _, err := devenv.Ensure(data)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(m)
	}
	port := natstest.FreePorts(t, 1)[0]
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	run := exec.Command(cliBin, "run", "--dir", data, "--port", fmt.Sprint(port))
	var out lockedBuffer
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = run.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- run.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agentgw run did not stop cleanly on SIGINT: %v\n%s", err, out.String())
			}
		case <-time.After(20 * time.Second):
			_ = run.Process.Kill()
			<-done
			t.Error("agentgw run ignored SIGINT")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), "gateway serving on") {
		if time.Now().After(deadline) {
			t.Fatalf("agentgw run did not come up:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return url, m
}

// plainRefunds is a startRun edit: the refunds tool takes plain
// requests too.
func plainRefunds(t *testing.T, m *devenv.Material) {
	t.Helper()
	b, err := os.ReadFile(m.Catalog)
	if err != nil {
		t.Fatal(err)
	}
	plain := strings.Replace(string(b), "name: refunds.draft_refund\n", "name: refunds.draft_refund\n    plain: true\n", 1)
	if plain == string(b) {
		t.Fatalf("no refunds.draft_refund in %s", m.Catalog)
	}
	if err := os.WriteFile(m.Catalog, []byte(plain), 0o600); err != nil {
		t.Fatal(err)
	}
}

// answerRefunds runs the refunds tool, answering every request, until
// the test ends.
func answerRefunds(t *testing.T, url string, m *devenv.Material) {
	t.Helper()
	toolNC, err := devenv.Connect(url, m.Consumer.Creds, "refunds-tool")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(toolNC.Close)
	toolJS, err := client.TenantJetStream(toolNC)
	if err != nil {
		t.Fatal(err)
	}
	acfg := client.DefaultAgentConfig()
	acfg.GatewayXKey = m.GatewayXKey
	responder, err := client.AgentFromCreds(toolNC, m.Consumer.Creds, m.Consumer.Curve, acfg)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile(m.Consumer.Curve)
	if err != nil {
		t.Fatal(err)
	}
	curve, err := nkeys.FromCurveSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		t.Fatal(err)
	}
	ccfg := client.DefaultConsumerConfig()
	ccfg.Tenant, ccfg.Targets, ccfg.Curve = devenv.Tenant, []string{"refunds.draft_refund"}, curve
	ccfg.TrustedGateways, ccfg.Responder = []string{m.GatewayKey}, responder
	ccfg.Bind, ccfg.Durable = true, client.CapabilityConsumerName(devenv.Tenant, "refunds.draft_refund")
	tool, err := client.NewConsumer(toolJS, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tool.Consume(ctx, func(ctx context.Context, d *client.Delivery) error {
			_, err := tool.Respond(ctx, d, map[string]string{"refund_id": "rf_plain", "status": "drafted", "customer_email": "jane@example.com"})
			return err
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Consume: %v", err)
		}
	})
}

// refundsReply is the answer of answerRefunds's tool as its requester
// reads it: customer_email, which the catalog marks sensitive, removed.
const refundsReply = `{"refund_id":"rf_plain","status":"drafted"}`

// replyPayload is the reply payload of send --json --wait's output.
func replyPayload(t *testing.T, r result) string {
	t.Helper()
	var got struct {
		Reply struct {
			Payload json.RawMessage `json:"payload"`
		} `json:"reply"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("send --json: %v\n%s", err, r)
	}
	return string(got.Reply.Payload)
}

// TestSendPlainWait: a plain request to a target that takes responses
// waits for its reply, which the gateway seals to the agent's curve key;
// a denied request's wait ends with its denial.
func TestSendPlainWait(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "agentgw")
	url, m := startRun(t, data, func(m *devenv.Material) { plainRefunds(t, m) })
	answerRefunds(t, url, m)

	r := mustRun(t, dir, exitOK, "send", "--json", "--server", url, "--credential", m.Agent.Creds,
		"--capability", "tool_call", "--target", "refunds.draft_refund", "--plain", `{"order_id":"ord_7","amount_cents":700}`,
		"--wait", "--gateway-key", m.GatewayKey, "--curve-seed", m.Agent.Curve, "--gateway-xkey", m.GatewayXKey, "--timeout", "30s")
	if got := replyPayload(t, r); got != refundsReply {
		t.Errorf("reply payload = %s; want the tool's answer without customer_email\n%s", got, r)
	}

	// Delivered to a target no one answers: the wait ends with nothing
	// to say of the outcome, exit 4, not 3 (nothing was refused).
	r = mustRun(t, dir, exitUndetermined, "send", "--server", url, "--credential", m.Agent.Creds,
		"--capability", "read", "--target", "kb.search", "--plain", `{"query":"x"}`,
		"--wait", "--gateway-key", m.GatewayKey, "--curve-seed", m.Agent.Curve, "--gateway-xkey", m.GatewayXKey, "--timeout", "3s")
	if !strings.Contains(r.stderr, "no reply within 3s") {
		t.Errorf("send --wait to a target no one answers: want the empty wait said\n%s", r)
	}

	// A denial ends the wait: its notice is printed, exit 3.
	r = mustRun(t, dir, exitRejected, "send", "--server", url, "--credential", m.Agent.Creds,
		"--capability", "read", "--target", "kb.nowhere", "--plain", `{"q":"x"}`,
		"--wait", "--gateway-key", m.GatewayKey, "--curve-seed", m.Agent.Curve, "--gateway-xkey", m.GatewayXKey, "--timeout", "30s")
	if !strings.Contains(r.stdout, "denied: unknown_target") {
		t.Errorf("send --wait of a denied request: want its denial printed\n%s", r)
	}

	// Trusting another gateway key (left out of a rotation): the notice
	// and the reply are refused, and the wait that ends empty says why.
	other, err := nkeys.CreateServer()
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _ := other.PublicKey()
	r = mustRun(t, dir, exitRejected, "send", "--server", url, "--credential", m.Agent.Creds,
		"--capability", "tool_call", "--target", "refunds.draft_refund", "--plain", `{"order_id":"ord_9","amount_cents":900}`,
		"--wait", "--gateway-key", otherPub, "--curve-seed", m.Agent.Curve, "--gateway-xkey", m.GatewayXKey, "--timeout", "5s")
	if !strings.Contains(r.stderr, "no reply within 5s") || !strings.Contains(r.stderr, "names a gateway key not among --gateway-key") ||
		!strings.Contains(r.stderr, m.GatewayKey) {
		t.Errorf("send --wait trusting another gateway key: want the empty wait explained by the key it came signed with\n%s", r)
	}

	// Without the gateway's curve key the reply's sealer cannot be checked:
	// a usage error, before anything is sent.
	r = mustRun(t, dir, exitUsage, "send", "--server", url, "--credential", m.Agent.Creds,
		"--capability", "tool_call", "--target", "refunds.draft_refund", "--plain", `{"order_id":"ord_8","amount_cents":800}`,
		"--wait", "--gateway-key", m.GatewayKey, "--curve-seed", m.Agent.Curve)
	if !strings.Contains(r.stderr, "--gateway-xkey") {
		t.Errorf("send --wait without --gateway-xkey: want a usage error naming it\n%s", r)
	}
}

// TestSendWaitAcrossCurveRotation: the gateway has taken a new curve key
// and still accepts the old one, which the agent seals to. A reply to a
// sealed request comes from the old key and opens; one to a plain
// request comes from the new key, which the wait takes only when
// --reply-xkey names it, and whose refusal the empty wait explains.
func TestSendWaitAcrossCurveRotation(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "agentgw")
	var next string
	url, m := startRun(t, data, func(m *devenv.Material) {
		plainRefunds(t, m)
		old := filepath.Join(filepath.Dir(m.GatewayXK), "gateway-curve-old.nk")
		if err := os.Rename(m.GatewayXK, old); err != nil {
			t.Fatal(err)
		}
		kp, err := nkeys.CreateCurveKeys()
		if err != nil {
			t.Fatal(err)
		}
		seed, err := kp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		if next, err = kp.PublicKey(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m.GatewayXK, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := os.ReadFile(m.Config)
		if err != nil {
			t.Fatal(err)
		}
		rotated := strings.Replace(string(cfg), "  curve: keys/gateway-curve.nk\n", "  curve: keys/gateway-curve.nk\n  accepted_curves: [keys/gateway-curve-old.nk]\n", 1)
		if rotated == string(cfg) {
			t.Fatalf("no curve line to rotate in %s", cfg)
		}
		if err := os.WriteFile(m.Config, []byte(rotated), 0o600); err != nil {
			t.Fatal(err)
		}
	})
	answerRefunds(t, url, m)
	send := func(want int, extra ...string) result {
		t.Helper()
		args := []string{"send", "--json", "--server", url, "--credential", m.Agent.Creds,
			"--capability", "tool_call", "--target", "refunds.draft_refund", "--wait", "--gateway-key", m.GatewayKey,
			"--curve-seed", m.Agent.Curve, "--gateway-xkey", m.GatewayXKey, "--timeout", "30s"}
		return mustRun(t, dir, want, append(args, extra...)...)
	}

	if got := replyPayload(t, send(exitOK, "--sealed", `{"order_id":"ord_1","amount_cents":100}`)); got != refundsReply {
		t.Errorf("sealed request to the old key: reply %s; want %s", got, refundsReply)
	}
	if got := replyPayload(t, send(exitOK, "--plain", `{"order_id":"ord_2","amount_cents":200}`, "--reply-xkey", next)); got != refundsReply {
		t.Errorf("plain request with --reply-xkey of the new key: reply %s; want %s", got, refundsReply)
	}
	r := mustRun(t, dir, exitRejected, "send", "--server", url, "--credential", m.Agent.Creds,
		"--capability", "tool_call", "--target", "refunds.draft_refund", "--plain", `{"order_id":"ord_3","amount_cents":300}`,
		"--wait", "--gateway-key", m.GatewayKey, "--curve-seed", m.Agent.Curve, "--gateway-xkey", m.GatewayXKey, "--timeout", "15s")
	if !strings.Contains(r.stderr, "no reply within 15s") || !strings.Contains(r.stderr, "with --reply-xkey") {
		t.Errorf("plain request without --reply-xkey: want the empty wait explained by the reply's sealer\n%s", r)
	}

	// Usage errors, before anything is sent.
	r = send(exitUsage, "--plain", `{"order_id":"ord_4","amount_cents":400}`, "--reply-xkey", m.GatewayKey)
	if !strings.Contains(r.stderr, "--reply-xkey") || !strings.Contains(r.stderr, "not a public curve") {
		t.Errorf("--reply-xkey of a signing key: want a usage error naming it\n%s", r)
	}
	// The gateway's curve seed pasted for its public key: refused, and
	// not echoed.
	gwSeed, err := os.ReadFile(m.GatewayXK)
	if err != nil {
		t.Fatal(err)
	}
	r = send(exitUsage, "--plain", `{"order_id":"ord_6","amount_cents":600}`, "--reply-xkey", strings.TrimSpace(string(gwSeed)))
	if !strings.Contains(r.stderr, "not a public curve") || strings.Contains(r.stdout+r.stderr, strings.TrimSpace(string(gwSeed))) {
		t.Errorf("--reply-xkey of a curve seed: want a usage error that does not echo the seed\n%s", r)
	}
	// A key with a line break in it, which nkeys alone would decode.
	r = send(exitUsage, "--plain", `{"order_id":"ord_7","amount_cents":700}`, "--reply-xkey", next[:20]+"\n"+next[20:])
	if !strings.Contains(r.stderr, "not a public curve") {
		t.Errorf("--reply-xkey with a line break: want a usage error\n%s", r)
	}
	r = mustRun(t, dir, exitUsage, "send", "--server", url, "--credential", m.Agent.Creds,
		"--capability", "tool_call", "--target", "refunds.draft_refund", "--plain", `{"order_id":"ord_5","amount_cents":500}`,
		"--no-wait-decision", "--reply-xkey", next)
	if !strings.Contains(r.stderr, "needs --wait") {
		t.Errorf("--reply-xkey without --wait: want a usage error\n%s", r)
	}
}
