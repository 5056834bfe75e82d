package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestOversizedBodyEndsWithoutItsBody: a body over max_body_bytes is
// denied oversized with a record that names the body (its digest and
// size) and does not carry it, nor the credential sealed to it nor the
// signature over it. As large as the ingress stream takes, and sent
// with no credential at all, its record with the body and the decision
// headers would be larger than the server's max_payload: it could never
// be stored, and the message was redelivered for ever, holding the
// consumer's ack floor. A record without its body cannot be replayed.
func TestOversizedBodyEndsWithoutItsBody(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	huge := bytes.Repeat([]byte("x"), int(h.nc.MaxPayload())-64)
	hugeSeq := h.publish(h.ingress(h.agent, "tenant_a"), huge, nil)
	signed := []byte(`{"pad":"` + strings.Repeat("x", 70<<10) + `"}`)
	signedSeq := h.send(signed)
	for _, c := range []struct {
		seq  uint64
		body []byte
	}{{hugeSeq, huge}, {signedSeq, signed}} {
		out := h.outputFor(c.seq)
		if got := reason.Code(out.Header.Get(header.Reason)); got != reason.Oversized || out.Subject != "agentgw.denied.tenant_a.oversized" {
			t.Fatalf("ingress %d: %s, reason %q; want agentgw.denied.tenant_a.oversized", c.seq, out.Subject, got)
		}
		if len(out.Data) != 0 {
			t.Errorf("ingress %d: the denied record holds %d bytes of body; want none", c.seq, len(out.Data))
		}
		sum := sha256.Sum256(c.body)
		if got, want := out.Header.Get(header.BodyDigest), "sha256:"+hex.EncodeToString(sum[:]); got != want {
			t.Errorf("ingress %d: %s = %q; want %q", c.seq, header.BodyDigest, got, want)
		}
		if got, want := out.Header.Get(header.BodyBytes), strconv.Itoa(len(c.body)); got != want {
			t.Errorf("ingress %d: %s = %q; want %q", c.seq, header.BodyBytes, got, want)
		}
		for _, k := range []string{header.CredentialSealed, header.CredentialSealedTo, header.Signature} {
			if out.Header.Get(k) != "" {
				t.Errorf("ingress %d: the record without its body keeps %s", c.seq, k)
			}
		}
		if ev := h.auditFor(c.seq); ev.Route != "deny" || ev.Reason != string(reason.Oversized) || ev.BodyDigest != out.Header.Get(header.BodyDigest) {
			t.Errorf("ingress %d: audit event %s %q, body digest %q; want deny oversized, the record's digest", c.seq, ev.Route, ev.Reason, ev.BodyDigest)
		}
	}
	h.wantReplayRefused(signedSeq)
	r, err := invariant.Wait(ctx, h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v (%s)", err, r)
	}
	h.stop()
	h.scanSecrets()
	h.validateAudit()
}

// TestMaxBodyBytesMustFitMaxPayload: a max_body_bytes whose largest
// output (maxOutputBytes) the connected server's max_payload would
// refuse stops the start with a config error naming both, before
// anything is consumed; one that fits starts.
func TestMaxBodyBytesMustFitMaxPayload(t *testing.T) {
	h := newHarness(t)
	srv := natstest.Start(t, natstest.Options{Configure: func(o *server.Options) { o.MaxPayload = 256 << 10 }})
	h.nc = natstest.Connect(t, srv)
	var err error
	h.js, err = jetstream.New(h.nc)
	must(t, err)
	h.cfg.Limits.MaxBodyBytes = 64 << 10 // the default: 6·64 KiB + 64 KiB is over 256 KiB
	gw, err := New(h.cfg, WithClock(h.clock.Now), WithConn(h.nc))
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- gw.Run(ctx) }()
	select {
	case err = <-ran:
	case <-gw.Ready():
		cancel()
		<-ran
		must(t, gw.Close())
		t.Fatal("the gateway started with max_body_bytes 64 KiB against max_payload 256 KiB")
	}
	cancel()
	must(t, gw.Close())
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Stage != StageValidate || !strings.Contains(err.Error(), "limits.max_body_bytes (65536)") ||
		!strings.Contains(err.Error(), "max_payload (262144)") || !strings.Contains(err.Error(), "at most 32768") {
		t.Fatalf("Run with max_body_bytes 64 KiB against max_payload 256 KiB = %v; want a config error naming both and the largest that fits", err)
	}
	if names := h.streamNames(); len(names) != 0 {
		t.Errorf("the refused start created streams %v", names)
	}
	// 6·32 KiB + 64 KiB is exactly 256 KiB: it starts and decides.
	h.cfg.Limits.MaxBodyBytes = 32 << 10
	h.start()
	<-h.gw.Ready()
	if out := h.outputFor(h.send(h.body(nil))); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("a message under the fitting limit went to %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
}

