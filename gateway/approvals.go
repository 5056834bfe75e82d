package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects/reason"
)

// held is what the ledger keeps of a request waiting for an approver:
// enough to run the remaining gates again at release (policy, opening,
// payload schema, content policy) and to put the original message on the
// denied stream if it is refused or expires. It stays in the ledger (or,
// scaled out, the holds bucket and the journal), never in a log; the
// credential in it is sealed to the gateway's curve key, as on the
// denied stream.
type held struct {
	Tenant         string              `json:"tenant"`
	IngressSeq     uint64              `json:"seq"`
	IngressSubject string              `json:"subject"`
	Header         map[string][]string `json:"header"`
	Body           []byte              `json:"body"`
	// CredentialSealed and CredentialSealedTo: header.CredentialSealed
	// and header.CredentialSealedTo.
	CredentialSealed   string   `json:"credential_sealed"`
	CredentialSealedTo string   `json:"credential_sealed_to"`
	Agent              string   `json:"agent"`
	Issuer             string   `json:"issuer"`
	CredentialID       string   `json:"jti"`
	Principal          string   `json:"principal,omitempty"` // the credential's nats.principal
	Actors             []string `json:"actors,omitempty"`    // the credential's nats.actors
	Service            string   `json:"service"`
	Scopes             []string `json:"scopes"`
	XKey               string   `json:"xkey"`
	Target             string   `json:"target"`
	// TargetKind and TargetRisk: the target's kind and risk as it was
	// held, which an approver's authority is judged on if the target has
	// left the catalog by the answer (absent in records held before they
	// were kept: judged as empty).
	TargetKind    string    `json:"target_kind,omitempty"`
	TargetRisk    string    `json:"target_risk,omitempty"`
	BodyDigest    string    `json:"body_digest"`
	PolicyVersion string    `json:"policy_version"`
	PolicyIDs     []string  `json:"policy_ids"`
	Deadline      time.Time `json:"deadline"`
	RequestedAt   time.Time `json:"requested_at"`
	// ReplayBy, ReplayExp and ReplayCredential: the operator whose replay
	// of a denied message this request is, its authorization's expiry
	// (Unix seconds) and its credential as the re-submission carried it
	// (header.ReplayCredential, sealed to the gateway); empty for a
	// request that is no replay. The operator's standing is judged again
	// with the requester's (heldStanding).
	ReplayBy         string `json:"replay_by,omitempty"`
	ReplayExp        int64  `json:"replay_exp,omitempty"`
	ReplayCredential string `json:"replay_credential,omitempty"`
}

// heldMarker is the kind of the marker that keeps a message id from
// being held twice (stageHold).
const heldMarker = "held"

// holdID names a held request: approvers answer by tenant and message id.
func holdID(tenant, messageID string) string { return tenant + "/" + messageID }

// holdRecord stages the hold of an item routed to approval at now (the
// instant its credential was judged at, which heldStanding judges it at
// again) until deadline.
func (g *Gateway) holdRecord(b *ledgerBatch, it *item, now, deadline time.Time) error {
	sealed, err := g.box.SealCredential(it.hdr.Get(header.Credential), it.body)
	if err != nil {
		return fmt.Errorf("gateway: seal credential: %w", err)
	}
	hdr := map[string][]string{header.Signature: {it.hdr.Get(header.Signature)}}
	if tp := it.hdr.Get(header.Traceparent); tp != "" {
		hdr[header.Traceparent] = []string{tp}
	}
	if !wantsNotice(it) {
		hdr[header.Notify] = []string{notice.NotifyNone}
	}
	h := held{
		Tenant: it.env.Tenant, IngressSeq: it.seq, IngressSubject: it.subject, Body: it.body, Header: hdr,
		CredentialSealed: sealed, CredentialSealedTo: g.box.PublicKey(),
		Agent: it.cred.Subject, Issuer: it.cred.Issuer, CredentialID: it.cred.ID, Principal: it.cred.Principal, Actors: it.cred.Actors, Service: it.cred.Service,
		Scopes: it.cred.Scopes, XKey: it.cred.XKey, Target: it.target.Name, TargetKind: it.target.Kind, TargetRisk: it.target.Risk,
		BodyDigest: it.digestHex(), PolicyVersion: it.pol.Version, PolicyIDs: it.pol.PolicyIDs,
		Deadline: deadline, RequestedAt: now,
	}
	if it.replayBy != "" {
		h.ReplayBy, h.ReplayExp, h.ReplayCredential = it.replayBy, it.replayExp, it.hdr.Get(header.ReplayCredential)
	}
	v, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return g.holds.putHold(b, holdID(it.env.Tenant, it.env.MessageID), deadline, v, it.seq, false)
}

