package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/internal/devenv"
	"github.com/agentgw/agentgw/internal/natstest"
)

// lockedBuffer collects a background process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// decodeLines decodes every JSON line of out.
func decodeLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var rows []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		rows = append(rows, m)
	}
	return rows
}

// TestUserJourney drives the built binary as a new user would: `run` in
// the background, then send good and hostile messages, consume, approve,
// list denials, revoke and un-revoke an agent, dry-run and replay.
func TestUserJourney(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "agentgw")
	port := natstest.FreePorts(t, 1)[0]
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	run := exec.Command(cliBin, "run", "--dir", data, "--port", fmt.Sprint(port))
	var runOut lockedBuffer
	run.Stdout, run.Stderr = &runOut, &runOut
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = run.Process.Signal(syscall.SIGINT)
		done := make(chan error, 1)
		go func() { done <- run.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agentgw run did not stop cleanly on SIGINT: %v\n%s", err, runOut.String())
			}
		case <-time.After(20 * time.Second):
			_ = run.Process.Kill()
			t.Error("agentgw run ignored SIGINT")
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(runOut.String(), "gateway serving on") {
		if time.Now().After(deadline) {
			t.Fatalf("agentgw run did not come up:\n%s", runOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	m, created, err := devenv.Ensure(data)
	if err != nil || created {
		t.Fatalf("dev material: %v (created now: %v)", err, created)
	}
	nats := []string{"--server", url}
	// The dev server has no anonymous user: each command connects as the
	// identity it acts for (send, grant and replay as the key of --credential).
	asConsumer := append([]string{"--creds", m.Consumer.Creds}, nats...)
	asApprover := append([]string{"--creds", m.Approver.Creds}, nats...)
	asOperator := append([]string{"--creds", m.Operator.Creds}, nats...)
	agentArgs := append([]string{"--credential", m.Agent.Creds, "--curve-seed", m.Agent.Curve, "--gateway-xkey", m.GatewayXKey, "--gateway-key", m.GatewayKey}, nats...)
	sendWant := func(code int, extra ...string) map[string]any {
		r := mustRun(t, dir, code, append(append([]string{"send", "--json"}, agentArgs...), extra...)...)
		return decodeLines(t, r.stdout)[0]
	}
	send := func(extra ...string) map[string]any { return sendWant(0, extra...) }
	decisionOf := func(rc map[string]any) map[string]any {
		d, _ := rc["decision"].(map[string]any)
		return d
	}

	// A sealed refund is delivered and the consumer verifies and opens
	// it; the sender learns where it went.
	if d := decisionOf(send("--capability", "tool_call", "--target", "refunds.draft_refund", "--sealed", `{"order_id":"ord_9","amount_cents":900}`)); d["route"] != "allow" || d["target"] != "refunds.draft_refund" {
		t.Errorf("send's decision = %v; want allow to refunds.draft_refund", d)
	}
	// As a tenant nkey user consume binds the pre-created durable, shared
	// with the tool in service: it reads it only when told to settle it.
	if r := mustRun(t, dir, exitUsage, append([]string{"consume", "--tenant", "tenant_a", "--target", "refunds.draft_refund",
		"--gateway-key", m.GatewayKey, "--count", "1"}, asConsumer...)...); !strings.Contains(r.stderr, "tenant_a~refunds~draft_refund is durable") {
		t.Errorf("consume of the pre-created durable without --settle-durable: %s", r)
	}
	r := mustRun(t, dir, 0, append([]string{"consume", "--json", "--tenant", "tenant_a", "--target", "refunds.draft_refund",
		"--gateway-key", m.GatewayKey, "--curve-seed", m.Consumer.Curve, "--count", "1", "--settle-durable"}, asConsumer...)...)
	got := decodeLines(t, r.stdout)
	if len(got) != 1 || got[0]["status"] != "verified" || !strings.Contains(fmt.Sprint(got[0]["payload"]), "ord_9") {
		t.Fatalf("consume = %v; want one verified delivery of ord_9", got)
	}

	// The dev server is not open: no anonymous reader, and the agent's key
	// reads neither the denied stream nor a capability consumer.
	if r := mustRun(t, dir, 1, append([]string{"denied", "ls", "--tenant", "tenant_a"}, nats...)...); !strings.Contains(r.stderr, "refused the anonymous NATS user") {
		t.Errorf("anonymous denied ls: want the server's refusal and a hint to connect as a user:\n%s", r)
	}
	// Each refusal names the user and the subject at once.
	shown := strings.Fields(mustRun(t, dir, 0, "keys", "show", m.Agent.Creds).stdout)
	agentKey := shown[len(shown)-1]
	asAgent := "NATS user " + agentKey + " (--creds " + m.Agent.Creds + ") may not "
	if r := mustRun(t, dir, 1, append([]string{"denied", "ls", "--tenant", "tenant_a", "--creds", m.Agent.Creds}, nats...)...); !strings.Contains(r.stderr, asAgent+"publish to agentgw.js.") {
		t.Errorf("denied ls as the agent: %s\nwant %q", r, asAgent+"publish to agentgw.js.…")
	}
	if r := mustRun(t, dir, 1, append([]string{"consume", "--tenant", "tenant_a", "--target", "refunds.draft_refund", "--gateway-key", m.GatewayKey,
		"--count", "1", "--settle-durable", "--creds", m.Agent.Creds}, nats...)...); !strings.Contains(r.stderr, asAgent) {
		t.Errorf("consume as the agent: %s\nwant %q", r, asAgent+"…")
	}

	// Hostile: a tool outside the catalog is denied. (The SDK refuses to
	// even build a message for another audience.)
	// The sender learns the reason code and send exits 3.
	if d := decisionOf(sendWant(3, "--capability", "tool_call", "--target", "shell.exec", "--plain", `{"cmd":"rm -rf /"}`)); d["route"] != "deny" || d["reason"] != "unknown_target" {
		t.Errorf("send's decision = %v; want deny unknown_target", d)
	}

	// Approval: a critical payment is held, then granted and delivered.
	held := send("--capability", "tool_call", "--target", "payments.send", "--sealed", `{"amount_cents":100000}`)
	if d := decisionOf(held); d["route"] != "approval" || d["approval_id"] != held["message_id"] || d["deadline"] == nil {
		t.Errorf("send's decision = %v; want held for approval %v with a deadline", d, held["message_id"])
	}
	var pending []map[string]any
	for i := 0; i < 100 && len(pending) == 0; i++ {
		pending = decodeLines(t, mustRun(t, dir, 0, append([]string{"approvals", "ls", "--json", "--tenant", "tenant_a", "--gateway-key", m.GatewayKey}, asApprover...)...).stdout)
		time.Sleep(50 * time.Millisecond)
	}
	if len(pending) != 1 || pending[0]["held_message_id"] != held["message_id"] {
		t.Fatalf("approvals ls = %v; want the held payment %v", pending, held["message_id"])
	}
	grant := append([]string{"approvals", "grant", "--json", "--credential", m.Approver.Creds, "--gateway-key", m.GatewayKey, "--id", held["message_id"].(string), "--reason", "ok"}, nats...)
	v, _ := decodeLines(t, mustRun(t, dir, 0, grant...).stdout)[0]["verdict"].(map[string]any)
	if v["answers"] != held["message_id"] || v["answer"] != "grant" || v["route"] != "allow" || v["target"] != "payments.send" {
		t.Errorf("approvals grant verdict = %v; want the grant taken and the payment delivered", v)
	}
	// Answered: no longer listed, and a second grant is refused (exit 3).
	if rows := decodeLines(t, mustRun(t, dir, 0, append([]string{"approvals", "ls", "--json", "--tenant", "tenant_a", "--gateway-key", m.GatewayKey}, asApprover...)...).stdout); len(rows) != 0 {
		t.Errorf("approvals ls after the grant = %v; want nothing pending", rows)
	}
	if r := mustRun(t, dir, 1, grant...); !strings.Contains(r.stderr, "no held request") {
		t.Errorf("a second grant: %s\nwant: no held request", r)
	}
	r = mustRun(t, dir, 0, append([]string{"consume", "--json", "--tenant", "tenant_a", "--target", "payments.send",
		"--gateway-key", m.GatewayKey, "--curve-seed", m.Consumer.Curve, "--count", "1", "--settle-durable"}, asConsumer...)...)
	if got := decodeLines(t, r.stdout); len(got) != 1 || got[0]["message_id"] != held["message_id"] {
		t.Fatalf("granted payment not delivered: %v", got)
	}

	// Revoke the agent (no restart), get denied, un-revoke, replay.
	mustRun(t, dir, 0, "creds", "revoke", "--file", m.Revocation, "--credential", m.Agent.Creds)
	time.Sleep(3 * time.Second) // reload_interval is 2s in the dev config
	// A revoked credential does not verify: nobody is told (no notice).
	revoked := send("--no-wait-decision", "--capability", "read", "--target", "kb.search", "--plain", `{"q":"after revocation"}`)
	early := send("--no-wait-decision", "--capability", "read", "--target", "kb.search", "--plain", `{"q":"replayed too early"}`)
	var deniedSeq, earlySeq float64
	for i := 0; i < 100 && (deniedSeq == 0 || earlySeq == 0); i++ {
		// The operator finds the sequence by reason.
		for _, row := range decodeLines(t, mustRun(t, dir, 0, append([]string{"denied", "ls", "--json", "--tenant", "tenant_a", "--reason", "revoked"}, asOperator...)...).stdout) {
			switch row["message_id"] {
			case revoked["message_id"]:
				deniedSeq = row["seq"].(float64)
			case early["message_id"]:
				earlySeq = row["seq"].(float64)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if deniedSeq == 0 || earlySeq == 0 {
		t.Fatal("the revoked agent's messages are not on the denied stream as revoked")
	}
	rows := decodeLines(t, mustRun(t, dir, 0, append([]string{"denied", "ls", "--json", "--tenant", "tenant_a", "--reason", "unknown_target"}, asOperator...)...).stdout)
	if len(rows) != 1 {
		t.Errorf("denied ls --reason unknown_target = %v; want the hostile message", rows)
	}
	opArgs := append([]string{"denied", "replay", "--credential", m.Operator.Creds, "--tenant", "tenant_a"}, nats...)
	seq := fmt.Sprint(int(deniedSeq))
	mustRun(t, dir, 3, append(opArgs, "--dry-run", seq)...) // still revoked: would be denied
	// The trap: a replay while still revoked is denied again, says so
	// (exit 3), and uses the re-submission up, which the dry run reports
	// once the agent is un-revoked.
	if r := mustRun(t, dir, 3, append(opArgs, fmt.Sprint(int(earlySeq)))...); !strings.Contains(r.stdout, "denied again: revoked") {
		t.Errorf("replay while revoked: %s\nwant: denied again: revoked", r)
	}
	mustRun(t, dir, 0, "creds", "unrevoke", "--file", m.Revocation, "--credential", m.Agent.Creds)
	time.Sleep(3 * time.Second)
	if r := mustRun(t, dir, 3, append(opArgs, "--dry-run", fmt.Sprint(int(earlySeq)))...); !strings.Contains(r.stdout, "replay_refused") {
		t.Errorf("dry run of a used-up re-submission: %s\nwant replay_refused", r)
	}
	mustRun(t, dir, 0, append(opArgs, "--dry-run", seq)...)
	if r := mustRun(t, dir, 0, append(opArgs, seq)...); !strings.Contains(r.stdout, "allowed, delivered to kb.search") {
		t.Errorf("replay after un-revoking: %s\nwant: allowed, delivered to kb.search", r)
	}
	mustRun(t, dir, 3, append(opArgs, seq)...) // at most once
	r = mustRun(t, dir, 0, append([]string{"audit", "tail", "--json", "--tenant", "tenant_a"}, asOperator...)...)
	var replayed bool
	for _, ev := range decodeLines(t, r.stdout) {
		if ev["message_id"] == revoked["message_id"] && ev["route"] == "allow" && ev["operator"] != nil && ev["event"] == "decision" {
			replayed = true
		}
	}
	if !replayed {
		log, _ := os.ReadFile(filepath.Join(data, "gateway.log"))
		t.Errorf("audit trail lacks the operator's allowed replay:\n%s\ngateway log:\n%s", r.stdout, log)
	}

	// What-if: a candidate that forbids kb.search would flip the replayed
	// search (allow → deny); the current policies flip nothing they can
	// re-evaluate.
	candidate := filepath.Join(dir, "candidate.cedar")
	base, err := os.ReadFile(filepath.Join(data, "policies", "base.cedar"))
	if err != nil {
		t.Fatal(err)
	}
	forbid := "\n@id(\"no_search\")\nforbid (principal, action, resource == Target::\"kb.search\");\n"
	if err := os.WriteFile(candidate, append(base, forbid...), 0o600); err != nil {
		t.Fatal(err)
	}
	refunds := filepath.Join(data, "policies", "refunds.cedar")
	r = mustRun(t, dir, 3, append([]string{"policy", "test", "--catalog", m.Catalog, candidate, refunds}, asOperator...)...)
	if !strings.Contains(r.stdout, "allow→deny") || !strings.Contains(r.stdout, "no_search") {
		t.Errorf("policy test output lacks the flip:\n%s", r.stdout)
	}
	// The allowed refund passed refunds.max_amount at the content stage,
	// which needs its payload: not re-evaluable, so the exit is 4.
	r = mustRun(t, dir, exitUndetermined, append([]string{"policy", "test", "--catalog", m.Catalog, filepath.Join(data, "policies", "base.cedar"), refunds}, asOperator...)...)
	if strings.Contains(r.stdout, "would flip:") || !strings.Contains(r.stdout, "not re-evaluable: content_stage_needs_payload") {
		t.Errorf("policy test of the current policies:\n%s", r.stdout)
	}

	// The operator turns the journey's denials into cases; they hold no
	// secret and pass in a sandbox of the same catalog and policies.
	exported := filepath.Join(dir, "exported.yaml")
	r = mustRun(t, dir, 0, append([]string{"denied", "export", "--tenant", "tenant_a", "--out", exported, "--catalog", m.Catalog,
		"--policy", filepath.Join(data, "policies", "base.cedar"), "--policy", refunds}, asOperator...)...)
	cases, err := os.ReadFile(exported)
	if err != nil {
		t.Fatal(err)
	}
	if seedRE.Match(cases) || jwtRE.Match(cases) || !strings.Contains(string(cases), "reason: unknown_target") {
		t.Errorf("exported cases hold a secret or lack the unknown_target denial:\n%s", cases)
	}
	mustRun(t, dir, 0, "eval", "run", "--quiet", exported)

	scanStreams(t, url, m)
}

// Secrets as they are written in the dev material: nkey seeds and
// compact JWTs.
var (
	seedRE = regexp.MustCompile(`S[A-Z][A-Z2-7]{56}`)
	jwtRE  = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)
)

// scanStreams reads, as the admin, the raw headers and body of every
// message of every stream on the server and fails if any seed or
// credential JWT of the dev material appears byte for byte. Ingress is
// where agents publish their credentials themselves: it is scanned for
// seeds only.
func scanStreams(t *testing.T, url string, m *devenv.Material) {
	t.Helper()
	var seeds, jwts []string
	// Every tenant's: tenant_a's credentials are in creds/, the others'
	// in creds/<tenant>/.
	for _, sub := range []string{"keys", "creds", filepath.Join("creds", "*")} {
		files, err := filepath.Glob(filepath.Join(m.Dir, sub, "*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if st, err := os.Stat(f); err == nil && st.IsDir() {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			seeds = append(seeds, seedRE.FindAllString(string(b), -1)...)
			jwts = append(jwts, jwtRE.FindAllString(string(b), -1)...)
		}
	}
	if len(seeds) < 8 || len(jwts) < 4 {
		t.Fatalf("dev material: %d seeds and %d credentials found; want every key and the four actors' credentials", len(seeds), len(jwts))
	}
	nc, err := devenv.Connect(url, m.AdminNATS, "secret-scan")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names := js.StreamNames(ctx)
	scanned := map[string]int{}
	for name := range names.Name() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		secrets := seeds
		if name != gateway.StreamIngress {
			secrets = append(slices.Clip(seeds), jwts...)
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			raw, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("%s #%d: %v", name, seq, err)
			}
			scanned[name]++
			text := fmt.Sprint(raw.Header) + "\n" + string(raw.Data)
			for _, s := range secrets {
				if strings.Contains(text, s) {
					t.Errorf("%s #%d (%s) holds a secret of the dev material (%d bytes, starts %q)", name, seq, raw.Subject, len(s), s[:4])
				}
			}
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{gateway.StreamIngress, gateway.StreamCap, gateway.StreamApproval, gateway.StreamDenied, gateway.StreamAudit} {
		if scanned[name] == 0 {
			t.Errorf("stream %s had no message to scan (scanned: %v)", name, scanned)
		}
	}
}