// largeCatalog adds to testCatalog a target held for approval whose
// approver-visible field is a list of strings, and a plain target
// re-sealed to its consumer, so outputs can be made as large as a body
// allows.
const largeCatalog = testCatalog + `
  - name: notes.review
    kind: tool_call
    scope: kb:read
    tenants: [tenant_a]
    plain: true
    approval: true
    payload_schema: '{"type":"object","properties":{"notes":{"type":"array","items":{"type":"string"}}},"additionalProperties":false}'
    approver_visible: [notes]
  - name: notes.file
    kind: tool_call
    scope: kb:read
    tenants: [tenant_a]
    plain: true
    consumer_xkey: %[1]s
`

// TestLargestOutputsWithinBound holds maxOutputBytes to the outputs the
// gateway really makes for the largest body the limit admits: an
// approval request whose approver-visible strings are all '<' (which
// encoding/json writes in six bytes), a plain payload re-sealed to a
// consumer, and a denied record keeping a credential header as long as
// a credential can be. Each is below the bound, and the approval request
// is above 5·B, so the bound's factor is not slack. A credential header
// longer than a credential can be is not kept.
func TestLargestOutputsWithinBound(t *testing.T) {
	h := newHarness(t)
	must(t, os.WriteFile(h.cfg.Catalog, fmt.Appendf(nil, largeCatalog, h.consumer.xkey), 0o600))
	h.start()
	maxBody := h.cfg.Limits.MaxBodyBytes
	bound := maxOutputBytes(maxBody)
	// The largest body of target whose notes are strings of c.
	fill := func(target string, c string) []byte {
		var notes []string
		for n := 0; ; n++ {
			notes = append(notes, strings.Repeat(c, 16000)) // under the 16 KiB string limit
			body := h.body(func(b *envelope.Builder) {
				b.Capability, b.Target = envelope.ToolCall, target
				raw := []byte(`{"notes":["` + strings.Join(notes, `","`) + `"]}`) // '<' as is, not as \u003c
				b.Payload, b.Limits = envelope.Payload{Plain: raw}, envelope.Limits{MaxBytes: 2 * maxBody}
			})
			if len(body) > maxBody {
				notes[len(notes)-1] = notes[len(notes)-1][:16000-(len(body)-maxBody)]
				break
			}
		}
		body := h.body(func(b *envelope.Builder) {
			b.Capability, b.Target = envelope.ToolCall, target
			raw := []byte(`{"notes":["` + strings.Join(notes, `","`) + `"]}`) // '<' as is, not as \u003c
			b.Payload, b.Limits = envelope.Payload{Plain: raw}, envelope.Limits{MaxBytes: 2 * maxBody}
		})
		if len(body) != maxBody {
			t.Fatalf("filled body is %d bytes; want %d", len(body), maxBody)
		}
		return body
	}
	held := h.outputFor(h.send(fill("notes.review", "<")))
	delivered := h.outputFor(h.send(fill("notes.file", "a")))
	body := fill("notes.file", "b")
	hdr := h.signed(h.agent, h.agent.token, body)
	hdr.Set(header.Credential, strings.Repeat("c", identity.MaxTokenSize))
	hdr.Set(header.Signature, strings.Repeat("s", maxKeptSignature))
	denied := h.outputFor(h.publish(h.ingress(h.agent, "tenant_a"), body, hdr))
	hdr.Set(header.Credential, strings.Repeat("c", identity.MaxTokenSize+1))
	hdr.Set(header.Signature, strings.Repeat("s", maxKeptSignature+1))
	unkept := h.outputFor(h.publish(h.ingress(h.agent, "tenant_a"), body, hdr))
	for _, c := range []struct {
		name  string
		m     *jetstream.RawStreamMsg
		route string
		least int
	}{
		{"approval request", held, "approval", 5 * maxBody},
		{"delivery", delivered, "allow", 2 * maxBody},
		{"denied record", denied, "deny", maxBody + 20000},
	} {
		size := wireSize(c.m.Header, c.m.Data)
		t.Logf("%s: %d bytes (body %d, bound %d)", c.name, size, maxBody, bound)
		if c.m.Header.Get(header.Route) != c.route || int64(size) > bound || size < c.least {
			t.Errorf("%s: route %s, %d bytes; want %s, between %d and maxOutputBytes(%d) = %d",
				c.name, c.m.Header.Get(header.Route), size, c.route, c.least, maxBody, bound)
		}
	}
	if denied.Header.Get(header.CredentialSealed) == "" || denied.Header.Get(header.Signature) == "" {
		t.Error("a credential and a signature header of the largest kept length were not kept")
	}
	if unkept.Header.Get(header.CredentialSealed) != "" || unkept.Header.Get(header.Signature) != "" {
		t.Error("a credential or a signature header longer than any valid one was kept")
	}
}