// sharesParty reports whether two credentials act for one party: a
// non-empty principal or actor of one is the principal or an actor of
// the other. A delegated token's actor sent the request as much as its
// subject did, so neither may approve it.
func sharesParty(principalA string, actorsA []string, principalB string, actorsB []string) bool {
	a := append([]string{principalA}, actorsA...)
	b := append([]string{principalB}, actorsB...)
	for _, x := range a {
		if x != "" && slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// heldItem rebuilds the held request as an item whose gates after the
// catalog can run again. Its stateless gates ran when it was held; its
// sequence is the one whose output it becomes. ending rebuilds it only
// to deny it (an expiry or withdrawal): the body, which passed the size
// limit when it was held, is then read whatever the limit is now, so a
// lowered max_body_bytes cannot keep a hold from ending.
func (g *Gateway) heldItem(h *held, tenant string, seq uint64, r *rules, now time.Time, ending bool) (*item, error) {
	limit := g.cfg.Limits.MaxBodyBytes
	if ending {
		limit = max(limit, len(h.Body))
	}
	env, err := envelope.Parse(h.Body, envelope.Limits{MaxBytes: limit})
	if err != nil {
		return nil, err
	}
	hi := &item{
		subject: h.IngressSubject, hdr: nats.Header(h.Header), body: h.Body, seq: seq, start: now,
		credSealed: h.CredentialSealed, credSealedTo: h.CredentialSealedTo,
		env: env, digest: envelope.Digest(h.Body), payload: env.PayloadDigest(),
		cred:  &identity.Credential{ID: h.CredentialID, Issuer: h.Issuer, Subject: h.Agent, Tenant: tenant, Service: h.Service, Scopes: h.Scopes, XKey: h.XKey, Principal: h.Principal, Actors: h.Actors},
		pol:   policy.Decision{PolicyIDs: h.PolicyIDs, Version: h.PolicyVersion},
		rules: r,
	}
	// A request is held only once its signature bound it to its signer.
	hi.ref.Tenant, hi.ref.Agent, hi.refOK, hi.authed, hi.bound = tenant, h.Agent, true, true, true
	hi.replayBy, hi.replayExp = h.ReplayBy, h.ReplayExp
	t, ok := r.cat.Lookup(h.Target)
	if !ok {
		return hi, reason.Deny(reason.UnknownTarget, "target %q left the catalog while held", h.Target)
	}
	hi.target = t
	return hi, nil
}

// heldBefore makes it, decided again after a crash, end as its first
// decision did: held. Its first decision's hold, in the shared bucket
// (kh), has already ended meanwhile (expired, withdrawn, or taken by an
// answer), and that end is the request's answer: a new decision would
// end it a second time. It goes to the approval queue, as a request
// whose hold expired before it was decided again does (stageHold), its
// approval request rebuilt from the message and the hold's deadline
// (with no approver-visible fields and no policy: the hold can no longer
// be answered). false when its target has left the catalog; it is then
// left as decided.
//
// env is its envelope, or, for a body refused as oversized now, the one
// it was held with (the hold names this ingress message as its creator).
func (g *Gateway) heldBefore(it *item, env *envelope.Body, kh *kvHold, now time.Time) bool {
	r := it.rules
	if r == nil {
		r = g.rules.Load() // decided before the ledger gate
	}
	t, ok := r.cat.Lookup(env.Target)
	if !ok || !it.refOK {
		return false
	}
	it.env = env
	if it.cred == nil {
		it.cred = &identity.Credential{Subject: it.ref.Agent, Tenant: it.ref.Tenant}
	}
	requested := kh.Deadline.Add(-g.approvalTTL(t))
	var h held
	if json.Unmarshal(kh.Value, &h) == nil && !h.RequestedAt.IsZero() {
		requested = h.RequestedAt // still there when an answer took it
	}
	// Refused before the ledger gate (expired, say), it has no digests
	// yet; refused as oversized, its body digest only.
	if it.digest == ([32]byte{}) {
		it.digest = envelope.Digest(it.body)
	}
	if it.payload == ([32]byte{}) {
		it.payload = it.env.PayloadDigest()
	}
	it.route, it.denial = store.RouteApproval, nil
	it.target, it.deadline, it.pol = t, kh.Deadline, policy.Decision{}
	out, err := g.approvalOutputAt(it, requested, kh.Deadline, now, nil)
	if err != nil {
		it.deny(err) // no request without its token: fail closed
		it.outputs = nil
		return true
	}
	it.outputs = []*nats.Msg{out}
	return true
}

// matchHold rewrites the approval request of it to the times and policy of
// its own hold (v, a held record) that a decision before a crash wrote.
func (g *Gateway) matchHold(it *item, v []byte, now time.Time) {
	var h held
	if json.Unmarshal(v, &h) != nil || len(it.outputs) == 0 {
		return
	}
	var req approval.Request
	if json.Unmarshal(it.outputs[0].Data, &req) != nil {
		return
	}
	it.deadline = h.Deadline
	it.pol = policy.Decision{PolicyIDs: h.PolicyIDs, Version: h.PolicyVersion}
	out, err := g.approvalOutputAt(it, h.RequestedAt, h.Deadline, now, req.Fields)
	if err != nil {
		it.deny(err)
		it.outputs = nil
		return
	}
	it.outputs[0] = out
}

// approvalGate replaces the catalog gate for an `approve` envelope: the
// answer must name a pending request of the same tenant, come from
// someone other than the requester holding scope approve:<target>, and
// bind to the exact digest and policy version the approver was shown. A
// valid answer consumes the hold in the same batch: single use.
//
// "Someone other than the requester" is checked twice: another agent
// key, and, when both credentials name a principal (the IdP identity an
// exchanged credential was issued for), another principal, since one
// identity can exchange for credentials of any number of keys.
func (g *Gateway) approvalGate(b *ledgerBatch, cat *catalog.Catalog, it *item, now time.Time) error {
	id := holdID(it.env.Tenant, it.env.Target)
	fh, ok, err := g.holds.hold(b, id, it.seq)
	if err != nil {
		return err
	}
	if !ok {
		it.deny(reason.Deny(reason.ApprovalInvalid, "no pending request %s in tenant %s", it.env.Target, it.env.Tenant))
		return nil
	}
	var h held
	if err := json.Unmarshal(fh.value, &h); err != nil {
		return fmt.Errorf("gateway: held record %s: %w", id, err)
	}
	if it.cred.Subject == h.Agent {
		it.deny(reason.Deny(reason.SelfApproval, "approver is the requesting agent"))
		return nil
	}
	if sharesParty(it.cred.Principal, it.cred.Actors, h.Principal, h.Actors) {
		it.deny(reason.Deny(reason.SelfApproval, "approver's credential %s was issued for a party the request was sent by or for, through another key", it.cred.ID))
		return nil
	}
	if !it.cred.HasScope("approve:" + h.Target) {
		it.deny(reason.Deny(reason.MissingScope, "approving %s requires scope approve:%s", h.Target, h.Target))
		return nil
	}
	if it.env.Payload.IsSealed() {
		it.deny(reason.Deny(reason.ApprovalInvalid, "an answer is a plain payload"))
		return nil
	}
	ans, err := approval.ParseAnswer(it.env.Payload.Plain, envelope.Limits{MaxBytes: g.cfg.Limits.MaxBodyBytes})
	if err != nil {
		it.deny(err)
		return nil
	}
	if ans.BodyDigest != h.BodyDigest || ans.PolicyVersion != h.PolicyVersion {
		it.deny(reason.Deny(reason.ApprovalInvalid, "answer is bound to another request digest or policy version"))
		return nil
	}
	// A redelivery of the answer that took the hold (scaled out, its
	// instance died after the take) was in time when it took it, and
	// the expiry leaves a taken hold alone: refusing it now as late
	// would leave the held request with no end at all.
	if now.After(fh.deadline) && !fh.takenBySeq {
		it.deny(reason.Deny(reason.ApprovalExpired, "request %s expired at %s", it.env.Target, fh.deadline.Format(time.RFC3339)))
		return nil
	}
	// Rebuilt to end as well as to be released: a request whose target
	// has left the catalog, or whose body is larger than max_body_bytes
	// is now, can no longer be released, but an answer still ends it (a
	// grant denies it with that reason, a deny as approval_denied), so
	// that a deny is never refused and then overtaken by a grant once the
	// catalog or limit is changed back.
	hi, unreleasable := g.heldItem(&h, it.env.Tenant, it.seq, it.rules, now, true)
	if hi == nil {
		it.deny(unreleasable)
		return nil
	}
	res := policy.Resource{Target: h.Target, Tenant: hi.ref.Tenant, Kind: h.TargetKind, Risk: h.TargetRisk}
	if hi.target != nil {
		// An approval_ttl shortened since holds for requests already
		// held: the earlier of the two deadlines. (The expiry still ends
		// the request at its hold's deadline.)
		if d := h.RequestedAt.Add(g.approvalTTL(hi.target)); !h.RequestedAt.IsZero() && now.After(d) && !fh.takenBySeq {
			it.deny(reason.Deny(reason.ApprovalExpired, "request %s expired at %s (approval_ttl in the catalog now)", it.env.Target, d.Format(time.RFC3339)))
			return nil
		}
		res.Kind, res.Risk = hi.target.Kind, hi.target.Risk
	}
	if unreleasable == nil && len(h.Body) > g.cfg.Limits.MaxBodyBytes {
		unreleasable = reason.Deny(reason.Oversized, "body is %d bytes, over max_body_bytes %d now", len(h.Body), g.cfg.Limits.MaxBodyBytes)
	}
	// The approver's own authority goes through policy too, before the
	// take: a refused approver leaves the request held for another.
	ap := it.rules.pol.Decide(policy.Request{
		Principal: principalOf(it.cred),
		Action:    string(envelope.Approve),
		Resource:  res,
		Time:      now,
	})
	if !ap.Allow || ap.Approval {
		// An approver's answer cannot itself wait for an approver: a
		// permit that asks for one is not a permit for it.
		it.pol = ap
		it.deny(reason.Deny(reason.PolicyDenied, "policy does not let this approver answer for %s", h.Target))
		return nil
	}
	took, err := g.holds.takeHold(b, id, it.seq)
	if err != nil {
		return err
	}
	if !took {
		it.deny(reason.Deny(reason.ApprovalInvalid, "request %s was answered or expired meanwhile", it.env.Target))
		return nil
	}
	if ans.Decision == approval.Grant {
		// A release re-runs the credential gate: the requester's key or
		// credential may have been revoked, or its issuer untrusted,
		// since the request was held. Then the catalog gate: the target
		// may have stopped serving the tenant, changed its kind or scope,
		// or stopped taking plain payloads.
		if unreleasable != nil {
			hi.deny(heldDenial(unreleasable))
		} else if err := g.heldStanding(&h); err != nil {
			hi.deny(err)
		} else if t, err := g.catalogGate(cat, hi); err != nil {
			hi.deny(heldDenial(err))
		} else {
			hi.target = t
			// Policy sees the requester's budget as it is now; the
			// request's own token was taken when it was held.
			hi.budget = g.budgets.Peek(hi.ref.Tenant, h.Agent, t.Name, now, budgetLimit(t, g.cfg.Budgets.Target)).Context()
		}
	}
	hi.approved, hi.approver = true, it.cred.Subject
	it.heldFor = now.Sub(h.RequestedAt) // observed once the answer is recorded (reportDecided)
	hi.ctx = it.ctx                     // the release is traced under the answer's span
	it.heldItem, it.answer = hi, ans
	return nil
}

// decideApproval runs on the parallel stage for a valid answer, which
// took the hold (approvalGate): a grant whose requester still stands and
// whose request the current catalog still admits (both checked by
// approvalGate) re-runs every gate after the catalog on the held request
// with the current policy and releases it; a refusal, or a grant of a
// request that failed those checks, sends the held request to the
// denied stream. Either way the held request's output is the
// answer's.
func (g *Gateway) decideApproval(it *item, now time.Time) {
	hi := it.heldItem
	switch {
	case it.answer.Decision == approval.Deny:
		hi.deny(reason.Deny(reason.ApprovalDenied, "denied by approver %s", it.cred.Subject))
	case hi.route == store.RouteDeny:
		// The requester's credential lost its standing while held.
	default:
		g.decide(hi, now)
	}
	it.route, it.denial, it.pol = hi.route, hi.denial, hi.pol
	it.unsigned = append(it.unsigned, hi.unsigned...)
	if hi.route == store.RouteDeny {
		m, err := g.denyOutput(hi, now)
		if err != nil {
			it.heldItem = nil // the answer's own denial is its output
			it.deny(err)
			return
		}
		it.outputs = []*nats.Msg{m}
		return
	}
	it.outputs = hi.outputs
}

// expireLoop sends held requests whose deadline passed to the denied
// stream as approval_expired. Holds live in the ledger, so the timer
// survives restarts; the output's Nats-Msg-Id is fixed per hold, so a
// crash between publish and delete re-publishes into de-duplication.
//
// It also runs the sweep of held requests (sweepHolds) when one is
// requested: at start, and whenever the revocations are reloaded. A
// failed sweep is retried on the next tick.
func (g *Gateway) expireLoop(ctx context.Context) error {
	t := time.NewTicker(g.expireEvery)
	defer t.Stop()
	sweep := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-g.sweep:
			sweep = true
		}
		if sweep {
			if err := g.sweepHolds(ctx); err != nil {
				g.log.Warn().Err(err).Msg("sweep of held requests failed; will retry")
			} else {
				sweep = false
			}
		}
		if err := g.expireDue(ctx); err != nil {
			g.log.Warn().Err(err).Msg("approval expiry failed; will retry")
		}
	}
}

