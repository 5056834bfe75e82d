package faults

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/devenv"
	"github.com/agentgw/agentgw/subjects"
)

// kind is what a published message is, and so what the gateway must
// decide for it.
type kind string

const (
	kPlain    kind = "plain"    // kb.search, plain payload: allow
	kSealed   kind = "sealed"   // refund up to 1000.00, sealed: allow
	kContent  kind = "content"  // refund above 1000.00, sealed: content_denied after opening
	kApproval kind = "approval" // payments.send (critical), sealed: held for approval
	kBadSig   kind = "badsig"   // sealed refund signed over other bytes: bad_signature
	kFuture   kind = "future"   // issued two minutes ahead: issued_in_future
	kGarbage  kind = "garbage"  // signed, but not an envelope: denied
	kReplay   kind = "replay"   // exact copy of an earlier message without Nats-Msg-Id: replay_detected
	kAnswer   kind = "answer"   // an approver's grant of a held request
)

// want is the route and reason the gateway must give a kind ("" reason:
// any reason of that route).
func (k kind) want() (route, why string) {
	switch k {
	case kPlain, kSealed:
		return "allow", ""
	case kContent:
		return "deny", "content_denied"
	case kApproval:
		return "approval", ""
	case kBadSig:
		return "deny", "bad_signature"
	case kFuture:
		return "deny", "issued_in_future"
	case kGarbage:
		return "deny", ""
	case kReplay:
		return "deny", "replay_detected"
	}
	return "", ""
}

// Markers put in payloads. '~' and '#' are outside the base64url
// alphabet, so a marker can only appear in an output as plaintext.
const (
	sealedMarker = "~pt#" // inside every sealed payload: must never appear in any output or log
	plainMarker  = "~pl#" // inside plain payloads: must appear in capability outputs (the scan sees them)
)

// sent is one publish JetStream acknowledged.
type sent struct {
	seq   uint64
	msgID string // envelope message id; "" for garbage
	kind  kind
}

// agentKeys is the dev agent from devenv, signing by hand so the test can
// publish what client.Agent never would (bad signatures, replays).
type agentKeys struct {
	token   identity.Token
	signer  *identity.Signer
	box     *identity.Box
	xkey    string
	subject string
}

