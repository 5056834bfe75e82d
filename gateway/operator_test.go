package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

func (h *harness) operator(scopes ...string) *client.Operator {
	h.t.Helper()
	op := newActor(h.t)
	tok := h.credential(h.issuer, op, "tenant_a", scopes, time.Hour, "")
	path := filepath.Join(h.dir, "operator-"+op.pub[:8]+".creds")
	must(h.t, identity.WriteCreds(path, tok, identity.Seed(op.seed)))
	o, err := client.NewOperator(h.nc, path, "tenant_a")
	must(h.t, err)
	return o
}

// deniedSeq is the denied-stream sequence of an ingress message's denial.
func (h *harness) deniedSeq(ingress uint64) uint64 {
	h.t.Helper()
	m := h.outputFor(ingress)
	if !strings.HasPrefix(m.Subject, "agentgw.denied.") {
		h.t.Fatalf("ingress %d went to %s, not the denied stream", ingress, m.Subject)
	}
	return m.Sequence
}

func TestOperatorReplay(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReloadInterval = 50 * time.Millisecond
	h.start()
	ctx := context.Background()
	// Denied by policy, then the policy is fixed.
	forbidden := h.send(h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" }))
	h.wantReason(forbidden, reason.PolicyDenied)
	denied := h.deniedSeq(forbidden)

	op := h.operator("operator:replay")
	if _, err := h.operator("kb:read").Replay(ctx, denied, true); err == nil || !strings.Contains(err.Error(), string(reason.MissingScope)) {
		t.Fatalf("replay without operator scope = %v; want missing_scope", err)
	}
	res, err := op.Replay(ctx, denied, true)
	must(t, err)
	if res.Route != "deny" || res.Reason != string(reason.PolicyDenied) {
		t.Fatalf("dry run under the old policy = %+v; want deny policy_denied", res)
	}
	v1 := h.gw.Policy().Version()
	replaceFile(t, h.cfg.Policies[0], strings.Replace(testPolicy, "@id(\"forbid-ops\")\nforbid (principal, action, resource == Target::\"ops.forbidden\");", "", 1))
	waitFor(t, func() bool { return h.gw.Policy().Version() != v1 })
	res, err = op.Replay(ctx, denied, true)
	must(t, err)
	if res.Route != "allow" {
		t.Fatalf("dry run under the new policy = %+v; want allow", res)
	}
	if n := len(h.all(StreamCap)); n != 0 {
		t.Fatalf("a dry run delivered %d messages", n)
	}
	// The real replay goes through every gate and is delivered once.
	res, err = op.Replay(ctx, denied, false)
	must(t, err)
	out := h.outputFor(res.IngressSeq)
	if !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.ops.forbidden") {
		t.Fatalf("replayed message went to %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	if ev := h.auditFor(res.IngressSeq); ev.Operator == "" || ev.Route != "allow" {
		t.Errorf("replay decision audit = %+v; want the operator named", ev)
	}
	// Asking again is refused; a captured copy of the replay is refused by
	// the ledger.
	if _, err := op.Replay(ctx, denied, false); err == nil {
		t.Error("a second replay of the same denied message was accepted")
	}
	in, err := h.js.Stream(ctx, StreamIngress)
	must(t, err)
	orig, err := in.GetMsg(ctx, res.IngressSeq)
	must(t, err)
	copyMsg := nats.NewMsg(fmt.Sprintf("agentgw.in.tenant_a.%s", h.agent.pub))
	copyMsg.Data = orig.Data
	for _, k := range []string{header.Credential, header.Signature, header.Replay, header.ReplayCredential} {
		copyMsg.Header.Set(k, orig.Header.Get(k))
	}
	ack, err := h.js.PublishMsg(ctx, copyMsg)
	must(t, err)
	h.wantReason(ack.Sequence, reason.ReplayRefused)
	// A forged authorization is refused.
	copyMsg.Header.Set(header.Replay, "1."+h.agent.pub+".9999999999.AAAA")
	ack, err = h.js.PublishMsg(ctx, copyMsg)
	must(t, err)
	h.wantReason(ack.Sequence, reason.ReplayRefused)

	// Still-expired stays denied.
	h.clock.Advance(-10 * time.Minute)
	old := h.body(func(b *envelope.Builder) { b.Target = "no.such.target" })
	h.clock.Advance(10 * time.Minute)
	expired := h.deniedSeq(h.send(old))
	res, err = op.Replay(ctx, expired, false)
	must(t, err)
	h.wantReason(res.IngressSeq, reason.MessageExpired)

	r, err := invariant.Wait(ctx, h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
	h.stop()
	h.scanSecrets()
	h.validateAudit()
}

// TestOperatorOtherTenantAuditedAtHome: an operator of tenant_a asks
// about tenant_b. The refusal (tenant_mismatch) is audited in tenant_a's
// stream, the operator's own, and nothing is written into tenant_b's.
func TestOperatorOtherTenantAuditedAtHome(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	denied := h.deniedSeq(h.send(h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" })))
	op := newActor(t)
	tok := h.credential(h.issuer, op, "tenant_a", []string{"operator:replay"}, time.Hour, "")
	path := filepath.Join(h.dir, "operator-other.creds")
	must(t, identity.WriteCreds(path, tok, identity.Seed(op.seed)))
	o, err := client.NewOperator(h.nc, path, "tenant_b")
	must(t, err)
	if _, err := o.Replay(ctx, denied, true); err == nil || !strings.Contains(err.Error(), string(reason.TenantMismatch)) {
		t.Fatalf("replay in another tenant = %v; want %s", err, reason.TenantMismatch)
	}
	var home int
	for _, m := range h.all(StreamAudit) {
		if !strings.Contains(string(m.Data), `"operator_replay"`) {
			continue
		}
		if m.Subject != "agentgw.audit.tenant_a" {
			t.Errorf("operator event filed on %s; want agentgw.audit.tenant_a", m.Subject)
		}
		home++
	}
	if home != 1 {
		t.Errorf("operator events = %d; want 1", home)
	}
}

// TestOperatorAnswersInboxesOnly: an operator request whose reply subject
// is not an inbox (a subject the gateway's connection may publish) is
// dropped unanswered. The operator service handles requests in order, so
// once the next request is answered the first has been handled.
func TestOperatorAnswersInboxesOnly(t *testing.T) {
	h := newHarness(t)
	h.start()
	denied := h.deniedSeq(h.send(h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" })))
	spy := make(chan *nats.Msg, 8)
	sub, err := h.nc.ChanSubscribe("agentgw.audit.tenant_b", spy)
	must(t, err)
	defer sub.Unsubscribe()
	m := nats.NewMsg(operator.Subject)
	m.Reply, m.Data = "agentgw.audit.tenant_b", []byte("junk")
	must(t, h.nc.PublishMsg(m))
	if _, err := h.operator("operator:replay").Replay(context.Background(), denied, true); err != nil {
		t.Fatalf("dry run after it: %v", err)
	}
	must(t, h.nc.Flush())
	select {
	case m := <-spy:
		t.Errorf("the operator service published %q on %s, a subject a requester named", m.Data, m.Subject)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestOperatorRequestReadStrictly sends hand-written operator requests,
// each signed by an operator holding operator:replay: a request a lenient
// decoder would read (a case variant, a duplicate, a time with an
// offset, a missing member) is malformed_envelope, and a signature that
// is not canonical base64url (padded, or with non-zero spare bits) is
// bad_signature, as for envelopes.
func TestOperatorRequestReadStrictly(t *testing.T) {
	h := newHarness(t)
	h.start()
	denied := h.deniedSeq(h.send(h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" })))
	op := newActor(t)
	tok := h.credential(h.issuer, op, "tenant_a", []string{"operator:replay"}, time.Hour, "")
	now := h.clock.Now().UTC().Truncate(time.Second)
	issued, expires := now.Format(time.RFC3339), now.Add(time.Minute).Format(time.RFC3339)
	request := func(members string) string {
		return fmt.Sprintf(`{"v":1,"request_id":"%s",%s}`, envelope.NewMessageID(), members)
	}
	valid := fmt.Sprintf(`"tenant":"tenant_a","denied_seq":%d,"dry_run":true,"issued_at":"%s","expires_at":"%s"`, denied, issued, expires)
	ask := func(body string, sig func(string) string) operator.Result {
		t.Helper()
		m := nats.NewMsg(operator.Subject)
		m.Data = []byte(body)
		m.Header.Set(header.Credential, tok.Reveal())
		m.Header.Set(header.Signature, sig(base64.RawURLEncoding.EncodeToString(op.signr.Sign(operator.SigningInput(m.Data)))))
		resp, err := h.nc.RequestMsg(m, 10*time.Second)
		must(t, err)
		var res operator.Result
		must(t, json.Unmarshal(resp.Data, &res))
		return res
	}
	same := func(s string) string { return s }
	if res := ask(request(valid), same); res.Code != "" || res.Route != "deny" {
		t.Fatalf("exact request = %+v; want a dry run answered deny", res)
	}
	offset := now.Format("2006-01-02T15:04:05") + "+00:00"
	for name, members := range map[string]string{
		"deny/case-variant":   fmt.Sprintf(`"tenant":"tenant_a","Denied_Seq":%d,"dry_run":true,"issued_at":"%s","expires_at":"%s"`, denied, issued, expires),
		"deny/case-duplicate": valid + `,"DRY_RUN":false`,
		"deny/duplicate":      `"denied_seq":1,` + valid,
		"deny/unknown":        valid + `,"note":"x"`,
		"deny/offset-time":    fmt.Sprintf(`"tenant":"tenant_a","denied_seq":%d,"dry_run":true,"issued_at":"%s","expires_at":"%s"`, denied, offset, expires),
		"deny/lower-z":        fmt.Sprintf(`"tenant":"tenant_a","denied_seq":%d,"dry_run":true,"issued_at":"%s","expires_at":"%s"`, denied, strings.Replace(issued, "Z", "z", 1), expires),
		"deny/no-dry-run":     fmt.Sprintf(`"tenant":"tenant_a","denied_seq":%d,"issued_at":"%s","expires_at":"%s"`, denied, issued, expires),
		"deny/seq-fraction":   fmt.Sprintf(`"tenant":"tenant_a","denied_seq":%d.0,"dry_run":true,"issued_at":"%s","expires_at":"%s"`, denied, issued, expires),
		"deny/null-tenant":    fmt.Sprintf(`"tenant":null,"denied_seq":%d,"dry_run":true,"issued_at":"%s","expires_at":"%s"`, denied, issued, expires),
	} {
		if res := ask(request(members), same); res.Code != string(reason.MalformedEnvelope) {
			t.Errorf("request %s = %+v; want malformed_envelope", name, res)
		}
	}
	for name, sig := range map[string]func(string) string{
		"deny/padded": func(s string) string { return s + "==" },
		"deny/spare-bits": func(s string) string {
			// 64 bytes leave 4 unused bits in the last character; setting
			// one decodes to the same bytes under a lenient decoder.
			const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
			last := strings.IndexByte(alphabet, s[len(s)-1])
			return s[:len(s)-1] + string(alphabet[last|1])
		},
	} {
		if res := ask(request(valid), sig); res.Code != string(reason.BadSignature) {
			t.Errorf("signature %s: %+v; want bad_signature", name, res)
		}
	}
}

// TestReplayAuthOneEncoding: the Agentgw-Replay header is read one way
// only: its numbers in canonical decimal and its signature canonical
// base64url of exactly 86 characters. A lenient reader took a signature
// with a line break in it (Go's base64 skips CR and LF) and "07" for 7.
func TestReplayAuthOneEncoding(t *testing.T) {
	h := newHarness(t)
	h.start()
	<-h.gw.Ready()
	op := h.replayOperator()
	body := h.body(nil)
	now := h.clock.Now()
	exp := now.Add(time.Minute).Unix()
	genuine := nats.Header{}
	h.setReplayAuth(genuine, body, 7, op, exp)
	sig := genuine.Get(header.Replay)[strings.LastIndexByte(genuine.Get(header.Replay), '.')+1:]
	auth := func(v string) (string, int64, error) {
		it := &item{hdr: nats.Header{}, body: body}
		it.hdr.Set(header.Replay, v)
		it.hdr.Set(header.ReplayCredential, genuine.Get(header.ReplayCredential))
		return h.gw.replayAuth(it)
	}
	if who, until, err := auth(fmt.Sprintf("7.%s.%d.%s", op.pub, exp, sig)); err != nil || who != op.pub || until != exp {
		t.Fatalf("genuine authorization = %q, %d, %v; want the operator, %d", who, until, err, exp)
	}
	for name, v := range map[string]string{
		"signature with a line break":  fmt.Sprintf("7.%s.%d.%s\n%s", op.pub, exp, sig[:40], sig[40:]),
		"sequence with a leading zero": fmt.Sprintf("07.%s.%d.%s", op.pub, exp, sig),
		"expiry with a leading zero":   fmt.Sprintf("7.%s.0%d.%s", op.pub, exp, sig),
		"expiry with a plus sign":      fmt.Sprintf("7.%s.+%d.%s", op.pub, exp, sig),
	} {
		if _, _, err := auth(v); !errors.Is(err, reason.ReplayRefused) {
			t.Errorf("%s: replayAuth = %v; want %s", name, err, reason.ReplayRefused)
		}
	}
}

// TestReplayAuthLongHeaderBoundedMemory: an Agentgw-Replay header of a
// megabyte of dots, read before anything is authenticated, is refused
// without a part allocated per dot.
func TestReplayAuthLongHeaderBoundedMemory(t *testing.T) {
	it := &item{hdr: nats.Header{header.Replay: []string{strings.Repeat(".", 1<<20)}}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var err error
	for range 10 {
		_, _, err = (&Gateway{}).replayAuth(it)
	}
	runtime.ReadMemStats(&after)
	if !errors.Is(err, reason.ReplayRefused) {
		t.Fatalf("replayAuth(1 MiB of dots) = %v; want %v", err, reason.ReplayRefused)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("10 refusals allocated %d bytes; want less than the header's size", got)
	}
}

// TestReplayIDNotSquattable: JetStream de-duplicates a Nats-Msg-Id over
// the whole ingress stream. A publisher of another tenant that stores
// the ids a re-submission could take, before the operator asks, does
// not make the replay refused as already re-submitted.
func TestReplayIDNotSquattable(t *testing.T) {
	h := newHarness(t)
	h.cfg.ReloadInterval = 50 * time.Millisecond
	h.start()
	ctx := context.Background()
	forbidden := h.send(h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" }))
	denied := h.deniedSeq(forbidden)

	other := newActor(t)
	for _, id := range []string{fmt.Sprintf("agw-replay-%d", denied), fmt.Sprintf("agw-replay-%d-", denied)} {
		m := nats.NewMsg(h.ingress(other, "tenant_b"))
		m.Data = []byte("{}")
		m.Header.Set(header.MsgID, id)
		ack, err := h.js.PublishMsg(ctx, m)
		must(t, err)
		h.outputFor(ack.Sequence)
	}

	v1 := h.gw.Policy().Version()
	replaceFile(t, h.cfg.Policies[0], strings.Replace(testPolicy, "@id(\"forbid-ops\")\nforbid (principal, action, resource == Target::\"ops.forbidden\");", "", 1))
	waitFor(t, func() bool { return h.gw.Policy().Version() != v1 })
	op := h.operator("operator:replay")
	res, err := op.Replay(ctx, denied, true)
	must(t, err)
	if res.Route != "allow" {
		t.Fatalf("dry run = %+v; want allow", res)
	}
	res, err = op.Replay(ctx, denied, false)
	if err != nil {
		t.Fatalf("replay after another tenant stored agw-replay-%d: %v", denied, err)
	}
	if out := h.outputFor(res.IngressSeq); !strings.HasPrefix(out.Subject, "agentgw.cap.tenant_a.ops.forbidden") {
		t.Fatalf("replayed message went to %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	// Still once: the second request finds the first re-submission.
	if res, err := op.Replay(ctx, denied, true); err != nil || res.Reason != string(reason.ReplayRefused) {
		t.Errorf("dry run after the replay = %+v, %v; want replay_refused", res, err)
	}
	if _, err := op.Replay(ctx, denied, false); err == nil {
		t.Error("a second replay of the same denied message was accepted")
	}
	h.stop()
	h.scanSecrets()
}

// TestDryRunLeavesNoConsumer: a dry run reads the agent's recent ingress
// with a consumer of its own, and deletes it.
func TestDryRunLeavesNoConsumer(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	denied := h.deniedSeq(h.send(h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" })))
	count := func() int {
		s, err := h.js.Stream(ctx, StreamIngress)
		must(t, err)
		n := 0
		for range s.ConsumerNames(ctx).Name() {
			n++
		}
		return n
	}
	before := count()
	op := h.operator("operator:replay")
	for range 5 {
		_, err := op.Replay(ctx, denied, true)
		must(t, err)
	}
	// nats.go deletes the consumers an ordered consumer replaces in the
	// background: the count settles, where a consumer left behind would
	// stay for its inactivity threshold (minutes).
	after := count()
	for deadline := time.Now().Add(5 * time.Second); after != before && time.Now().Before(deadline); after = count() {
		time.Sleep(50 * time.Millisecond)
	}
	if after != before {
		t.Errorf("consumers on the ingress stream: %d before 5 dry runs, %d after", before, after)
	}
	h.stop()
}

// TestDryRunTracesNothing: a dry run decides nothing, so it exports no
// span: none would join the denied message's trace as a decision, nor
// gate spans under a root that is never ended.
func TestDryRunTracesNothing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	h := newHarness(t)
	h.opts = append(h.opts, WithTracerProvider(tp))
	h.start()
	ctx := context.Background()
	denied := h.deniedSeq(h.send(h.body(func(b *envelope.Builder) { b.Capability, b.Target = envelope.ToolCall, "ops.forbidden" })))
	op := h.operator("operator:replay")
	must(t, tp.ForceFlush(ctx))
	exp.Reset()
	if _, err := op.Replay(ctx, denied, true); err != nil {
		t.Fatal(err)
	}
	must(t, tp.ForceFlush(ctx))
	if spans := exp.GetSpans(); len(spans) != 0 {
		t.Errorf("a dry run exported %d spans, the first %s", len(spans), spans[0].Name)
	}
	h.stop()
}
