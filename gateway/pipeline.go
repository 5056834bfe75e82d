package gateway

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// item is one ingress message on its way through the gates.
type item struct {
	msg      jetstream.Msg // nil for a held message being released
	subject  string
	hdr      nats.Header
	body     []byte
	seq      uint64
	delivery uint64
	consumer string    // the consumer that delivered it; "" when read by sequence (recover.go)
	start    time.Time // when the gateway received it, on its clock (latency)
	// clocked is what verify left to the instant the message is judged
	// at; judge runs it.
	clocked clocked

	ref    subjects.IngressRef
	refOK  bool
	env    *envelope.Body
	cred   *identity.Credential
	target *catalog.Target
	budget map[string]int64
	took   *budgetTake // the budget token it was granted (refundBudgets)
	replay store.ReplayKey
	idem   store.IdemKey
	keyed  bool // replay/idem keys are authenticated and staged
	// marked is the expiry of the operator replay marker this message
	// set, journaled after its replay entry (zero: none to journal).
	marked time.Time
	// authed: the credential and the signature verified and the message
	// came in on its signer's own subject, so the signer may be told the
	// outcome (a decision notice).
	authed bool
	// bound: the signature verified with the credential's key and the
	// message came in on its signer's own subject (gate 7), whatever a
	// later gate decided (a revoked or expired credential included): its
	// envelope's trace, tenant and target are the signer's to claim, and
	// its span and outputs carry them.
	bound   bool
	digest  [32]byte
	payload [32]byte
	// digestText is hexDigest(digest), once it is needed (digestHex):
	// the audit event and every decision token of the message carry it.
	digestText string
	// credSealed and credSealedTo are the credential of a held request
	// as its hold record keeps it: sealed to the gateway's curve key
	// (identity.Box.SealCredential), the form its denial carries on.
	credSealed, credSealedTo string

	// Outcome.
	route  store.Route
	denial *reason.Denial
	pol    policy.Decision
	// rules are the catalog and policy set the message is decided with:
	// its batch's, one snapshot for every gate.
	rules     *rules
	outputs   []*nats.Msg
	reemit    bool        // outputs come from the ledger, not from a decision
	ev        audit.Event // the decision's audit event (finish)
	replayBy  string      // operator whose replay of a denied message this is
	recorded  reason.Code // a denied record's reason, for an operator's dry run of it
	replayExp int64       // its authorization's expiry, Unix seconds
	deadline  time.Time
	ctx       context.Context // carries the message span
	span      trace.Span
	untraced  bool // an operator's dry run: nothing decided, no span

	// Approvals: an answer carries the held request it releases.
	approved bool   // a held request an approver granted
	approver string // who granted it
	heldItem *item
	// heldFor is how long heldItem was held when the answer came.
	heldFor time.Duration
	// finished marks an item finish decided in this batch: reportDecided
	// logs and counts it once its outcome is recorded.
	finished bool
	answer   approval.Answer
	request  *outstanding // a response: the request it answers
	outputOK bool
	unstored []*nats.Msg // outputs JetStream did not acknowledge
	refused  []*nats.Msg // of those, the ones refused as too large (refused.go)
	// unsigned are outputs whose decision token the batch signs once
	// every route is final (signTokens).
	unsigned []unsignedToken
	// notices are the decision notices of the message (finish), signed
	// with the batch's other tokens (signTokens), then added to outputs.
	notices []unsignedToken
	outID   string // outputMsgID's base, once known
}

// unsignedToken is an output waiting for its decision token: in the
// body of a delivery (doc) or of a notice (its document, signTokens),
// else in the Agentgw-Decision header (a reply).
type unsignedToken struct {
	m   *nats.Msg
	p   *decision.Pending
	doc *delivery.Doc
}

// deny records the denial err carries; an error without one is
// internal_error, a denial too (fail closed).
func (it *item) deny(err error) {
	var d *reason.Denial
	if !errors.As(err, &d) {
		d = &reason.Denial{Code: reason.Of(err), Detail: "internal error"}
	}
	it.route, it.denial = store.RouteDeny, d
}

func (it *item) decided() bool { return it.route != "" || it.reemit }