// load publishes a bounded-rate mix of valid and hostile envelopes and
// grants some held requests, recording every acknowledged publish.
type load struct {
	t      testing.TB
	e      *env
	nc     *nats.Conn
	js     jetstream.JetStream
	agent  agentKeys
	agents []agentKeys // agent first; more when scaled out, to spread partitions
	gwXKey string
	rate   int

	approver *client.Approver
	anc      *nats.Conn

	mu       sync.Mutex
	sent     []sent
	kinds    map[string]kind // message id -> kind of the original
	recent   []*nats.Msg     // valid, ledger-keyed messages that may be replayed
	oldies   []*nats.Msg     // a sample from the whole run, for late replays
	unknown  int             // publishes whose fate is unknown (gave up)
	answered int
	counts   map[kind]int

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newLoad(t testing.TB, e *env, rate int) *load {
	t.Helper()
	if *rateFlag > 0 {
		rate = *rateFlag
	}
	l := &load{t: t, e: e, rate: rate, gwXKey: e.mat.GatewayXKey, kinds: map[string]kind{}, counts: map[kind]int{}}
	var err error
	l.nc, err = e.connect("agentgw-faults-load")
	must(t, err)
	t.Cleanup(l.nc.Close)
	l.js, err = jetstream.New(l.nc)
	must(t, err)

	l.agent = newAgentKeys(t, e)
	l.agents = []agentKeys{l.agent}
	if e.opts.instances > 1 {
		for range 11 {
			l.agents = append(l.agents, moreAgentKeys(t, e))
		}
	}

	l.anc, err = e.connect("agentgw-faults-approver")
	must(t, err)
	t.Cleanup(l.anc.Close)
	ajs, err := jetstream.New(l.anc)
	must(t, err)
	atok, akp, err := identity.ReadCreds(e.mat.Approver.Creds)
	must(t, err)
	cfg := client.ApproverConfig{AgentConfig: client.DefaultAgentConfig()}
	cfg.Credential, cfg.Key, cfg.TrustedGateways = atok, akp, []string{e.mat.GatewayKey}
	l.approver, err = client.NewApprover(l.anc, ajs, cfg)
	must(t, err)
	return l
}

// newAgentKeys loads the dev agent's credential and keys.
func newAgentKeys(t testing.TB, e *env) agentKeys {
	t.Helper()
	var a agentKeys
	tok, kp, err := identity.ReadCreds(e.mat.Agent.Creds)
	must(t, err)
	a.token = tok
	a.signer, err = identity.NewSigner(kp)
	must(t, err)
	ck, err := identity.ReadSeedFile(e.mat.Agent.Curve)
	must(t, err)
	a.box, err = identity.NewBox(ck)
	must(t, err)
	a.xkey = a.box.PublicKey()
	a.subject, err = subjects.Ingress(devenv.Tenant, a.signer.PublicKey())
	must(t, err)
	return a
}

// moreAgentKeys issues another agent of the dev tenant, with the dev
// agent's scopes, from the dev issuer: its messages land in another
// partition than the dev agent's (most of the time).
func moreAgentKeys(t testing.TB, e *env) agentKeys {
	t.Helper()
	issuer, err := identity.ReadSeedFile(e.mat.Issuer)
	must(t, err)
	kp, err := identity.NewAgent()
	must(t, err)
	ck, err := identity.NewCurve()
	must(t, err)
	var a agentKeys
	a.signer, err = identity.NewSigner(kp)
	must(t, err)
	a.box, err = identity.NewBox(ck)
	must(t, err)
	a.xkey = a.box.PublicKey()
	a.token, err = identity.Issue(issuer, identity.IssueRequest{
		Subject: a.signer.PublicKey(), Audience: devenv.Audience, Tenant: devenv.Tenant, Service: devenv.Service("agent"),
		Name: "fault-test agent", Scopes: []string{"refund:draft", "payment:send", "kb:read"}, XKey: a.xkey, TTL: 2 * time.Hour,
	}, time.Now())
	must(t, err)
	a.subject, err = subjects.Ingress(devenv.Tenant, a.signer.PublicKey())
	must(t, err)
	return a
}

// start runs workers publishing at l.rate in total, and the approver.
func (l *load) start() {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	const workers = 4
	per := time.Duration(float64(time.Second) * workers / float64(max(l.rate, 1)))
	for w := range workers {
		l.wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			tick := time.NewTicker(per)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				l.one(ctx, rng)
			}
		})
	}
	l.wg.Go(func() { l.approve(ctx) })
}

// stop ends the load and waits for in-flight publishes.
func (l *load) stop() {
	if l.cancel != nil {
		l.cancel()
		l.wg.Wait()
		l.cancel = nil
	}
}

// one publishes one message of a random kind.
func (l *load) one(ctx context.Context, rng *mrand.Rand) {
	k := pick(rng)
	if k == kReplay {
		l.replay(ctx, rng)
		return
	}
	m, id, err := l.build(k, time.Now(), 0, rng)
	if err != nil {
		l.t.Errorf("build %s: %v", k, err)
		return
	}
	seq, ok := l.publish(ctx, m, id != "")
	l.record(ok, sent{seq: seq, msgID: id, kind: k})
	if ok && (k == kPlain || k == kSealed || k == kContent || k == kApproval) {
		l.keep(m, rng)
	}
}

func pick(rng *mrand.Rand) kind {
	switch n := rng.IntN(100); {
	case n < 25:
		return kPlain
	case n < 55:
		return kSealed
	case n < 63:
		return kContent
	case n < 68:
		return kApproval
	case n < 74:
		return kBadSig
	case n < 77:
		return kFuture
	case n < 80:
		return kGarbage
	default:
		return kReplay
	}
}

