package demo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/devenv"
	"github.com/agentgw/agentgw/subjects"
)

// Row is one message of the scenario and what the gateway decided.
type Row struct {
	Step     int      `json:"step"`
	Who      string   `json:"who"`
	What     string   `json:"what"`
	Decision string   `json:"decision"`
	Reason   string   `json:"reason,omitempty"`
	Policy   []string `json:"policy_ids,omitempty"`
	Where    string   `json:"where"`
	Seq      uint64   `json:"ingress_seq"`
}

// Run plays the scenario against the dev server at url (the one
// devenv.StartServer runs, with the consumers of devenv.Provision); each
// row is passed to emit as soon as it is decided. Every identity connects
// as its own NATS user, as a real deployment's would: the agent, the
// approver and the refunds tool as nkey users of the tenant's account
// (their agentgw keys), the operator in OPS. opts are added to every
// connection (nats.InProcessServer, say).
func Run(ctx context.Context, url string, m *devenv.Material, emit func(Row), opts ...nats.Option) error {
	s, err := newScene(url, m, opts)
	if err != nil {
		return err
	}
	defer s.close()
	w, err := watchAudit(ctx, s.opJS)
	if err != nil {
		return err
	}
	defer w.stop()
	step := 0
	record := func(who, what string, seq uint64) (audit.Event, error) {
		ev, err := w.wait(ctx, seq)
		if err != nil {
			return ev, fmt.Errorf("demo: %s: %w", what, err)
		}
		step++
		emit(Row{Step: step, Who: who, What: what, Decision: ev.Route, Reason: ev.Reason, Policy: ev.PolicyIDs, Where: ev.Output, Seq: seq})
		return ev, nil
	}
	type scenario struct {
		who, what string
		send      func() (uint64, error)
	}
	var refundBody []byte
	var refundHdr nats.Header
	steps := []scenario{
		{"agent", "draft refund 25.00 (sealed)", func() (uint64, error) {
			body, hdr, err := s.signed(func(b *envelope.Builder) error { return s.sealRefund(b, 2500) })
			refundBody, refundHdr = body, hdr
			return s.publish(body, hdr, err)
		}},
		{"attacker", "same bytes again (replay)", func() (uint64, error) {
			return s.publish(refundBody, refundHdr, nil)
		}},
		{"attacker", "body edited after signing (tampered)", func() (uint64, error) {
			body, hdr, err := s.signed(func(b *envelope.Builder) error { return s.sealRefund(b, 2500) })
			return s.publish([]byte(strings.Replace(string(body), `"tool_call"`, `"read"`, 1)), hdr, err)
		}},
		{"agent", "token meant for another gateway (wrong audience)", func() (uint64, error) {
			body, hdr, err := s.signed(func(b *envelope.Builder) error { b.Audience = "other-gateway"; return s.sealRefund(b, 100) })
			return s.publish(body, hdr, err)
		}},
		{"agent", "tool outside its delegation (missing scope)", func() (uint64, error) {
			body, hdr, err := s.signedWith(s.narrow, func(b *envelope.Builder) error { return s.sealRefund(b, 100) })
			return s.publish(body, hdr, err)
		}},
		{"agent", "message issued 10 minutes ago (expired)", func() (uint64, error) {
			body, hdr, err := s.signedAt(time.Now().Add(-10*time.Minute), s.token, func(b *envelope.Builder) error { return s.sealRefund(b, 100) })
			return s.publish(body, hdr, err)
		}},
		{"agent", "claims another tenant (wrong tenant)", func() (uint64, error) {
			body, hdr, err := s.signed(func(b *envelope.Builder) error { b.Tenant = "tenant_b"; return s.plainSearch(b) })
			return s.publish(body, hdr, err)
		}},
		{"agent", "draft refund 5000.00 (over policy ceiling)", func() (uint64, error) {
			body, hdr, err := s.signed(func(b *envelope.Builder) error { return s.sealRefund(b, 500000) })
			return s.publish(body, hdr, err)
		}},
		{"agent", "knowledge-base search (plain)", func() (uint64, error) {
			body, hdr, err := s.signed(s.plainSearch)
			return s.publish(body, hdr, err)
		}},
	}
	for _, sc := range steps {
		seq, err := sc.send()
		if err != nil {
			return fmt.Errorf("demo: %s: %w", sc.what, err)
		}
		if _, err := record(sc.who, sc.what, seq); err != nil {
			return err
		}
	}
	// A round trip: the refunds tool answers, the agent gets the answer
	// without the customer's email.
	if err := s.roundTrip(ctx, emit, &step); err != nil {
		return err
	}
	// The same through MCP: the refunds tool is an MCP server behind the
	// bridge.
	if err := s.mcpRoundTrip(ctx, emit, &step); err != nil {
		return err
	}

	// An operator asks what the missing-scope message would get today.
	deniedSeq, err := s.lastDenied(ctx, "missing_scope")
	if err != nil {
		return err
	}
	op, err := client.NewOperator(s.opNC, m.Operator.Creds, devenv.Tenant)
	if err != nil {
		return err
	}
	res, err := op.Replay(ctx, deniedSeq, true)
	if err != nil {
		return fmt.Errorf("demo: dry run: %w", err)
	}
	step++
	emit(Row{Step: step, Who: "operator", What: fmt.Sprintf("dry-run replay of denied #%d (missing scope)", deniedSeq),
		Decision: res.Route, Reason: res.Reason, Policy: res.PolicyIDs, Where: "nowhere: a dry run changes nothing"})

	// Approval: a critical payment is held, an approver grants it.
	r, err := s.agent.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "payments.send",
		Sealed: []byte(`{"amount_cents":1250000,"currency":"EUR","iban":"DE00000000000000000000"}`)})
	if err != nil {
		return fmt.Errorf("demo: payment: %w", err)
	}
	if _, err := record("agent", "send payment 12500.00 (critical)", r.Seq); err != nil {
		return err
	}
	req, err := s.approvalRequest(ctx, r.MessageID)
	if err != nil {
		return err
	}
	ans := approval.Answer{Decision: approval.Grant, Reason: "verified with customer", BodyDigest: req.BodyDigest, PolicyVersion: req.PolicyVersion}
	g, err := s.approver.Send(ctx, client.Request{Capability: envelope.Approve, Target: r.MessageID, Plain: ans})
	if err != nil {
		return fmt.Errorf("demo: grant: %w", err)
	}
	if _, err := record("approver", "grants the held payment", g.Seq); err != nil {
		return err
	}
	g2, err := s.approver.Send(ctx, client.Request{Capability: envelope.Approve, Target: r.MessageID, Plain: ans})
	if err != nil {
		return fmt.Errorf("demo: second grant: %w", err)
	}
	if _, err := record("approver", "grants it a second time", g2.Seq); err != nil {
		return err
	}

	// The second tenant: its own traffic, and its attempts on tenant_a's.
	return s.tenantB(ctx, url, opts, func(who, what string, seq uint64) error {
		_, err := record(who, what, seq)
		return err
	}, emit, &step)
}