// verify runs the stateless gates, in docs/design.md §3 order: size, headers,
// parse, credential, signature, subject binding, freshness. It needs no
// ledger and runs on many items in parallel, ahead of the decision: the
// rules that read the clock (the replay authorization's expiry, the
// credential's validity, freshness) are left, with what they need, in
// it.clocked for judge to run at the instant the message is decided.
// Until judge has run, the item is not decided.
func (g *Gateway) verify(it *item) {
	data := it.body
	ref, err := subjects.ParseIngress(it.subject)
	if err == nil {
		it.ref, it.refOK = ref, true
	}
	if len(data) > g.cfg.Limits.MaxBodyBytes {
		// What names the body in its denied record and audit event,
		// which do not carry it.
		it.digest = envelope.Digest(data)
		it.deny(reason.Deny(reason.Oversized, "body is %d bytes; limit %d", len(data), g.cfg.Limits.MaxBodyBytes))
		return
	}
	if err != nil {
		it.deny(err)
		return
	}
	token, sig := it.hdr.Get(header.Credential), it.hdr.Get(header.Signature)
	if token == "" || sig == "" {
		it.deny(reason.Deny(reason.MissingHeader, "%s and %s are required", header.Credential, header.Signature))
		return
	}
	c := &it.clocked
	if c.replayBy, c.replayExp, err = g.replayAuth(it); err != nil {
		it.deny(err)
		return
	}
	env, err := envelope.Parse(data, envelope.Limits{MaxBytes: g.cfg.Limits.MaxBodyBytes})
	if err != nil {
		it.deny(err)
		return
	}
	if data[0] != '{' || data[len(data)-1] != '}' {
		// A delivery carries the body verbatim as a member of its
		// document, where white space around it is the document's and
		// its digest would no longer bind: refused here, before the
		// ledger spends its nonce or idempotency key.
		it.deny(reason.Deny(reason.MalformedEnvelope, "white space before or after the envelope object"))
		return
	}
	it.env = env
	// The schema gate is the strict parser: it enforces every rule of
	// schemas/envelope.schema.json (fixtures and fuzzing prove that all
	// it accepts the schema accepts), so a second JSON Schema pass here
	// could never deny and cost 6-12% of the gateway's CPU.
	//
	// The message span opens once the signature binds the message to its
	// signer's own subject: before that its trace id, the agent's
	// traceparent and its tenant are anyone's claims, and a message
	// denied before it gets a trace of its own (finish). The two gates
	// before it are recorded in it with their times.
	var gates tracedGates
	gates.mark(g, 0)
	cred, err := g.verifier.VerifyUntimed(token)
	gates.mark(g, 1)
	if err != nil {
		it.deny(err)
		return
	}
	c.cred = cred
	pub, err := g.agentKeys.get(cred.Subject)
	if err != nil {
		it.deny(reason.Deny(reason.MalformedCredential, "credential %s subject is not a user key", cred.ID))
		return
	}
	gates.mark(g, 2)
	err = g.agentKeys.verify(pub, data, sig)
	gates.mark(g, 3)
	if err != nil {
		it.deny(err)
		return
	}
	c.signed = true
	switch {
	case env.Tenant != cred.Tenant:
		it.deny(reason.Deny(reason.TenantMismatch, "envelope tenant %q, credential tenant %q", env.Tenant, cred.Tenant))
		return
	case ref.Tenant != env.Tenant:
		it.deny(reason.Deny(reason.TenantMismatch, "subject tenant %q, envelope tenant %q", ref.Tenant, env.Tenant))
		return
	case ref.Agent != cred.Subject:
		it.deny(reason.Deny(reason.SubjectMismatch, "subject agent is not credential %s's subject", cred.ID))
		return
	}
	c.bound = true
	g.startSpanAt(it, env.TraceID, gates.at[0])
	g.pastGate(it, "credential", gates.at[0], gates.at[1])
	g.pastGate(it, "signature", gates.at[2], gates.at[3])
	if env.Audience != g.cfg.Audience {
		it.deny(reason.Deny(reason.WrongAudience, "envelope audience %q", env.Audience))
		return
	}
	c.fresh = true
	if p := env.Payload; p.IsSealed() {
		var why string
		switch {
		case p.From != cred.XKey:
			why = SealNotFromCredential
		case g.ownCurveKey(p.From):
			// A credential naming a gateway key as an agent's, in
			// either spelling: the boxes the gateway makes itself must
			// not pass as payloads.
			why = SealFromGateway
		case g.boxTo(p.To) == nil:
			why = SealNotToGateway
		}
		if why != "" {
			it.deny(reason.Deny(reason.SealMismatch, "%s", why))
			return
		}
	}
	// Read only once judge has let the message through.
	it.digest = envelope.Digest(data)
	it.payload = env.PayloadDigest()
	it.replay = store.ReplayKey{Tenant: env.Tenant, Agent: cred.Subject, MessageID: env.MessageID}
	it.idem = store.IdemKey{Tenant: env.Tenant, Agent: cred.Subject, Key: env.IdempotencyKey}
}