func (g *Gateway) expireDue(ctx context.Context) error {
	now := g.clock()
	if g.kvh != nil {
		return g.expireKV(ctx, now)
	}
	// One hold that fails (its record no longer rebuilds, say) is
	// reported and retried on the next tick; it does not stop the
	// others, which are due in deadline order behind it: a full page
	// is followed by the page after it, so however many fail, every
	// due hold is tried.
	var errs []error
	failed := 0
	for _, led := range g.ledgers() {
		var due []store.Hold
		for {
			var err error
			if len(due) == 0 {
				due, err = led.DueHolds(now, duePage)
			} else {
				due, err = led.DueHoldsAfter(now, due[len(due)-1], duePage)
			}
			if err != nil {
				errs = append(errs, err)
				break
			}
			for _, d := range due {
				if err := g.endDue(ctx, led, d, now); err != nil {
					failed++
					if failed <= 8 {
						errs = append(errs, err)
					}
				}
			}
			if len(due) < duePage || ctx.Err() != nil {
				break
			}
		}
	}
	if failed > 8 {
		errs = append(errs, fmt.Errorf("and %d more holds", failed-8))
	}
	return errors.Join(errs...)
}

// duePage is how many due holds expireDue reads at a time.
const duePage = 256

// endDue ends one due hold of the ledger: an outstanding request is
// forgotten, a recorded expiry or withdrawal published, a held request
// expired.
func (g *Gateway) endDue(ctx context.Context, led *store.Ledger, d store.Hold, now time.Time) error {
	var err error
	switch {
	case strings.HasPrefix(d.ID, respPrefix):
		// An outstanding request past its answer window: forget it.
		err = deleteHold(led, d.ID)
	case strings.HasPrefix(d.ID, expiredPrefix), strings.HasPrefix(d.ID, withdrawnPrefix):
		// An expiry or a withdrawal decided before a crash: publish
		// what it recorded.
		err = g.publishExpiry(ctx, led, d.ID, d.Value)
	default:
		err = g.expire(ctx, led, d.ID, now)
	}
	if err != nil {
		return fmt.Errorf("hold %s: %w", d.ID, err)
	}
	return nil
}

