package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// deniedMsg is a message in the gateway's denied-stream shape: the
// original body with the agent's signature and its credential sealed to
// the gateway's curve key, plus the decision headers. plainCredential
// adds the credential readable too, as no gateway writes it: the CLI
// must still not print it.
type deniedMsg struct {
	tenant, agent, messageID, traceID, target, detail string
	code                                              reason.Code
	credential                                        identity.Token
	body                                              []byte
	plainCredential                                   bool
}

// gatewayBox stands for the gateway's curve key.
var gatewayBox = sync.OnceValues(func() (*identity.Box, error) {
	kp, err := identity.NewCurve()
	if err != nil {
		return nil, err
	}
	return identity.NewBox(kp)
})

func (d deniedMsg) msg(t *testing.T) *nats.Msg {
	t.Helper()
	subj, err := subjects.Denied(d.tenant, d.code)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(subj)
	m.Data = d.body
	h := m.Header
	h.Set(header.MsgID, "agw-"+d.messageID)
	h.Set(header.Route, "deny")
	h.Set(header.IngressSeq, "7")
	h.Set(header.IngressSubject, "agentgw.in."+d.tenant+"."+d.agent)
	h.Set(header.DecidedAt, time.Now().UTC().Format(time.RFC3339Nano))
	h.Set(header.MessageID, d.messageID)
	h.Set(header.TraceID, d.traceID)
	h.Set(header.Target, d.target)
	h.Set(header.Tenant, d.tenant)
	h.Set(header.Agent, d.agent)
	box, err := gatewayBox()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := box.SealCredential(d.credential.Reveal(), d.body)
	if err != nil {
		t.Fatal(err)
	}
	h.Set(header.CredentialSealed, sealed)
	h.Set(header.CredentialSealedTo, box.PublicKey())
	if d.plainCredential {
		h.Set(header.Credential, d.credential.Reveal())
	}
	h.Set(header.Signature, "c2lnbmF0dXJlLW9mLXRoZS1hZ2VudC1vdmVyLXRoZS1ib2R5")
	h.Set(header.Reason, string(d.code))
	if info, ok := reason.Lookup(d.code); ok {
		h.Set(header.Stage, string(info.Stage))
	}
	h.Set(header.Detail, d.detail)
	return m
}