// clocked is what verify leaves to the instant a message is judged at:
// the rules that read the clock of the gates it reached, and what the
// message is once they hold. verify stops at the first gate that denies
// (its denial is on the item), so every rule recorded here belongs to a
// gate before that one, and comes first if it fails.
type clocked struct {
	// replayBy is the operator a valid replay authorization names
	// (gate 2), "" when there is none; replayExp is its expiry, in Unix
	// seconds.
	replayBy  string
	replayExp int64
	// cred is the credential once every rule of gate 5 but its validity
	// period held (identity.Verifier.VerifyUntimed).
	cred *identity.Credential
	// signed: the signature verified with cred's subject key (gate 6).
	// Only then is the credential the message's: a JWT alone does not
	// make its holder the sender, and a message signed by anyone else
	// names no credential in its audit event or trace.
	signed bool
	// bound: the signature verified and the message came in on its
	// signer's own subject (gates 6 and 7).
	bound bool
	// fresh: the message reached freshness (gate 8).
	fresh bool
}

// judge runs on it, at now, the rules of its stateless gates that read
// the clock (it.clocked, left by verify), in gate order, and leaves the
// item as verify would have at now: the first of them that fails is its
// denial, ahead of a denial verify gave at a later gate. now is the
// instant the message is decided at, the same for every message of a
// batch and for every later gate: the clock when the decider takes the
// batch (decideBatch), so no message is judged at an instant before it
// was received. No signature is checked again. judge runs once per
// verify.
func (g *Gateway) judge(it *item, now time.Time) {
	c := it.clocked
	it.clocked = clocked{}
	if c.replayBy != "" && now.Unix() > c.replayExp {
		it.env = nil // verify stops at gate 2, before the parse
		it.deny(reason.Deny(reason.ReplayRefused, "replay authorization expired"))
		return
	}
	if c.replayBy != "" {
		// The operator's credential may have been revoked (its key, jti
		// or principal) or its issuer distrusted after the gateway took
		// its request: what it authorized is not let past the ledger.
		tenant := ""
		if it.refOK {
			tenant = it.ref.Tenant
		}
		if err := g.replayStanding(it.hdr.Get(header.ReplayCredential), it.body, tenant, c.replayBy, c.replayExp); err != nil {
			it.env = nil
			it.deny(err)
			return
		}
	}
	it.replayBy, it.replayExp = c.replayBy, c.replayExp
	it.bound = c.bound
	if c.cred != nil {
		// Its standing too: trust and revocations reloaded while the
		// batch waited apply to it.
		if err := g.verifier.CredentialStanding(c.cred); err != nil {
			it.deny(err)
			return
		}
		if err := g.verifier.CheckValidity(c.cred, now); err != nil {
			it.deny(err)
			return
		}
		if c.signed {
			it.cred = c.cred
		}
	}
	it.authed = c.bound
	if c.fresh {
		if err := g.fresh.Check(it.env, now); err != nil {
			it.deny(err)
		}
	}
	// Otherwise verify's denial, if it gave one, stands.
}

// verifyAt runs every stateless gate on it at now: verify, then judge.
func (g *Gateway) verifyAt(it *item, now time.Time) {
	g.verify(it)
	g.judge(it, now)
}