// expiredPrefix names the record of a decided expiry awaiting publish.
const expiredPrefix = "expired:"

// expire decides one hold's expiry inside a ledger batch, so it is
// serialized with the pipeline: a grant whose batch consumed the hold
// first wins and the expiry is skipped, and once the expiry has consumed
// the hold no grant can find it. The outputs are recorded in the same
// commit and published after it (re-published after a crash, into
// JetStream's de-duplication).
func (g *Gateway) expire(ctx context.Context, led *store.Ledger, id string, now time.Time) error {
	b := led.NewBatch()
	defer b.Close()
	deadline, v, ok, err := b.Hold(id)
	if err != nil || !ok || !now.After(deadline) {
		// Answered meanwhile, or not due after all: an answer at the
		// deadline itself still counts (approvalGate).
		return err
	}
	var h held
	if err := json.Unmarshal(v, &h); err != nil {
		return fmt.Errorf("gateway: held record %s: %w", id, err)
	}
	rec, ev, err := g.heldEndOutputs(&h, reason.Deny(reason.ApprovalExpired, "no answer before %s", deadline.UTC().Format(time.RFC3339)),
		audit.KindApprovalExpired, ".expired", now)
	if err != nil || rec == nil {
		return err
	}
	if err := b.DeleteHold(id); err != nil {
		return err
	}
	if err := b.PutHold(expiredPrefix+id, now, rec); err != nil {
		return err
	}
	if err := b.Commit(); err != nil {
		return err
	}
	g.metrics.Approvals.WithLabelValues("expired").Inc()
	g.metrics.ApprovalAge.Observe(now.Sub(h.RequestedAt).Seconds())
	g.logDecision(ev)
	return g.publishExpiry(ctx, led, expiredPrefix+id, rec)
}