// scene holds the demo's identities and their connections.
type scene struct {
	conns    []*nats.Conn
	agentNC  *nats.Conn          // the agent: its ingress subject, its replies
	js       jetstream.JetStream // the agent's (publish only)
	apJS     jetstream.JetStream // the approver's: its approval queue
	toolNC   *nats.Conn          // the refunds tool (the dev consumer)
	toolJS   jetstream.JetStream
	opNC     *nats.Conn // the operator (account OPS)
	opJS     jetstream.JetStream
	m        *devenv.Material
	kp       nkeys.KeyPair
	signer   *identity.Signer
	box      *identity.Box
	pub      string
	xkey     string
	token    identity.Token
	narrow   identity.Token // a credential without refund:draft
	agent    *client.Agent
	approver *client.Agent
}

func newScene(url string, m *devenv.Material, opts []nats.Option) (_ *scene, err error) {
	s := &scene{m: m}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	dial := func(seed, name string) (*nats.Conn, error) {
		nc, err := devenv.Connect(url, seed, name, opts...)
		if err == nil {
			s.conns = append(s.conns, nc)
		}
		return nc, err
	}
	var apNC *nats.Conn
	if s.agentNC, err = dial(m.Agent.Creds, "demo-agent"); err != nil {
		return nil, err
	}
	if apNC, err = dial(m.Approver.Creds, "demo-approver"); err != nil {
		return nil, err
	}
	if s.toolNC, err = dial(m.Consumer.Creds, "demo-refunds-tool"); err != nil {
		return nil, err
	}
	if s.opNC, err = dial(m.Operator.Creds, "demo-operator"); err != nil {
		return nil, err
	}
	if s.js, err = jetstream.New(s.agentNC); err != nil {
		return nil, err
	}
	if s.apJS, err = client.TenantJetStream(apNC); err != nil {
		return nil, err
	}
	if s.toolJS, err = client.TenantJetStream(s.toolNC); err != nil {
		return nil, err
	}
	if s.opJS, err = jetstream.NewWithAPIPrefix(s.opNC, client.OperatorAPIPrefix); err != nil {
		return nil, err
	}
	tok, kp, err := identity.ReadCreds(m.Agent.Creds)
	if err != nil {
		return nil, err
	}
	s.token, s.kp = tok, kp
	s.pub, _ = kp.PublicKey()
	if s.signer, err = identity.NewSigner(kp); err != nil {
		return nil, err
	}
	ck, err := readSeed(m.Agent.Curve)
	if err != nil {
		return nil, err
	}
	s.xkey, _ = ck.PublicKey()
	if s.box, err = identity.NewBox(ck); err != nil {
		return nil, err
	}
	issuer, err := readSeed(m.Issuer)
	if err != nil {
		return nil, err
	}
	s.narrow, err = identity.Issue(issuer, identity.IssueRequest{Subject: s.pub, Audience: devenv.Audience, Tenant: devenv.Tenant,
		Service: devenv.Service("agent"), Scopes: []string{"kb:read"}, XKey: s.xkey, TTL: time.Hour}, time.Now())
	if err != nil {
		return nil, err
	}
	cfg := client.DefaultAgentConfig()
	cfg.GatewayXKey = m.GatewayXKey
	if s.agent, err = client.AgentFromCreds(s.agentNC, m.Agent.Creds, m.Agent.Curve, cfg); err != nil {
		return nil, err
	}
	if s.approver, err = client.AgentFromCreds(apNC, m.Approver.Creds, m.Approver.Curve, cfg); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *scene) close() {
	for _, nc := range s.conns {
		nc.Close()
	}
}