// unknowable denies it ledger_incomplete, and reports true, when its
// partition's ledger lacks what was decided before b.lostBefore (a new
// ledger after decisions, checkNewLedger; a journal that lost records,
// journalLoss), and it may have been decided then: a copy
// of a message first seen before that (issued before lostBefore + skew)
// would not be found, nor the idempotency entry of a request made then,
// which stays in force for up to a freshness span (max_ttl + 2 × skew)
// after it was written. A message whose idempotency key is its own
// message id has no other request to collide with than its own copies,
// which the first rule covers; nor has an approver's answer (its key
// names the held request): the hold it must take makes it single-use,
// and a hold that was lost with the ledger refuses it. Operator replays
// are held to both: the replay's entry and marker are among what was
// lost.
func (g *Gateway) unknowable(b *ledgerBatch, it *item, now time.Time) bool {
	lost := b.lostBefore
	if lost.IsZero() {
		return false
	}
	at := lost.Format(time.RFC3339Nano)
	switch {
	case it.env.IssuedAt.Before(lost.Add(g.fresh.Grace())):
		it.deny(reason.Deny(reason.LedgerIncomplete, "issued_at %s: the ledger lost what was decided before %s",
			it.env.IssuedAt.Format(time.RFC3339Nano), at))
	case it.env.IdempotencyKey != it.env.MessageID && it.env.Capability != envelope.Approve && now.Before(lost.Add(g.fresh.Span())):
		it.deny(reason.Deny(reason.LedgerIncomplete, "idempotency key: the ledger lost what was decided before %s, and a request made then stays in force until %s",
			at, lost.Add(g.fresh.Span()).Format(time.RFC3339Nano)))
	default:
		return false
	}
	return true
}

// errUnreadableRecord: a ledger record of one message, its recorded
// outcome or its replay entry, could not be read or decoded, before
// anything was staged for it. It concerns that message only (setAside).
var errUnreadableRecord = errors.New("gateway: a ledger record of the message cannot be read")