// heldEndOutputs builds the outputs of a held request that ends without
// an answer: the held message to the denied stream with denial d, and
// its audit event of kind. Their Nats-Msg-Ids end in suffix (".expired",
// ".withdrawn"), which marks them as the held message's second, final
// output (internal/invariant). nil outputs and error: the held record
// cannot be rebuilt.
func (g *Gateway) heldEndOutputs(h *held, d *reason.Denial, kind, suffix string, now time.Time) ([]byte, audit.Event, error) {
	hi, err := g.heldItem(h, h.Tenant, h.IngressSeq, g.rules.Load(), now, true)
	if hi == nil {
		return nil, audit.Event{}, err
	}
	hi.deny(d)
	m, err := g.denyOutput(hi, now)
	if err != nil {
		return nil, audit.Event{}, err
	}
	m.Header.Set(header.MsgID, outputMsgID(hi, suffix))
	ev := g.auditEvent(hi, now, m.Subject)
	ev.Kind = kind
	am := g.auditOutput(hi, ev)
	// Its own id: the held request's audit event already used the
	// sequence-derived one, and JetStream would drop this as a copy.
	am.Header.Set(header.MsgID, outputMsgID(hi, suffix+".audit"))
	rec, err := encodeOutputs([]*nats.Msg{m, am}, nil)
	return rec, ev, err
}