// TestRefusedReemitEndsInASmallRecord: an ingress message whose recorded
// outcome (written, say, by a gateway before the oversized fix, or under
// a larger max_payload) holds a denied record the server now refuses as
// too large (nats.ErrMaxPayload) is not redelivered for ever: the
// record is narrowed to one that names the body instead of carrying it,
// same subject, reason and Nats-Msg-Id, and the message ends there, once.
func TestRefusedReemitEndsInASmallRecord(t *testing.T) {
	h := newHarness(t)
	must(t, EnsureStreams(context.Background(), h.js, h.cfg.Streams, h.cfg.Consumer.Partitions))
	body := bytes.Repeat([]byte("x"), int(h.nc.MaxPayload())-64)
	seq := h.publish(h.ingress(h.agent, "tenant_a"), body, nil)
	rec := nats.NewMsg("agentgw.denied.tenant_a.oversized")
	rec.Data = body
	for k, v := range map[string]string{
		header.MsgID: "agw-recorded-with-its-body", header.Route: "deny", header.IngressSeq: strconv.FormatUint(seq, 10),
		header.Tenant: "tenant_a", header.Agent: h.agent.pub, header.Reason: string(reason.Oversized), header.Stage: "envelope",
		header.Detail: "body too large",
	} {
		rec.Header.Set(k, v)
	}
	ev := audit.Event{Time: h.clock.Now(), Kind: audit.KindDecision, Route: "deny", Reason: string(reason.Oversized), IngressSeq: seq, Tenant: "tenant_a", Output: rec.Subject}
	am := nats.NewMsg("agentgw.audit.tenant_a")
	am.Data = ev.AppendJSON(nil)
	am.Header.Set(header.MsgID, "agw-recorded-with-its-body.audit")
	outcome, err := encodeOutputs([]*nats.Msg{rec, am}, body)
	must(t, err)
	h.beforeRun = func(gw *Gateway) {
		b := gw.ledger.NewBatch()
		defer b.Close()
		must(t, b.PutOutcome(seq, outcome))
		must(t, b.Commit())
	}
	h.start()
	out := h.outputFor(seq)
	sum := sha256.Sum256(body)
	if out.Subject != rec.Subject || out.Header.Get(header.MsgID) != "agw-recorded-with-its-body" || out.Header.Get(header.Reason) != string(reason.Oversized) {
		t.Errorf("re-emitted record: %s, id %s, reason %s; want the recorded one's", out.Subject, out.Header.Get(header.MsgID), out.Header.Get(header.Reason))
	}
	if len(out.Data) != 0 || out.Header.Get(header.BodyDigest) != "sha256:"+hex.EncodeToString(sum[:]) || out.Header.Get(header.BodyBytes) != strconv.Itoa(len(body)) {
		t.Errorf("re-emitted record holds %d bytes, names %q (%s bytes); want the body named, not held", len(out.Data), out.Header.Get(header.BodyDigest), out.Header.Get(header.BodyBytes))
	}
	if ev := h.auditFor(seq); ev.Reason != string(reason.Oversized) {
		t.Errorf("audit event reason %q; want the recorded one", ev.Reason)
	}
	r, err := invariant.Wait(context.Background(), h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v (%s)", err, r)
	}
	h.waitAcked(seq)
}