// ledgerGate runs the stateful gates in stream order on one goroutine:
// redelivery, replay, idempotency, catalog, budget. It stages provisional
// ledger entries so a second copy later in the same batch is caught. An
// error wrapping errUnreadableRecord comes before it stages anything for
// it; any other fails the batch.
func (g *Gateway) ledgerGate(b *ledgerBatch, cat *catalog.Catalog, it *item, now time.Time) error {
	out, found, err := b.Outcome(it.seq)
	if err != nil {
		return fmt.Errorf("%w: recorded outcome: %w", errUnreadableRecord, err)
	}
	if !found && g.acknowledged(it.consumer, it.seq) {
		// A delivery JetStream sent before it processed the ack of an
		// earlier one (a redelivery after an ack timeout, already in
		// flight): the message's outputs are stored and its outcome
		// pruned. Deciding again could contradict the first decision and
		// would write a second audit event; it is acknowledged with
		// nothing to publish. Only the ack floor of the consumer that
		// delivered it says so (maintain.go, ackFloor).
		it.reemit, it.outputs = true, nil
		g.log.Debug().Uint64("ingress_seq", it.seq).Msg("stale delivery of an acknowledged message; dropped")
		return nil
	}
	if found {
		// A redelivery after a crash or an ack timeout: the decision was
		// made and recorded; re-emit it (JetStream de-duplicates by the
		// same Nats-Msg-Id), never decide again.
		msgs, err := decodeOutputs(out, it.body)
		if err != nil {
			return fmt.Errorf("%w: recorded outcome: %w", errUnreadableRecord, err)
		}
		it.outputs, it.reemit = msgs, true
		if it.msg != nil {
			if md, err := it.msg.Metadata(); err == nil && now.Sub(md.Timestamp) >= g.cfg.Streams.DuplicateWindow {
				// Validate keeps the window longer than a decision
				// token lives: a copy stored again carries a dead one.
				g.log.Warn().Uint64("ingress_seq", it.seq).Dur("age", now.Sub(md.Timestamp)).
					Msg("re-emitting outputs decided longer ago than streams.duplicate_window: an output may be stored twice (its decision token has expired)")
			}
		}
		return nil
	}
	if it.route != "" {
		return nil // denied by a stateless gate; nothing authenticated to key on
	}
	end := g.gate(it, "ledger")
	defer end()
	prev, seen, err := b.Replay(it.replay, now)
	if err != nil {
		return fmt.Errorf("%w: replay entry: %w", errUnreadableRecord, err)
	}
	// The ledger may have pruned the entries of a message expiring before
	// its horizon, and could not tell its replay from a first sighting.
	// Freshness refuses every such message while the limits and the clock
	// are those the ledger pruned under; this refuses it when the skew was
	// raised since, the clock stepped back past a prune, or a prune at a
	// later clock than the batch's ran during the lookup. The horizon is
	// read after the lookup: a prune raises it before it deletes.
	if h := b.Horizon(); it.env.ExpiresAt.Before(h) {
		it.deny(reason.Deny(reason.MessageExpired, "expires_at %s is before the ledger's horizon %s",
			it.env.ExpiresAt.Format(time.RFC3339Nano), h.Format(time.RFC3339Nano)))
		return nil
	}
	// The same ingress message (same stream sequence) whose entries
	// reached the journal but whose outcome did not (scale-out: an
	// append that failed part way): its decision was never published,
	// so it is decided now, not taken for its own replay. An operator
	// replay's entry there records its own decision, made past the
	// checks below, which it is not held to again.
	again := seen && prev.Seq == it.seq
	if again {
		seen = false
	}
	if seen && it.replayBy == "" {
		it.deny(reason.Deny(reason.ReplayDetected, "message %s first seen at ingress sequence %d", it.env.MessageID, prev.Seq))
		return nil
	}
	if seen && prev.Decision.Route != store.RouteDeny {
		// An operator replay: the nonce passes once, and only for a
		// message whose recorded decision was a denial.
		it.deny(reason.Deny(reason.ReplayRefused, "message %s was not denied (%s)", it.env.MessageID, prev.Decision.Route))
		return nil
	}
	// A message the ledger has an entry of was first decided after the
	// journal's loss, and is judged by what the ledger knows.
	if !seen && !again && g.unknowable(b, it, now) {
		return nil
	}
	if it.replayBy != "" {
		// The marker must outlast every fresh copy of the message. It
		// is set by the first re-submission to reach this gate, whether
		// or not the ledger knows the message: one first denied before
		// this gate (a revoked agent, say) has no entry, and its
		// re-submission is its one replay all the same. It is journaled
		// after the message's replay entry (finish), so a marker in the
		// journal always has the entry saying whose it is: one set by
		// this message's first decision comes with its entry, and this
		// is again.
		first, err := b.setReplayMarker(it, g.fresh.LastFresh(it.env.ExpiresAt))
		if err != nil {
			return err
		}
		if !first && !again {
			it.deny(reason.Deny(reason.ReplayRefused, "message %s was already replayed", it.env.MessageID))
			return nil
		}
	}
	provisional := store.ReplayEntry{Seq: it.seq, Expires: it.env.ExpiresAt, BodyDigest: it.digest}
	if err := b.PutReplay(it.replay, provisional); err != nil {
		return err
	}
	it.keyed = true
	first, used, err := b.Idem(it.idem, now)
	if err != nil {
		return err
	}
	// A prune at a later clock than the batch's (a recovered batch is
	// judged up to ack_wait before the clock) may have dropped the entry
	// of a request made under this key that is still live at now: an
	// entry lives until its expiry + skew, and the prune dropped those
	// expiring before the horizon. The replay check above covers the
	// message's own entry; this, an earlier request's under its key (a
	// key that is the message id names no other message).
	if !used && it.env.IdempotencyKey != it.env.MessageID && now.Add(-g.cfg.Limits.Skew).Before(b.Horizon()) {
		it.deny(reason.Deny(reason.LedgerIncomplete, "the ledger pruned, at a later clock than this decision's, entries a request under idempotency key %s may have had", it.env.IdempotencyKey))
		return nil
	}
	if used && !((it.replayBy != "" || again) && first.MessageID == it.env.MessageID) {
		if first.PayloadDigest == it.payload {
			it.deny(reason.Deny(reason.DuplicateRequest, "same request as message %s (decided %s %s)", first.MessageID, first.Decision.Route, first.Decision.Reason))
		} else {
			it.deny(reason.Deny(reason.IdempotencyConflict, "idempotency key first used by message %s with another payload", first.MessageID))
		}
		return nil
	}
	entry := store.IdemEntry{PayloadDigest: it.payload, MessageID: it.env.MessageID, Expires: it.env.ExpiresAt}
	if it.env.Capability == envelope.Approve {
		// An answer the gate refuses (a missing scope, a policy that
		// does not let this approver answer, a stale binding) leaves its
		// key free (keepsIdem). Its nonce is spent all the same.
		if err := g.approvalGate(b, cat, it, now); err != nil || it.route == store.RouteDeny {
			return err
		}
		return b.PutIdem(it.idem, entry)
	}
	if err := b.PutIdem(it.idem, entry); err != nil {
		return err
	}
	switch it.env.Capability {
	case envelope.Respond:
		return g.responseGate(b, cat, it, now)
	}
	endCat := g.gate(it, "catalog")
	t, err := g.catalogGate(cat, it)
	endCat()
	if err != nil {
		it.deny(err)
		return nil
	}
	it.target = t
	g.takeBudget(it, t, now)
	return nil
}