// testGateway is a gateway signing key that tests sign decision tokens
// with, as the gateway does.
func testGateway(t *testing.T) *identity.Signer {
	t.Helper()
	kp, err := identity.NewGatewayKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := identity.NewSigner(kp)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testAgent returns an agent key and a real credential for it.
func testAgent(t *testing.T, tenant string) (string, identity.Token) {
	t.Helper()
	iss, _ := identity.NewIssuer()
	ag, _ := identity.NewAgent()
	cv, _ := identity.NewCurve()
	pub, _ := ag.PublicKey()
	x, _ := cv.PublicKey()
	tok, err := identity.Issue(iss, identity.IssueRequest{Subject: pub, Audience: "gw", Tenant: tenant, XKey: x, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return pub, tok
}

func TestDenied(t *testing.T) {
	srv, js := streams(t)
	url := srv.ClientURL()
	agentA, credA := testAgent(t, "tenant_a")
	agentB, credB := testAgent(t, "tenant_b")
	secretBody := []byte(`{"v":1,"payload":{"plain":{"card":"4111-SECRET"}}}`)
	msgs := []deniedMsg{
		{tenant: "tenant_a", agent: agentA, code: reason.BadSignature, messageID: "msg-a-0000000000001", traceID: strings.Repeat("a", 32), target: "refunds.draft_refund", detail: "signature does not verify", credential: credA, body: secretBody},
		{tenant: "tenant_a", agent: agentA, code: reason.ReplayDetected, messageID: "msg-a-0000000000002", traceID: strings.Repeat("b", 32), target: "refunds.draft_refund", detail: "seen at seq 3", credential: credA, body: secretBody},
		{tenant: "tenant_b", agent: agentB, code: reason.BadSignature, messageID: "msg-b-0000000000003", traceID: strings.Repeat("c", 32), target: "kb.search", detail: "signature\x1b[31m does not verify", credential: credB, body: secretBody, plainCredential: true},
	}
	seqs := make([]uint64, len(msgs))
	for i, d := range msgs {
		seqs[i] = publish(t, js, d.msg(t))
	}
	noSecrets := func(t *testing.T, r result) {
		t.Helper()
		out := r.stdout + r.stderr
		for _, s := range []string{"eyJ", credA.Reveal(), "4111-SECRET", "c2lnbmF0dXJl", "\x1b"} {
			if strings.Contains(out, s) {
				t.Errorf("output holds %q:\n%s", s, out)
			}
		}
	}

	for _, tc := range []struct {
		name string
		args []string
		want []int // indexes into msgs, in order
	}{
		{"all", nil, []int{0, 1, 2}},
		{"tenant", []string{"--tenant", "tenant_a"}, []int{0, 1}},
		{"reason", []string{"--reason", "bad_signature"}, []int{0, 2}},
		{"tenant+reason", []string{"--tenant", "tenant_b", "--reason", "bad_signature"}, []int{2}},
		{"agent", []string{"--agent", agentB}, []int{2}},
		{"since", []string{"--since", "1h"}, []int{0, 1, 2}},
		{"none", []string{"--tenant", "tenant_c"}, nil},
	} {
		t.Run("ls/"+tc.name, func(t *testing.T) {
			r := mustRun(t, "", exitOK, append([]string{"denied", "ls", "--server", url}, tc.args...)...)
			noSecrets(t, r)
			lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
			if !strings.HasPrefix(lines[0], "SEQ") || len(lines)-1 != len(tc.want) {
				t.Fatalf("denied ls %v: want %d rows\n%s", tc.args, len(tc.want), r)
			}
			for i, w := range tc.want {
				d := msgs[w]
				f := strings.Fields(lines[i+1])
				if len(f) < 7 || f[0] != strconv.FormatUint(seqs[w], 10) || f[2] != d.tenant || f[3] != string(d.code) ||
					f[4] != short(d.agent) || f[5] != d.messageID || !strings.HasSuffix(lines[i+1], clean(d.detail)) {
					t.Errorf("row %d = %q; want seq %d, %s, %s, %s, %s, %q", i, lines[i+1], seqs[w], d.tenant, d.code, short(d.agent), d.messageID, clean(d.detail))
				}
			}
		})
	}

	t.Run("ls/json", func(t *testing.T) {
		r := mustRun(t, "", exitOK, "denied", "ls", "--server", url, "--json", "--tenant", "tenant_a")
		noSecrets(t, r)
		dec := json.NewDecoder(strings.NewReader(r.stdout))
		for i := 0; i < 2; i++ {
			var row deniedRow
			if err := dec.Decode(&row); err != nil {
				t.Fatalf("row %d: %v\n%s", i, err, r.stdout)
			}
			d := msgs[i]
			if row.Seq != seqs[i] || row.Tenant != d.tenant || row.Reason != string(d.code) || row.Agent != d.agent ||
				row.MessageID != d.messageID || row.TraceID != d.traceID || row.Detail != d.detail || row.Time.IsZero() {
				t.Errorf("row %d = %+v", i, row)
			}
		}
		if dec.More() {
			t.Error("more rows than tenant_a has")
		}
	})

	t.Run("ls/since-excludes-older", func(t *testing.T) {
		time.Sleep(20 * time.Millisecond)
		r := mustRun(t, "", exitOK, "denied", "ls", "--server", url, "--since", "5ms")
		if strings.Count(r.stdout, "\n") != 1 {
			t.Errorf("--since 5ms listed older messages:\n%s", r)
		}
	})

	t.Run("ls/usage", func(t *testing.T) {
		r := mustRun(t, "", exitUsage, "denied", "ls", "--server", url, "--reason", "no_such_reason")
		if !strings.Contains(r.stderr, "not a reason code") {
			t.Errorf("%s", r)
		}
		mustRun(t, "", exitUsage, "denied", "ls", "--server", url, "--tenant", "tenant.*")
	})

	t.Run("show", func(t *testing.T) {
		r := mustRun(t, "", exitOK, "denied", "show", "--server", url, strconv.FormatUint(seqs[0], 10))
		noSecrets(t, r)
		box, err := gatewayBox()
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(secretBody)
		for _, want := range [][]string{
			{"Agentgw-Credential-Sealed", "[sealed]"}, {"Agentgw-Credential-Sealed-To", box.PublicKey()}, {"Agentgw-Signature", "[redacted]"},
			{"Agentgw-Reason", "bad_signature"}, {"Agentgw-Agent", agentA},
			{"body", "sha256:" + hex.EncodeToString(sum[:]), "(50", "bytes)"},
		} {
			if !hasRow(r.stdout, want...) {
				t.Errorf("denied show lacks the row %q:\n%s", want, r.stdout)
			}
		}
		r = mustRun(t, "", exitOK, "denied", "show", "--server", url, "--json", strconv.FormatUint(seqs[2], 10))
		noSecrets(t, r)
		var got struct {
			Subject string              `json:"subject"`
			Headers map[string][]string `json:"headers"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
			t.Fatal(err)
		}
		if got.Subject != "agentgw.denied.tenant_b.bad_signature" || got.Headers[header.Credential][0] != "[redacted]" || got.Headers[header.CredentialSealed][0] != "[sealed]" ||
			got.Headers[header.Detail][0] != "signature [31m does not verify" {
			t.Errorf("denied show --json = %+v", got)
		}
		r = mustRun(t, "", exitError, "denied", "show", "--server", url, "999")
		if !strings.Contains(r.stderr, "denied ls") {
			t.Errorf("a missing sequence does not say what to do:\n%s", r)
		}
		mustRun(t, "", exitUsage, "denied", "show", "--server", url, "seven")
	})
}

func TestDeniedNoStream(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	r := mustRun(t, "", exitError, "denied", "ls", "--server", srv.ClientURL())
	if !strings.Contains(r.stderr, "AGENTGW_DENIED does not exist") {
		t.Errorf("missing stream not explained:\n%s", r)
	}
}

// auditEvent publishes ev to agentgw.audit.<tenant>.
func auditEvent(t *testing.T, js jetstream.JetStream, ev audit.Event) {
	t.Helper()
	subj, err := subjects.Audit(ev.Tenant)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, js, &nats.Msg{Subject: subj, Data: data})
}

func TestAuditTail(t *testing.T) {
	srv, js := streams(t)
	url := srv.ClientURL()
	agent, _ := testAgent(t, "tenant_a")
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	traceA, traceB := strings.Repeat("a", 32), strings.Repeat("b", 32)
	events := []audit.Event{
		{Time: t0, Kind: audit.KindDecision, Route: "allow", Tenant: "tenant_a", Agent: agent, Target: "kb.search", TraceID: traceA, PolicyIDs: []string{"base.same_tenant_kind"}, LatencyMicros: 1500},
		{Time: t0.Add(time.Second), Kind: audit.KindDecision, Route: "deny", Reason: "bad_signature", Tenant: "tenant_b", Agent: agent, Target: "b.only", TraceID: traceB},
		{Time: t0.Add(2 * time.Second), Kind: audit.KindApprovalRequest, Route: "approval", Tenant: "tenant_a", Agent: agent, Target: "payments.send", TraceID: traceB, PolicyIDs: []string{"base.high_risk_approval", "x"}},
		{Time: t0.Add(3 * time.Second), Kind: audit.KindDecision, Route: "deny", Reason: "missing_scope", Tenant: "tenant_a", Agent: agent, Target: "kb.other", TraceID: strings.Repeat("c", 32)},
	}
	auditEvent(t, js, events[0])
	auditEvent(t, js, events[1])
	// The gateway writes the events of a batch and tenant as one message,
	// one per line.
	publish(t, js, &nats.Msg{Subject: "agentgw.audit.tenant_a", Data: events[3].AppendLine(events[2].AppendLine(nil))})
	publish(t, js, &nats.Msg{Subject: "agentgw.audit.tenant_a", Data: []byte("not json")})

	for _, tc := range []struct {
		name string
		args []string
		want []int
	}{
		{"all", nil, []int{0, 1, 2, 3}},
		{"tenant", []string{"--tenant", "tenant_a"}, []int{0, 2, 3}},
		{"trace", []string{"--trace", traceB}, []int{1, 2}},
		{"tenant+trace", []string{"--tenant", "tenant_a", "--trace", traceB}, []int{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRun(t, "", exitOK, append([]string{"audit", "tail", "--server", url}, tc.args...)...)
			lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
			if !strings.HasPrefix(lines[0], "TIME") || len(lines)-1 != len(tc.want) {
				t.Fatalf("audit tail %v: want %d rows\n%s", tc.args, len(tc.want), r)
			}
			for i, w := range tc.want {
				ev := events[w]
				f := strings.Fields(lines[i+1])
				if f[0] != stamp(ev.Time) || f[1] != ev.Kind || f[2] != ev.Route || f[4] != ev.Tenant || f[5] != short(agent) || f[6] != ev.Target {
					t.Errorf("row %d = %q; want event %+v", i, lines[i+1], ev)
				}
			}
		})
	}
	r := mustRun(t, "", exitOK, "audit", "tail", "--server", url, "--tenant", "tenant_a")
	if !strings.Contains(r.stdout, "base.same_tenant_kind") || !strings.Contains(r.stdout, "1.5ms") ||
		!strings.Contains(r.stdout, "base.high_risk_approval,x") || !strings.Contains(r.stderr, "not an audit event") {
		t.Errorf("audit tail lacks policy ids, latency or the skipped-event note:\n%s", r)
	}

	r = mustRun(t, "", exitOK, "audit", "tail", "--server", url, "--json", "--trace", traceA)
	var got audit.Event
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.TraceID != traceA || got.Agent != agent || got.LatencyMicros != 1500 {
		t.Errorf("audit tail --json = %+v, %v\n%s", got, err, r.stdout)
	}
	mustRun(t, "", exitUsage, "audit", "tail", "--server", url, "--trace", "ABC")
}

func TestAuditTailFollow(t *testing.T) {
	srv, js := streams(t)
	auditEvent(t, js, audit.Event{Time: time.Now(), Kind: audit.KindDecision, Route: "allow", Tenant: "tenant_a", Target: "kb.first"})

	cmd := exec.Command(cliBin, "audit", "tail", "--follow", "--server", srv.ClientURL(), "--tenant", "tenant_a")
	cmd.Env = cliEnv(t)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	waitFor := func(substr string) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("audit tail --follow ended before printing %q; stderr: %s", substr, stderr.String())
				}
				if strings.Contains(l, substr) {
					return
				}
			case <-timeout:
				_ = cmd.Process.Kill()
				t.Fatalf("audit tail --follow: no %q within 20s", substr)
			}
		}
	}
	waitFor("kb.first")
	auditEvent(t, js, audit.Event{Time: time.Now(), Kind: audit.KindDecision, Route: "deny", Reason: "revoked", Tenant: "tenant_a", Target: "kb.second"})
	auditEvent(t, js, audit.Event{Time: time.Now(), Kind: audit.KindDecision, Route: "deny", Tenant: "tenant_b", Target: "kb.other"})
	auditEvent(t, js, audit.Event{Time: time.Now(), Kind: audit.KindDecision, Route: "allow", Tenant: "tenant_a", Target: "kb.third"})
	waitFor("kb.second")
	waitFor("kb.third")
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("audit tail --follow after an interrupt: %v (want exit 0); stderr: %s", err, stderr.String())
	}
}

// hasRow reports whether a line of a table in out has exactly cells.
func hasRow(out string, cells ...string) bool {
	for _, l := range strings.Split(out, "\n") {
		if slices.Equal(strings.Fields(l), cells) {
			return true
		}
	}
	return false
}

// TestDeniedExportOutMode: --out ends a file of mode 0600, as the help
// says, even when a file of a wider mode was there: os.WriteFile kept
// the old mode, so an exported case file stayed world-readable.
func TestDeniedExportOutMode(t *testing.T) {
	srv, js := streams(t)
	agent, cred := testAgent(t, "tenant_a")
	body := []byte(`{"v":1,"payload":{"plain":{"query":"refund policy"}}}`)
	publish(t, js, deniedMsg{tenant: "tenant_a", agent: agent, code: reason.UnknownTarget, messageID: "msg-a-0000000000001",
		traceID: strings.Repeat("a", 32), target: "nope.target", detail: "no such target", credential: cred, body: body}.msg(t))
	auditEvent(t, js, audit.Event{Kind: audit.KindDecision, Tenant: "tenant_a", IngressSeq: 7, Agent: agent})
	dir := t.TempDir()
	out := filepath.Join(dir, "cases.yaml")
	if err := os.WriteFile(out, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, exitOK, "denied", "export", "-s", srv.ClientURL(), "--include-payload", "--out", out)
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("--out over a 0644 file: mode %v; want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(out); !strings.Contains(string(b), "unknown_target") {
		t.Errorf("--out holds %q; want the exported case", b)
	}
}