// publishExpiry publishes a recorded expiry's outputs and then forgets
// the record.
func (g *Gateway) publishExpiry(ctx context.Context, led *store.Ledger, recID string, rec []byte) error {
	if left, err := g.publishRecorded(ctx, rec); err != nil {
		if left != nil {
			// Only what is left is published again: retried past the
			// output streams' duplicate window, a stored output would be
			// stored a second time (the request ending twice).
			return errors.Join(err, narrowRecord(led, recID, left))
		}
		return err
	}
	return deleteHold(led, recID)
}

// publishRecorded publishes recorded outputs in order, each waiting for
// its PubAck. When one fails after others were stored, left is the
// record of those not stored (nil when none was).
func (g *Gateway) publishRecorded(ctx context.Context, rec []byte) (left []byte, err error) {
	msgs, err := decodeOutputs(rec, nil)
	if err != nil {
		return nil, err
	}
	for i, out := range msgs {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := g.js.PublishMsg(pctx, out)
		if tooLarge(err) && isDenied(out.Subject) {
			// A denied record the server or its stream refuses for its
			// size is stored without its body, as the pipeline stores
			// one: retried as it is, the request would never end.
			out = withoutBodyCopy(out)
			msgs[i] = out
			_, err = g.js.PublishMsg(pctx, out)
		}
		cancel()
		if err != nil {
			err = fmt.Errorf("gateway: publish expiry: %w", err)
			if i == 0 {
				return nil, err
			}
			left, eerr := encodeOutputs(msgs[i:], nil)
			if eerr != nil {
				return nil, errors.Join(err, eerr)
			}
			return left, err
		}
	}
	return nil, nil
}