func (g *Gateway) catalogGate(cat *catalog.Catalog, it *item) (*catalog.Target, error) {
	env := it.env
	t, err := cat.Authorize(env.Target, env.Capability, env.Tenant, it.cred.HasScope)
	if err != nil {
		return nil, err
	}
	if !env.Payload.IsSealed() && !t.Plain {
		return nil, reason.Deny(reason.PlainNotAllowed, "target %s accepts sealed payloads only", t.Name)
	}
	if env.Payload.IsSealed() && t.ConsumerKey(env.Tenant) == "" {
		// Forwarding the opened plaintext would undo the sealing.
		return nil, reason.Deny(reason.SealMismatch, "target %s has no consumer key to re-seal to; send it plain", t.Name)
	}
	return t, nil
}

// policyRequest builds the Cedar request from trusted data only: the
// verified credential, the catalog and the clock; never message text
// except the capability and target the catalog already vetted.
func (g *Gateway) policyRequest(it *item, now time.Time, payload map[string]any) policy.Request {
	return policy.Request{
		Principal: principalOf(it.cred),
		Action:    string(it.env.Capability),
		Resource:  policy.Resource{Target: it.target.Name, Tenant: it.env.Tenant, Kind: it.target.Kind, Risk: it.target.Risk},
		Time:      now,
		Budget:    it.budget,
		Payload:   payload,
	}
}

// claimFields are payload fields that, when a payload carries them, must
// agree with the signed envelope: a payload cannot speak for another
// tenant, target, capability or audience than the envelope it rides in.
var claimFields = [...]string{"tenant", "target", "capability", "audience"}

// claimFold matches the claim fields under case folding.
var claimFold = envelope.NewFoldSet(claimFields[:]...)

// claimVariant denies (PayloadCaseVariant) a payload with a top-level
// member that differs only in case from a claim field: contradicts reads
// claim fields by exact name and would not see {"Tenant":"tenant_b"},
// which a case-insensitive decoder downstream (encoding/json's) reads as
// tenant. The detail names the claim field, never the member.
func claimVariant(obj map[string]any) error {
	field := ""
	for k := range obj {
		if of, ok := claimFold.Variant(k); ok && (field == "" || of < field) {
			field = of // the least, so the detail does not depend on map order
		}
	}
	if field != "" {
		return reason.Deny(reason.PayloadCaseVariant, "payload member differs only in case from claim field %q", field)
	}
	return nil
}

// contradicts denies a payload whose claim fields disagree with the
// signed envelope (content_denied). Values are never quoted.
func contradicts(env *envelope.Body, obj map[string]any) error {
	want := map[string]string{"tenant": env.Tenant, "target": env.Target, "capability": string(env.Capability), "audience": env.Audience}
	for _, f := range claimFields {
		v, ok := obj[f]
		if !ok {
			continue
		}
		if s, isStr := v.(string); !isStr || s != want[f] {
			return reason.Deny(reason.ContentDenied, "payload field %q contradicts the signed envelope", f)
		}
	}
	return nil
}

// principalOf is the Cedar principal of a verified credential.
func principalOf(c *identity.Credential) policy.Principal {
	return policy.Principal{Agent: c.Subject, Tenant: c.Tenant, Service: c.Service, Issuer: c.Issuer, Scopes: c.Scopes}
}