func (s *scene) sealRefund(b *envelope.Builder, cents int) error {
	sealed, err := s.box.Seal(fmt.Appendf(nil, `{"order_id":"ord_%d","amount_cents":%d}`, cents, cents), s.m.GatewayXKey)
	if err != nil {
		return err
	}
	b.Capability, b.Target = envelope.ToolCall, "refunds.draft_refund"
	b.Payload = envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(sealed), From: s.xkey, To: s.m.GatewayXKey}
	return nil
}

func (s *scene) plainSearch(b *envelope.Builder) error {
	b.Capability, b.Target = envelope.Read, "kb.search"
	b.Payload = envelope.Payload{Plain: json.RawMessage(`{"query":"refund policy for damaged goods"}`)}
	return nil
}

func (s *scene) signed(mod func(*envelope.Builder) error) ([]byte, nats.Header, error) {
	return s.signedAt(time.Now(), s.token, mod)
}

func (s *scene) signedWith(tok identity.Token, mod func(*envelope.Builder) error) ([]byte, nats.Header, error) {
	return s.signedAt(time.Now(), tok, mod)
}

func (s *scene) signedAt(now time.Time, tok identity.Token, mod func(*envelope.Builder) error) ([]byte, nats.Header, error) {
	b := envelope.Builder{Tenant: devenv.Tenant, Audience: devenv.Audience}
	if err := mod(&b); err != nil {
		return nil, nil, err
	}
	body, err := b.Build(now)
	if err != nil {
		return nil, nil, err
	}
	hdr := nats.Header{}
	hdr.Set(header.Credential, tok.Reveal())
	hdr.Set(header.Signature, base64.RawURLEncoding.EncodeToString(s.signer.Sign(envelope.SigningInput(body))))
	return body, hdr, nil
}