// narrowRecord replaces the outputs recorded under hold id (a decided
// expiry or withdrawal) by left, keeping its deadline.
func narrowRecord(led *store.Ledger, id string, left []byte) error {
	b := led.NewBatch()
	defer b.Close()
	deadline, _, ok, err := b.Hold(id)
	if err != nil || !ok {
		return err
	}
	if err := b.PutHold(id, deadline, left); err != nil {
		return err
	}
	return b.Commit()
}

func deleteHold(led *store.Ledger, id string) error {
	b := led.NewBatch()
	defer b.Close()
	if err := b.DeleteHold(id); err != nil {
		return err
	}
	return b.Commit()
}

// stageHold records the hold of an item routed to approval. A pending
// request under the same tenant and message id (another agent's, since an
// agent's own would be a replay) is never overwritten: the newcomer is
// denied.
func (g *Gateway) stageHold(b *ledgerBatch, it *item, now time.Time) error {
	id := holdID(it.env.Tenant, it.env.MessageID)
	fh, exists, err := g.holds.hold(b, id, it.seq)
	if err != nil {
		return err
	}
	if exists && fh.creator != it.seq {
		it.deny(reason.Deny(reason.ApprovalInvalid, "a request with message id %s is already pending in tenant %s", it.env.MessageID, it.env.Tenant))
		it.outputs = nil
		return nil
	}
	if exists {
		// Its own hold, from a decision before a crash (scaled out): the
		// hold stands as it was written, so the approval request it now
		// publishes names the hold's deadline and policy version, which
		// an answer must match.
		g.matchHold(it, fh.value, now)
		return nil
	}
	// An answer names the request it grants by tenant and message id
	// only, so a message id is held once while a copy of the body can
	// be fresh: another agent's copy of the same body, held after the
	// first hold ended, would take an answer given to the first.
	first, err := g.holds.once(b, heldMarker, id, g.fresh.LastFresh(it.env.ExpiresAt), it.seq)
	if err != nil {
		return err
	}
	if !first {
		it.deny(reason.Deny(reason.ApprovalInvalid, "a request with message id %s was held before in tenant %s", it.env.MessageID, it.env.Tenant))
		it.outputs = nil
		return nil
	}
	err = g.holdRecord(b, it, now, it.deadline)
	if ended, ok := errors.AsType[*ownHoldEnded](err); ok {
		// Scaled out: its first decision put the hold and died before
		// its journal append, and the hold ended meanwhile. The approval
		// request is rebuilt from the hold (its deadline, no fields, no
		// policy), not published as a live request no answer can take.
		if !g.heldBefore(it, it.env, ended.hold, now) {
			it.deny(reason.Deny(reason.ApprovalInvalid, "a request with message id %s was held before in tenant %s", it.env.MessageID, it.env.Tenant))
			it.outputs = nil
		}
		return nil
	}
	if errors.Is(err, errHoldExists) {
		// Another instance put it between the check and the write.
		it.deny(reason.Deny(reason.ApprovalInvalid, "a request with message id %s is already pending in tenant %s", it.env.MessageID, it.env.Tenant))
		it.outputs = nil
		return nil
	}
	return err
}