// TestOutputTooLargeForItsStream: output streams whose max_msg_size an
// operator set below what the gateway publishes refuse outputs with a
// PubAck error. Each message still ends once: a delivery or an approval
// request refused so is replaced by a denial, internal_error, with an
// audit event of its own (and the hold of the approval is removed, so
// it cannot expire into a second end); a denied record refused so is
// narrowed to one that names its body.
func TestOutputTooLargeForItsStream(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // an allowed message denied for its size is logged as an error
	h.start()
	<-h.gw.Ready()
	ctx := context.Background()
	for stream, size := range map[string]int32{StreamCap: 1024, StreamApproval: 512, StreamDenied: 2048} {
		s, err := h.js.Stream(ctx, stream)
		must(t, err)
		cfg := s.CachedInfo().Config
		cfg.MaxMsgSize = size
		_, err = h.js.UpdateStream(ctx, cfg)
		must(t, err)
	}
	allowed := h.send(h.body(nil))
	held := h.send(h.body(func(b *envelope.Builder) {
		b.Capability, b.Target = envelope.ToolCall, "payments.send"
		b.Payload = envelope.Payload{Plain: []byte(`{"amount_cents":500}`)}
	}))
	padded := h.body(func(b *envelope.Builder) {
		b.Target = "no.such.target"
		b.Payload = envelope.Payload{Plain: []byte(`{"q":"` + strings.Repeat("q", 3000) + `"}`)}
	})
	denied := h.send(padded)
	for _, seq := range []uint64{allowed, held} {
		out := h.outputFor(seq)
		if out.Subject != "agentgw.denied.tenant_a.internal_error" || out.Header.Get(header.Route) != "deny" {
			t.Fatalf("ingress %d: %s route %q; want agentgw.denied.tenant_a.internal_error", seq, out.Subject, out.Header.Get(header.Route))
		}
		if out.Header.Get(header.Tenant) != "tenant_a" || out.Header.Get(header.Agent) != h.agent.pub || out.Header.Get(header.MessageID) == "" {
			t.Errorf("ingress %d: the denial does not say whose message it is: %v", seq, out.Header)
		}
		found := false
		for _, ev := range h.auditEvents() {
			found = found || ev.IngressSeq == seq && ev.Route == "deny" && ev.Reason == string(reason.Internal) && ev.Output == out.Subject
		}
		if !found {
			t.Errorf("ingress %d: no audit event of its denial", seq)
		}
	}
	heldID := holdID("tenant_a", h.outputFor(held).Header.Get(header.MessageID))
	must(t, h.gw.ledger.ScanHolds(func(hd store.Hold) error {
		if hd.ID == heldID {
			t.Errorf("the hold of the request denied for its approval request's size is still there")
		}
		return nil
	}))
	// None of these records holds the body it denies: nothing to replay.
	for _, seq := range []uint64{allowed, held, denied} {
		h.wantReplayRefused(seq)
	}
	out := h.outputFor(denied)
	sum := sha256.Sum256(padded)
	if out.Subject != "agentgw.denied.tenant_a.unknown_target" || len(out.Data) != 0 || out.Header.Get(header.BodyDigest) != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("denied record refused as too large became %s with %d bytes, naming %q; want the same record naming its body",
			out.Subject, len(out.Data), out.Header.Get(header.BodyDigest))
	}
	r, err := invariant.Wait(ctx, h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v (%s)", err, r)
	}
	h.stop()
	h.scanSecrets()
	h.validateAudit()
}

// wantReplayRefused checks that operator replay, dry or not, of the
// denial of ingress seq is refused replay_refused: its record holds no
// body to re-submit.
func (h *harness) wantReplayRefused(seq uint64) {
	h.t.Helper()
	op := h.operator("operator:replay")
	for _, dry := range []bool{true, false} {
		if _, err := op.Replay(context.Background(), h.deniedSeq(seq), dry); err == nil || !strings.Contains(err.Error(), string(reason.ReplayRefused)) {
			h.t.Errorf("replay (dry run %v) of the denial of ingress %d = %v; want %s", dry, seq, err, reason.ReplayRefused)
		}
	}
}