func marker(prefix string) string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// build makes a signed message of kind k as of now, living ttl (0: the
// 5 minute maximum). id is the envelope message id (also the
// Nats-Msg-Id), "" for garbage.
func (l *load) build(k kind, now time.Time, ttl time.Duration, rng *mrand.Rand) (*nats.Msg, string, error) {
	if ttl == 0 {
		ttl = 5 * time.Minute
	}
	b := envelope.Builder{Tenant: devenv.Tenant, Audience: devenv.Audience, TTL: ttl}
	ag := l.agent
	if len(l.agents) > 0 {
		ag = l.agents[rng.IntN(len(l.agents))]
	}
	var err error
	switch k {
	case kPlain, kFuture:
		b.Capability, b.Target = envelope.Read, "kb.search"
		b.Payload = envelope.Payload{Plain: json.RawMessage(fmt.Sprintf(`{"query":%q}`, marker(plainMarker)))}
		if k == kFuture {
			now = now.Add(2 * time.Minute)
		}
	case kSealed, kBadSig:
		err = l.seal(&b, ag, "refunds.draft_refund", fmt.Sprintf(`{"order_id":"ord_%d","amount_cents":%d,"reason":%q}`, rng.IntN(1e6), 1+rng.IntN(100000), marker(sealedMarker)))
	case kContent:
		err = l.seal(&b, ag, "refunds.draft_refund", fmt.Sprintf(`{"order_id":"ord_%d","amount_cents":%d,"reason":%q}`, rng.IntN(1e6), 100001+rng.IntN(1e6), marker(sealedMarker)))
	case kApproval:
		err = l.seal(&b, ag, "payments.send", fmt.Sprintf(`{"amount_cents":%d,"currency":"EUR","memo":%q}`, 1+rng.IntN(1e6), marker(sealedMarker)))
	case kGarbage:
		body := fmt.Appendf(nil, `{"v":1,"not_an_envelope":%q}`, marker("garbage-"))
		m := nats.NewMsg(ag.subject)
		m.Data = body
		m.Header.Set(header.Credential, ag.token.Reveal())
		m.Header.Set(header.Signature, base64.RawURLEncoding.EncodeToString(ag.signer.Sign(envelope.SigningInput(body))))
		return m, "", nil
	default:
		return nil, "", fmt.Errorf("no builder for %s", k)
	}
	if err != nil {
		return nil, "", err
	}
	b.MessageID = envelope.NewMessageID()
	body, err := b.Build(now)
	if err != nil {
		return nil, "", err
	}
	signed := body
	if k == kBadSig {
		signed = append(append([]byte(nil), body...), ' ')
	}
	m := nats.NewMsg(ag.subject)
	m.Data = body
	m.Header.Set(header.Credential, ag.token.Reveal())
	m.Header.Set(header.Signature, base64.RawURLEncoding.EncodeToString(ag.signer.Sign(envelope.SigningInput(signed))))
	m.Header.Set(header.MsgID, b.MessageID)
	return m, b.MessageID, nil
}

func (l *load) seal(b *envelope.Builder, ag agentKeys, target, plain string) error {
	ct, err := ag.box.Seal([]byte(plain), l.gwXKey)
	if err != nil {
		return err
	}
	b.Capability, b.Target = envelope.ToolCall, target
	b.Payload = envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(ct), From: ag.xkey, To: l.gwXKey}
	return nil
}

// keep remembers a valid message for later replays: the last 256, and a
// sample of the whole run (so messages from before a restart are
// replayed after it).
func (l *load) keep(m *nats.Msg, rng *mrand.Rand) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recent = append(l.recent, m)
	if len(l.recent) > 256 {
		l.recent = l.recent[len(l.recent)-256:]
	}
	if len(l.oldies) < 256 {
		l.oldies = append(l.oldies, m)
	} else if i := rng.IntN(len(l.sent) + 1); i < len(l.oldies) {
		l.oldies[i] = m
	}
}