// pendingApprovals counts the held requests and the age of the oldest,
// for the approval-queue gauges. Scaled out it reads what the last expiry
// scan counted. A single instance reads its ledgers' holds in one pass,
// each in place (no copy): an id that names no held request (an
// outstanding response, a recorded expiry or withdrawal) is passed over
// without decoding its value, and of a held request only requested_at is
// decoded. So a reading costs one pass over the holds, however many of
// them are of other kinds, and memory for none of them.
func (g *Gateway) pendingApprovals() (int, time.Duration) {
	if g.kvh != nil {
		n := int(g.kvh.pending.Load())
		if n == 0 {
			return 0, 0
		}
		// Scaled out: the count as of the last expiry scan, the age from
		// the oldest request time it read.
		oldest := g.kvh.oldest.Load()
		if oldest == 0 {
			return n, 0
		}
		return n, max(0, g.clock().Sub(time.Unix(0, oldest)))
	}
	n := 0
	var first time.Time
	var rec struct {
		RequestedAt time.Time `json:"requested_at"`
	}
	for _, led := range g.ledgers() {
		err := led.ScanHolds(func(h store.Hold) error {
			if strings.HasPrefix(h.ID, respPrefix) || strings.HasPrefix(h.ID, expiredPrefix) || strings.HasPrefix(h.ID, withdrawnPrefix) {
				return nil
			}
			n++
			rec.RequestedAt = time.Time{}
			if json.Unmarshal(h.Value, &rec) == nil && !rec.RequestedAt.IsZero() && (first.IsZero() || rec.RequestedAt.Before(first)) {
				first = rec.RequestedAt
			}
			return nil
		})
		if err != nil {
			return 0, 0
		}
	}
	if first.IsZero() {
		return n, 0
	}
	return n, max(0, g.clock().Sub(first))
}

// approvalGauges is what the two approval-queue gauges read: one reading
// of pendingApprovals shared by the gauges of one scrape (taken again
// once it is a second old), so a scrape passes over the holds once.
func (g *Gateway) approvalGauges() (int, time.Duration) {
	r := &g.approvalReading
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.at.IsZero() || time.Since(r.at) >= time.Second {
		r.n, r.age = g.pendingApprovals()
		r.at = time.Now()
	}
	return r.n, r.age
}