// TestRefusedReleaseNamesTheHeldRequest: the delivery of a held request
// that an approver's grant released is refused as too large (the
// capability stream's max_msg_size). It carries the answer's ingress
// sequence, yet the internal_error denial and its audit event that stand
// for it name the held request (its agent, ingress subject, target,
// message id and trace) and the approver that released it, never the
// approver as the agent nor the held message id as the target: when the
// release is decided and refused at once, and when its recorded outcome
// is re-emitted (the answer not decided again) and refused then.
func TestRefusedReleaseNamesTheHeldRequest(t *testing.T) {
	for _, reemit := range []bool{false, true} {
		t.Run(map[bool]string{false: "decided", true: "re-emitted"}[reemit], func(t *testing.T) {
			f := newApprovalFlow(t, func(f *approvalFlow) { f.allowErrors = true })
			ctx := context.Background()
			heldOut := f.outputFor(f.heldSeq)
			capStream := func(mod func(*jetstream.StreamConfig)) {
				s, err := f.js.Stream(ctx, StreamCap)
				must(t, err)
				cfg := s.CachedInfo().Config
				mod(&cfg)
				_, err = f.js.UpdateStream(ctx, cfg)
				must(t, err)
			}
			tooSmall := func(c *jetstream.StreamConfig) { c.MaxMsgSize = 256 }
			if reemit {
				// The first publish of the release fails for another
				// reason (the stream is full), so the outcome is recorded
				// and re-emitted by the redelivery.
				_, err := f.js.Publish(ctx, "agentgw.cap.tenant_a.kb.search", []byte("{}"))
				must(t, err)
				capStream(func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = 1, jetstream.DiscardNew })
			} else {
				capStream(tooSmall)
			}
			seq := f.answer(f.approver, f.grant(), f.req.HeldMessageID)
			if reemit {
				waitFor(t, func() bool {
					return strings.Contains(f.logs.String(), fmt.Sprintf(`"ingress_seq":%d,"subject":"agentgw.cap.`, seq))
				})
				capStream(func(c *jetstream.StreamConfig) {
					c.MaxMsgs, c.Discard = -1, jetstream.DiscardOld
					tooSmall(c)
				})
				s, err := f.js.Stream(ctx, StreamCap)
				must(t, err)
				must(t, s.Purge(ctx)) // the filler is no message's output
			}
			out := f.outputFor(seq)
			if out.Subject != "agentgw.denied.tenant_a.internal_error" {
				t.Fatalf("refused release: %s (%s); want agentgw.denied.tenant_a.internal_error", out.Subject, out.Header.Get(header.Reason))
			}
			want := map[string]string{
				header.Tenant: "tenant_a", header.Agent: f.agent.pub, header.Target: "payments.send",
				header.MessageID: f.req.HeldMessageID, header.TraceID: heldOut.Header.Get(header.TraceID),
			}
			if !reemit { // a delivery does not name it; the held record did
				want[header.IngressSubject] = heldOut.Header.Get(header.IngressSubject)
			}
			for k, v := range want {
				if got := out.Header.Get(k); got != v {
					t.Errorf("denied record %s = %q; want the held request's %q", k, got, v)
				}
			}
			if got := out.Header.Get(header.IngressSubject); strings.HasSuffix(got, "."+f.approver.pub) {
				t.Errorf("denied record names the approver's ingress subject %s", got)
			}
			if !strings.Contains(out.Header.Get(header.Detail), f.approver.pub) {
				t.Errorf("detail %q does not name the approver that released it", out.Header.Get(header.Detail))
			}
			var ev *audit.Event
			for _, e := range f.auditEvents() {
				if e.IngressSeq == seq && e.Reason == string(reason.Internal) {
					ev = &e
				}
			}
			if ev == nil {
				t.Fatal("no audit event of the refused release's denial")
			}
			if ev.Agent != f.agent.pub || ev.Tenant != "tenant_a" || ev.Target != "payments.send" || ev.MessageID != f.req.HeldMessageID ||
				ev.Approver != f.approver.pub || ev.HeldMessageID != f.req.HeldMessageID || ev.TraceID != want[header.TraceID] {
				t.Errorf("audit event of the refused release: agent %s tenant %s target %s message %s approver %s held %s trace %s; want the held request's, approved by %s",
					ev.Agent, ev.Tenant, ev.Target, ev.MessageID, ev.Approver, ev.HeldMessageID, ev.TraceID, f.approver.pub)
			}
			f.endApproval(0)
		})
	}
}