// publish sends as an attacker could: no Nats-Msg-Id, so JetStream keeps
// every copy and only the gateway's ledger stands between a replay and
// the capability.
func (s *scene) publish(body []byte, hdr nats.Header, err error) (uint64, error) {
	if err != nil {
		return 0, err
	}
	subj, err := subjects.Ingress(devenv.Tenant, s.pub)
	if err != nil {
		return 0, err
	}
	m := nats.NewMsg(subj)
	m.Data = body
	for k, v := range hdr {
		m.Header[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := s.js.PublishMsg(ctx, m)
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

// approvalRequest reads the approver's queue (the pre-created consumer it
// binds to, as `agentgw approvals` does) for the request holding held,
// as an approver shows it: read strictly and signed by the gateway
// (client.DecodeRequest, client.VerifyRequest). What it reads is handed
// back: the queue is a list, not consumed here.
func (s *scene) approvalRequest(ctx context.Context, held string) (approval.Request, error) {
	cons, err := s.apJS.Consumer(ctx, client.StreamApproval, client.ApprovalConsumerName(devenv.Tenant))
	if err != nil {
		return approval.Request{}, fmt.Errorf("demo: approval queue: %w", err)
	}
	var seen []jetstream.Msg
	defer func() {
		for _, m := range seen {
			_ = m.Nak()
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		batch, err := cons.Fetch(64, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return approval.Request{}, fmt.Errorf("demo: approval queue: %w", err)
		}
		var found *approval.Request
		// Read the batch to its end even after a match: a pull request
		// still open would take back the messages handed back below.
		for msg := range batch.Messages() {
			seen = append(seen, msg)
			if found != nil || msg.Headers().Get(header.MessageID) != held {
				continue
			}
			req, err := client.DecodeRequest(msg.Subject(), msg.Data(), devenv.Tenant)
			if err == nil && req.HeldMessageID == held {
				err = client.VerifyRequest(msg.Headers().Get(decision.Header), msg.Data(), req,
					decision.VerifyOptions{TrustedGateways: []string{s.m.GatewayKey}, Now: time.Now(), Skew: client.DefaultSkew})
				if err == nil {
					found = &req
				}
			}
		}
		if found != nil {
			return *found, nil
		}
	}
	return approval.Request{}, fmt.Errorf("demo: no approval request for %s", held)
}

// refundsTool is the consumer configuration of the dev refunds tool: it
// answers as the dev consumer (its responder), opens with its curve key,
// trusts the gateway's signing key and is bound to its pre-created
// consumer (the tool may not create one).
func (s *scene) refundsTool() (client.ConsumerConfig, error) {
	cfg := client.DefaultAgentConfig()
	cfg.GatewayXKey = s.m.GatewayXKey
	responder, err := client.AgentFromCreds(s.toolNC, s.m.Consumer.Creds, s.m.Consumer.Curve, cfg)
	if err != nil {
		return client.ConsumerConfig{}, err
	}
	curve, err := readSeed(s.m.Consumer.Curve)
	if err != nil {
		return client.ConsumerConfig{}, err
	}
	ccfg := client.DefaultConsumerConfig()
	ccfg.Tenant, ccfg.Targets, ccfg.Curve = devenv.Tenant, []string{"refunds.draft_refund"}, curve
	ccfg.TrustedGateways, ccfg.Responder = []string{s.m.GatewayKey}, responder
	ccfg.Bind, ccfg.Durable = true, client.CapabilityConsumerName(devenv.Tenant, "refunds.draft_refund")
	return ccfg, nil
}

// roundTrip runs the refunds tool as a capability consumer that answers
// each request, and an agent that sends a refund and awaits the answer.
func (s *scene) roundTrip(ctx context.Context, emit func(Row), step *int) error {
	ccfg, err := s.refundsTool()
	if err != nil {
		return err
	}
	tool, err := client.NewConsumer(s.toolJS, ccfg)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- tool.Consume(cctx, func(ctx context.Context, d *client.Delivery) error {
			_, err := tool.Respond(ctx, d, map[string]string{"refund_id": "rf_" + d.Envelope.MessageID[:8], "status": "drafted", "customer_email": "jane.doe@example.com"})
			return err
		})
	}()
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	_, reply, err := s.agent.SendAndWait(wctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund",
		Sealed: []byte(`{"order_id":"ord_42","amount_cents":4200}`)}, client.WaitOptions{TrustedGateways: []string{s.m.GatewayKey}})
	cancel()
	if cerr := <-done; cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("demo: round trip: %w", err)
	}
	*step++
	emit(Row{Step: *step, Who: "tool", What: "answers a refund; customer_email removed", Decision: "reply",
		Policy: reply.Claims.PolicyIDs, Where: "agent's reply subject: " + string(reply.Payload)})
	return nil
}

// lastDenied is the denied-stream sequence of the latest denial for code.
func (s *scene) lastDenied(ctx context.Context, code string) (uint64, error) {
	st, err := s.opJS.Stream(ctx, "AGENTGW_DENIED")
	if err != nil {
		return 0, err
	}
	msg, err := st.GetLastMsgForSubject(ctx, "agentgw.denied."+devenv.Tenant+"."+code)
	if err != nil {
		return 0, fmt.Errorf("demo: no %s denial: %w", code, err)
	}
	return msg.Sequence, nil
}

func readSeed(path string) (nkeys.KeyPair, error) {
	kp, err := identity.ReadSeedFile(path)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	return kp, nil
}

// auditWatch collects audit events by ingress sequence, read as the
// operator reads them (client.ReadRecords), from the end of the stream
// when it started.
type auditWatch struct {
	mu     sync.Mutex
	events map[uint64]audit.Event
	err    error // why reading stopped early
	cancel context.CancelFunc
	done   chan struct{}
}

func watchAudit(ctx context.Context, js jetstream.JetStream) (*auditWatch, error) {
	st, err := js.Stream(ctx, "AGENTGW_AUDIT")
	if err != nil {
		return nil, fmt.Errorf("demo: audit stream: %w", err)
	}
	q := client.RecordQuery{Stream: "AGENTGW_AUDIT", From: st.CachedInfo().State.LastSeq + 1, Follow: true, Poll: 20 * time.Millisecond}
	w := &auditWatch{events: map[uint64]audit.Event{}, done: make(chan struct{})}
	ctx, w.cancel = context.WithCancel(ctx)
	go func() {
		defer close(w.done)
		err := client.ReadRecords(ctx, js, q, func(m *jetstream.RawStreamMsg) error {
			evs, _ := audit.Decode(m.Data) // one message per batch and tenant
			w.mu.Lock()
			for _, ev := range evs {
				w.events[ev.IngressSeq] = ev
			}
			w.mu.Unlock()
			return nil
		})
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
	}()
	return w, nil
}

func (w *auditWatch) wait(ctx context.Context, seq uint64) (audit.Event, error) {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		ev, ok := w.events[seq]
		err := w.err
		w.mu.Unlock()
		if ok {
			return ev, nil
		}
		if err != nil {
			return audit.Event{}, fmt.Errorf("reading the audit stream: %w", err)
		}
		select {
		case <-ctx.Done():
			return audit.Event{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return audit.Event{}, fmt.Errorf("no decision for ingress sequence %d", seq)
}

func (w *auditWatch) stop() {
	w.cancel()
	<-w.done
}