// decide runs policy, then (only if authorized) opens the payload,
// validates it, runs content policy and builds the outputs. Parallel.
func (g *Gateway) decide(it *item, now time.Time) {
	end := g.gate(it, "policy")
	pol := it.rules.pol.Decide(g.policyRequest(it, now, nil))
	end()
	it.pol = pol
	if !pol.Allow {
		it.deny(reason.Deny(reason.PolicyDenied, "no permit, or forbidden, at stage authorize"))
		return
	}
	plain, err := g.openPayload(it)
	if err != nil {
		it.deny(err)
		return
	}
	defer clear(plain)
	end = g.gate(it, "payload_schema")
	obj, err := g.decodePayload(plain)
	if err == nil {
		err = claimVariant(obj)
	}
	if err == nil {
		err = it.target.ValidateObject(obj) // visible-field variants, then the schema
	}
	end()
	if err != nil {
		it.deny(err)
		return
	}
	if err := contradicts(it.env, obj); err != nil {
		it.deny(err)
		return
	}
	visible := catalog.Pick(obj, it.target.PolicyVisible)
	if visible == nil {
		visible = map[string]any{} // non-nil: this is the content stage
	}
	end = g.gate(it, "content_policy")
	content := it.rules.pol.DecideContent(pol, g.policyRequest(it, now, visible))
	end()
	it.pol = content
	if !content.Allow {
		it.deny(reason.Deny(reason.ContentDenied, "no permit, or forbidden, at stage content"))
		return
	}
	if (pol.Approval || content.Approval || it.target.NeedsApproval) && !it.approved {
		it.route = store.RouteApproval // its headers name the route
		out, err := g.approvalOutput(it, now, catalog.Pick(obj, it.target.ApproverVisible))
		if err != nil {
			it.deny(err)
			return
		}
		it.outputs = []*nats.Msg{out}
		return
	}
	it.route = store.RouteAllow
	end = g.gate(it, "reseal_sign")
	out, err := g.allowOutput(it, now, plain)
	end()
	if err != nil {
		it.deny(err)
		return
	}
	it.outputs = []*nats.Msg{out}
}

// openPayload returns the plaintext payload: opened from the sealed box
// (counted, traced as gate "open") or the plain object's bytes. Callers
// run it only after authorization.
func (g *Gateway) openPayload(it *item) ([]byte, error) {
	defer g.gate(it, "open")()
	p := it.env.Payload
	if !p.IsSealed() {
		return append([]byte(nil), p.Plain...), nil
	}
	sealed, err := p.SealedBytes()
	if err != nil {
		return nil, err
	}
	g.stats.PayloadOpens.Add(1)
	g.metrics.PayloadOpens.Inc()
	return g.openSealed(sealed, p.From, p.To)
}

// decodePayload holds an opened payload to the envelope's strict JSON
// rules and decodes it for the schema and the content policy, in one
// pass (envelope.DecodePayload). A plain payload was checked with its
// envelope; a sealed one is checked here, before anything reads it:
// otherwise {"amount_cents":999999,"amount_cents":5} would pass a
// ceiling as 5 (the last member wins) and reach a consumer whose parser
// keeps the first.
func (g *Gateway) decodePayload(plain []byte) (map[string]any, error) {
	obj, err := envelope.DecodePayload(plain, envelope.Limits{MaxBytes: g.cfg.Limits.MaxBodyBytes})
	if err != nil {
		detail := "not strict JSON"
		var d *reason.Denial
		if errors.As(err, &d) {
			detail = d.Detail
		}
		return nil, reason.Deny(reason.PayloadInvalid, "opened payload: %s", detail)
	}
	return obj, nil
}

// hexDigest is "sha256:" and the lowercase hex of d.
func hexDigest(d [32]byte) string {
	var b [len("sha256:") + 2*len(d)]byte
	copy(b[:], "sha256:")
	hex.Encode(b[len("sha256:"):], d[:])
	return string(b[:])
}

// digestHex is hexDigest(it.digest), computed once per message; the
// decision tokens take the hex without its prefix. Only the decider
// calls it.
func (it *item) digestHex() string {
	if it.digestText == "" {
		it.digestText = hexDigest(it.digest)
	}
	return it.digestText
}