// replay re-publishes the exact bytes and headers of an earlier valid
// message, without Nats-Msg-Id, as an attacker would: JetStream stores
// it under a new sequence and only the ledger can refuse it.
func (l *load) replay(ctx context.Context, rng *mrand.Rand) {
	l.mu.Lock()
	pool := l.recent
	if rng.IntN(3) == 0 {
		pool = l.oldies
	}
	var orig *nats.Msg
	if len(pool) > 0 {
		orig = pool[rng.IntN(len(pool))]
	}
	l.mu.Unlock()
	if orig == nil {
		return
	}
	m := nats.NewMsg(orig.Subject)
	m.Data = orig.Data
	for k, v := range orig.Header {
		if k != header.MsgID {
			m.Header[k] = v
		}
	}
	seq, ok := l.publish(ctx, m, false)
	l.record(ok, sent{seq: seq, msgID: orig.Header.Get(header.MsgID), kind: kReplay})
}

func (l *load) record(ok bool, s sent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !ok {
		l.unknown++
		return
	}
	l.sent = append(l.sent, s)
	l.counts[s.kind]++
	if s.msgID != "" && s.kind != kReplay {
		l.kinds[s.msgID] = s.kind
	}
}

// publish sends m until JetStream acknowledges it. A message with a
// Nats-Msg-Id is retried with the same bytes through any outage (a
// duplicate acknowledgement of a retry carries the first sequence).
// Without one, a timed-out attempt may have landed, so only attempts that
// certainly did not (no responders) are retried.
func (l *load) publish(ctx context.Context, m *nats.Msg, idempotent bool) (uint64, bool) {
	deadline := time.Now().Add(90 * time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := l.js.PublishMsg(actx, m)
		cancel()
		if err == nil {
			return ack.Sequence, true
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return 0, false
		}
		absent := errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
		if !idempotent && !absent {
			return 0, false
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// approve reads the approval queue and grants two of three requests that
// are still open; the others expire.
func (l *load) approve(ctx context.Context) {
	var cursor uint64
	seen := map[string]bool{}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
		// Requests to a server going away are never answered: bound each.
		sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
		s, err := l.js.Stream(sctx, gateway.StreamApproval)
		var info *jetstream.StreamInfo
		if err == nil {
			info, err = s.Info(sctx)
		}
		scancel()
		if err != nil {
			continue
		}
		for seq := max(cursor+1, info.State.FirstSeq); seq <= info.State.LastSeq && ctx.Err() == nil; seq++ {
			gctx, gcancel := context.WithTimeout(ctx, 3*time.Second)
			raw, err := s.GetMsg(gctx, seq)
			gcancel()
			if err != nil {
				break
			}
			cursor = seq
			var req approval.Request
			if json.Unmarshal(raw.Data, &req) != nil || seen[req.HeldMessageID] {
				continue
			}
			seen[req.HeldMessageID] = true
			if time.Now().After(req.Deadline) || mrand.IntN(3) == 0 {
				continue
			}
			actx, cancel := context.WithTimeout(ctx, 15*time.Second)
			rc, err := l.approver.Grant(actx, req, "fault test")
			cancel()
			if err == nil {
				l.record(true, sent{seq: rc.Seq, msgID: rc.MessageID, kind: kAnswer})
				l.mu.Lock()
				l.answered++
				l.mu.Unlock()
			}
		}
	}
}

// total is the number of acknowledged publishes.
func (l *load) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sent)
}

// waitSent blocks until at least n publishes were acknowledged.
func (l *load) waitSent(n int, timeout time.Duration) {
	l.t.Helper()
	deadline := time.Now().Add(timeout)
	for l.total() < n {
		if time.Now().After(deadline) {
			l.t.Fatalf("load: only %d of %d messages published in %s", l.total(), n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
