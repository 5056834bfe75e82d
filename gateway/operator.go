package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// replayAuthTTL bounds how long a replay authorization stays usable: the
// re-submitted message is normally decided within milliseconds.
const replayAuthTTL = 5 * time.Minute

// serveOperator answers operator requests on operator.Subject until ctx
// ends. Queue group: with several gateways, one answers.
func (g *Gateway) serveOperator(ctx context.Context) error {
	sub, err := g.nc.QueueSubscribe(operator.Subject, "agentgw", func(m *nats.Msg) {
		if !subjects.ReplyInbox(m.Reply) {
			// Nobody to answer, or an answer the gateway's connection must
			// not publish (subjects.ReplyInbox): dropped, unanswered.
			g.log.Debug().Int("reply_bytes", len(m.Reply)).Msg("operator request without an inbox to answer; dropped")
			return
		}
		res := g.handleOperator(ctx, m)
		data, _ := json.Marshal(res)
		_ = m.Respond(data)
	})
	if err != nil {
		return fmt.Errorf("gateway: operator service: %w", err)
	}
	// A subscription the server refuses (permissions) fails only
	// asynchronously: flush, then ask the subscription.
	if err := g.nc.FlushTimeout(5 * time.Second); err == nil {
		if _, _, err := sub.Pending(); err != nil {
			return fmt.Errorf("gateway: operator service on %s: %w", operator.Subject, err)
		}
	}
	<-ctx.Done()
	return sub.Drain()
}

func (g *Gateway) handleOperator(ctx context.Context, m *nats.Msg) operator.Result {
	now := g.clock()
	res, ev, err := g.operatorRequest(ctx, m, now)
	if err != nil {
		res = operator.Result{Error: err.Error(), Code: string(reason.Of(err))}
		ev.Reason, ev.Detail = string(reason.Of(err)), headerSafe(err.Error())
	}
	ev.Time, ev.Kind, ev.Gateway = now.UTC(), audit.KindOperatorReplay, g.PublicKey()
	kind, result := "replay", "ok"
	if ev.DryRun {
		kind = "dry_run"
	}
	if err != nil {
		result = string(reason.Of(err))
	}
	g.metrics.OperatorReqs.WithLabelValues(kind, result).Inc()
	// An audit event's route is a decision's (allow, approval, deny):
	// a re-submission has none yet, and a dry run that predicts none
	// says so in its detail.
	ev.Route = res.Route
	switch ev.Route {
	case "submitted":
		ev.Route = ""
	case DryRunNotPredicted:
		ev.Route, ev.Detail = "", headerSafe(DryRunNotPredicted+": "+res.Detail)
	}
	g.logDecision(ev)
	// An event with no tenant (a credential or request signature that did
	// not verify) is filed under the unroutable tenant.
	subj, err := subjects.Audit(ev.Tenant)
	if err != nil {
		subj, _ = subjects.Audit(UnroutableTenant)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := g.js.Publish(pctx, subj, ev.AppendJSON(nil)); err != nil {
		g.log.Warn().Err(err).Msg("operator audit event not stored")
	}
	return res
}

// operatorRequest verifies the operator (credential, signature, scope,
// tenant, freshness) and then dry-runs or re-submits the denied message.
func (g *Gateway) operatorRequest(ctx context.Context, m *nats.Msg, now time.Time) (operator.Result, audit.Event, error) {
	var ev audit.Event
	cred, err := g.verifier.Verify(m.Header.Get(header.Credential), now)
	if err != nil {
		return operator.Result{}, ev, err
	}
	// No tenant (filed under the unroutable one) until the request is
	// signed by the credential's key: a credential is a bearer token, and
	// its holder alone must not write into the tenant's audit stream.
	ev.Operator, ev.CredentialID, ev.Issuer = cred.Subject, cred.ID, cred.Issuer
	pub, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(cred.Subject))
	if err != nil {
		return operator.Result{}, ev, reason.Deny(reason.MalformedCredential, "operator key")
	}
	sig, err := envelope.DecodeSignature(m.Header.Get(header.Signature))
	if err != nil || !envelope.VerifyBytes(ed25519.PublicKey(pub), operator.SigningInput(m.Data), sig[:]) {
		return operator.Result{}, ev, reason.Deny(reason.BadSignature, "operator request signature")
	}
	// Then under the operator's own tenant until the request is known to
	// be for it: a request naming another tenant must not write into that
	// tenant's audit stream.
	ev.Tenant = cred.Tenant
	req, err := operator.Parse(m.Data, now, g.cfg.Limits.Skew)
	if err != nil {
		return operator.Result{}, ev, err
	}
	ev.DeniedSeq, ev.DryRun = req.DeniedSeq, req.DryRun
	if req.Tenant != cred.Tenant {
		return operator.Result{}, ev, reason.Deny(reason.TenantMismatch, "operator of tenant %s asked about tenant %s", cred.Tenant, req.Tenant)
	}
	if !cred.HasScope(operator.Scope) {
		return operator.Result{}, ev, reason.Deny(reason.MissingScope, "replay requires scope %s", operator.Scope)
	}
	denied, err := g.deniedMessage(ctx, req.DeniedSeq, req.Tenant)
	if err != nil {
		return operator.Result{}, ev, err
	}
	ev.MessageID, ev.TraceID = denied.hdr.Get(header.MessageID), denied.hdr.Get(header.TraceID)
	ev.Agent = denied.ref.Agent
	if req.DryRun {
		// A re-submission is used up even when it was denied again (the
		// agent still revoked, say): the dry run says so instead of
		// predicting a replay the gateway would refuse.
		in, found, err := g.resubmitted(ctx, denied, req.DeniedSeq)
		if err != nil {
			return operator.Result{}, ev, err
		}
		if found {
			return operator.Result{DryRun: true, Route: string(store.RouteDeny), Reason: string(reason.ReplayRefused),
				Detail: fmt.Sprintf("denied message %d was already re-submitted, as ingress %d", req.DeniedSeq, in)}, ev, nil
		}
		return g.dryRun(denied, now), ev, nil
	}
	seq, err := g.resubmit(ctx, denied, req.DeniedSeq, cred.Subject, m.Header.Get(header.Credential), now)
	if err != nil {
		return operator.Result{}, ev, err
	}
	return operator.Result{Route: "submitted", IngressSeq: seq}, ev, nil
}

// deniedMessage reads a denied message back as the ingress item it was,
// its credential opened from the seal.
func (g *Gateway) deniedMessage(ctx context.Context, seq uint64, tenant string) (*item, error) {
	s, err := g.js.Stream(ctx, StreamDenied)
	if err != nil {
		return nil, fmt.Errorf("gateway: denied stream: %w", err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if err != nil {
		return nil, reason.Deny(reason.ReplayRefused, "no denied message at sequence %d", seq)
	}
	t, _, err := subjects.ParseDenied(raw.Subject)
	if err != nil || t != tenant {
		return nil, reason.Deny(reason.ReplayRefused, "denied message %d is not of tenant %s", seq, tenant)
	}
	if digest := raw.Header.Get(header.BodyDigest); digest != "" {
		// The record names the body (an oversized one) without holding
		// it: there is nothing to re-submit.
		return nil, reason.Deny(reason.ReplayRefused, "denied message %d does not hold its body (%s, %s bytes)",
			seq, headerSafe(digest), headerSafe(raw.Header.Get(header.BodyBytes)))
	}
	if len(raw.Data) == 0 {
		// A denial standing for an output refused as too large (its
		// message's body is on no record), or of an empty body.
		return nil, reason.Deny(reason.ReplayRefused, "denied message %d holds no body", seq)
	}
	ref, err := subjects.ParseIngress(raw.Header.Get(header.IngressSubject))
	if err != nil {
		return nil, reason.Deny(reason.ReplayRefused, "denied message %d has no replayable ingress subject", seq)
	}
	// The re-submission goes to this subject: it must be of the tenant
	// the record is filed under, the operator's.
	if ref.Tenant != tenant {
		return nil, reason.Deny(reason.ReplayRefused, "denied message %d was not received on an ingress subject of tenant %s", seq, tenant)
	}
	hdr := nats.Header{}
	for _, k := range []string{header.Signature, header.Traceparent, header.MessageID, header.TraceID, header.Notify} {
		if v := raw.Header.Get(k); v != "" {
			hdr.Set(k, v)
		}
	}
	// The credential is on the record only sealed to this gateway's curve
	// key and bound to the body; a plain one is never taken from it. A
	// record without one (the agent sent none) replays without one.
	if sealed := raw.Header.Get(header.CredentialSealed); sealed != "" {
		tok, err := g.openCredential(sealed, raw.Header.Get(header.CredentialSealedTo), raw.Data)
		if err != nil {
			return nil, reason.Deny(reason.ReplayRefused, "denied message %d: %v", seq, err)
		}
		hdr.Set(header.Credential, tok.Reveal())
	}
	it := &item{subject: raw.Header.Get(header.IngressSubject), hdr: hdr, body: raw.Data, seq: seq, ref: ref, refOK: true,
		recorded: reason.Code(raw.Header.Get(header.Reason))}
	return it, nil
}

// DryRunNotPredicted is the route of a dry run that does not predict
// the decision: the record is an approver's answer (`approve`) or a
// consumer's response (`respond`), which the real replay's approval or
// response gate decides on the held request or outstanding record it
// answers (taken by a valid answer), a state a dry run does not read;
// or a policy that takes the message in reads the budget or decides at
// stage content, or its record was denied by the budget or on its
// opened payload, none of which a dry run takes or opens. Every gate the
// dry run runs let the message through.
const DryRunNotPredicted = "not_predicted"

// dryRun re-evaluates a denied message against the current credential
// trust, revocations, ledger entries (the message's replay entry and
// single-use marker, its idempotency key's entry), catalog and policy,
// with no side effect: no ledger write, no budget taken, no payload
// opened (content policy runs on the real replay). A record of an
// `approve` or `respond` envelope that passes the gates before the
// approval or response gate is answered DryRunNotPredicted.
func (g *Gateway) dryRun(it *item, now time.Time) operator.Result {
	res := operator.Result{DryRun: true}
	// Nothing is decided, so nothing is traced: a span would join the
	// original message's trace as if it had been decided again.
	it.untraced = true
	g.verifyAt(it, now)
	if it.route == "" {
		// Scaled out, the entry and the marker are in the ledger of
		// whichever instance holds the message's partition, maybe not
		// this one: the real replay's ledger gate decides then. As there,
		// a message seen is refused when its decision was not a denial,
		// or when it was replayed already (its single-use marker is set:
		// a replay denied again uses it up, for every record of it).
		for _, led := range g.ledgers() {
			prev, seen, err := led.Replay(it.replay, now)
			if err != nil || !seen {
				continue
			}
			if prev.Decision.Route != store.RouteDeny {
				it.deny(reason.Deny(reason.ReplayRefused, "message %s was not denied (%s)", it.env.MessageID, prev.Decision.Route))
				break
			}
			if marked, err := led.Marked("replay", replayMarkerID(it.replay), g.fresh.LastFresh(it.env.ExpiresAt)); err == nil && marked {
				it.deny(reason.Deny(reason.ReplayRefused, "message %s was already replayed", it.env.MessageID))
				break
			}
		}
	}
	if it.route == "" {
		g.dryRunIdem(it, now)
	}
	if it.route == "" && (it.env.Capability == envelope.Approve || it.env.Capability == envelope.Respond) {
		gate := "approval"
		if it.env.Capability == envelope.Respond {
			gate = "response"
		}
		res.Route = DryRunNotPredicted
		res.Detail = fmt.Sprintf("capability %s is decided by the %s gate of the real replay, on the request it answers "+
			"as it stands then; a dry run does not run that gate (the gates before it pass)", it.env.Capability, gate)
		return res
	}
	if it.route == "" {
		r := g.rules.Load()
		if t, err := g.catalogGate(r.cat, it); err != nil {
			it.deny(err)
		} else {
			it.target = t
			req := g.policyRequest(it, now, nil)
			pol := r.pol.Decide(req)
			it.pol = pol
			dep := r.pol.DependsOn(req)
			if !pol.Allow && dep.Budget {
				// Decided without the budget a dry run does not take: a
				// policy that reads it errs on the empty record and
				// denies, where the real replay reads the budget as it is.
				res.Route, res.PolicyIDs = DryRunNotPredicted, pol.PolicyIDs
				res.Detail = "a policy that takes it in reads the budget, which a dry run does not take; without it, policy denies"
				return res
			}
			switch {
			case !pol.Allow:
				it.deny(reason.Deny(reason.PolicyDenied, "no permit, or forbidden, at stage authorize"))
			case pol.Approval || t.NeedsApproval:
				it.route = store.RouteApproval
			default:
				it.route = store.RouteAllow
			}
			if it.route != store.RouteDeny {
				why := unpredicted(dep, it.recorded)
				if why == "" {
					why = g.dryRunBudget(it, t, now)
				}
				if why != "" {
					res.Route, res.PolicyIDs = DryRunNotPredicted, pol.PolicyIDs
					res.Detail = why + "; the gates a dry run runs let it through"
					return res
				}
			}
		}
	}
	res.Route, res.PolicyIDs = string(it.route), it.pol.PolicyIDs
	if it.denial != nil {
		res.Reason, res.Detail = string(it.denial.Code), it.denial.Detail
	}
	return res
}

// unpredicted says why a message the dry run's gates let through may
// still be decided otherwise by the real replay ("" when nothing it does
// not run could): a policy that takes it in reads the budget or the
// payload, or is of the content stage; or its record was denied by a
// gate the dry run does not run (the budget, the opened payload).
func unpredicted(dep policy.Dependence, recorded reason.Code) string {
	switch info, _ := reason.Lookup(recorded); {
	case dep.Budget:
		return "a policy that takes it in reads the budget, which a dry run does not take"
	case dep.Content || dep.Payload:
		return "a policy that takes it in decides at stage content, on the opened payload, which a dry run does not open"
	case info.Stage == reason.StageBudget:
		return "its record was denied " + string(recorded) + " by the budget, which a dry run does not take"
	case info.Stage == reason.StagePayload:
		return "its record was denied " + string(recorded) + " on its opened payload, which a dry run does not open"
	}
	return ""
}

// dryRunBudget says why the real replay's budget gate, which takes a
// token where a dry run takes none, may deny what the dry run lets
// through ("" when it would not): a limited level of this instance's
// budgets has no whole token for it now; or, scaled out, a level is
// limited, and budgets are kept per instance: the partition's owner,
// which decides the replay, may be another.
func (g *Gateway) dryRunBudget(it *item, t *catalog.Target, now time.Time) string {
	st := g.budgets.Peek(it.env.Tenant, it.cred.Subject, t.Name, now, budgetLimit(t, g.cfg.Budgets.Target))
	switch {
	case st.Exhausted != "":
		return "its " + st.Exhausted + " budget has no token now, and the real replay takes one"
	case g.scale != nil && (st.Tenant >= 0 || st.Agent >= 0 || st.Target >= 0):
		return "a budget limits it, and budgets are kept per instance: the instance that decides the real replay may not be this one"
	}
	return ""
}

// dryRunIdem denies it, as the real replay's ledger gate does, when a
// ledger this gateway holds has a live entry under its idempotency key
// written by another message: duplicate_request for the same payload,
// idempotency_conflict for another. An entry of the message itself
// stands for its own earlier decision, which a replay is not held to.
// The lookup is read only: a ledger batch that is closed uncommitted
// (it waits for the decider's batch in progress to be started). Scaled
// out, the entry is in the ledger of the message's partition, maybe
// another instance's; a ledger that cannot be read is passed over, as
// the replay entry's lookup does.
func (g *Gateway) dryRunIdem(it *item, now time.Time) {
	for _, led := range g.ledgers() {
		first, used, err := idemEntry(led, it.idem, now)
		if err != nil || !used || first.MessageID == it.env.MessageID {
			continue
		}
		if first.PayloadDigest == it.payload {
			it.deny(reason.Deny(reason.DuplicateRequest, "same request as message %s (decided %s %s)", first.MessageID, first.Decision.Route, first.Decision.Reason))
		} else {
			it.deny(reason.Deny(reason.IdempotencyConflict, "idempotency key first used by message %s with another payload", first.MessageID))
		}
		return
	}
}

// idemEntry reads led's live entry under k at now, in a batch it closes
// uncommitted.
func idemEntry(led *store.Ledger, k store.IdemKey, now time.Time) (store.IdemEntry, bool, error) {
	b := led.NewBatch()
	defer b.Close()
	return b.Idem(k, now)
}

// dryRunReadTimeout bounds a dry run's read of the agent's ingress
// (resubmitted): the operator service answers one request at a time, for
// every tenant. A variable for tests.
var dryRunReadTimeout = 10 * time.Second

// resubmitted reports whether denied message deniedSeq was re-submitted
// within the ingress stream's duplicate window, the span in which
// JetStream refuses a second re-submission (its Nats-Msg-Id is fixed per
// denied message), and as which ingress sequence. It reads the headers
// of the agent's ingress messages of that window, up to the stream's
// last sequence when the read starts (an agent publishing on its own
// subject meanwhile does not keep it reading), within dryRunReadTimeout
// (else an internal_error denial). The window runs on the server's wall
// clock, so the start is wall time, not the decision clock.
func (g *Gateway) resubmitted(ctx context.Context, it *item, deniedSeq uint64) (uint64, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, dryRunReadTimeout)
	defer cancel()
	s, err := g.js.Stream(ctx, StreamIngress)
	if err != nil {
		return 0, false, readFailed(ctx, err)
	}
	return g.resubmittedUpTo(ctx, it, deniedSeq, s.CachedInfo().State.LastSeq)
}

// resubmittedUpTo is resubmitted reading no further than ingress
// sequence last.
func (g *Gateway) resubmittedUpTo(ctx context.Context, it *item, deniedSeq, last uint64) (uint64, bool, error) {
	if last == 0 {
		return 0, false, nil
	}
	start := time.Now().Add(-g.cfg.Streams.DuplicateWindow)
	c, err := g.js.OrderedConsumer(ctx, StreamIngress, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"agentgw.in.*." + it.ref.Tenant + "." + it.ref.Agent},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy, OptStartTime: &start, HeadersOnly: true,
	})
	if err != nil {
		return 0, false, readFailed(ctx, err)
	}
	// nats.go deletes an ordered consumer's server-side consumer when it
	// replaces it, not when the reading stops: the last one is deleted
	// here, or every dry run would leave one on the shared stream until
	// its inactivity threshold.
	defer func() {
		if info := c.CachedInfo(); info != nil {
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := g.js.DeleteConsumer(dctx, StreamIngress, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
				g.log.Warn().Err(err).Msg("operator dry run: delete the ingress reader")
			}
		}
	}()
	want := g.replayMsgID(it.body, deniedSeq)
	for {
		if err := ctx.Err(); err != nil {
			return 0, false, readFailed(ctx, err)
		}
		batch, err := c.FetchNoWait(256)
		if err != nil {
			return 0, false, readFailed(ctx, err)
		}
		n := 0
		var pending uint64
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if md.Sequence.Stream > last {
				return 0, false, nil
			}
			pending = md.NumPending
			if m.Headers().Get(header.MsgID) == want {
				return md.Sequence.Stream, true, nil
			}
		}
		if err := batch.Error(); err != nil {
			return 0, false, readFailed(ctx, err)
		}
		if n == 0 || pending == 0 {
			return 0, false, nil
		}
	}
}

// readFailed is the internal_error denial of a dry run whose read of the
// ingress stream failed with err, or ran out of time (ctx's deadline).
func readFailed(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return reason.Deny(reason.Internal, "ingress re-submissions: not read within %s", dryRunReadTimeout)
	}
	return reason.Deny(reason.Internal, "ingress re-submissions: %v", err)
}

// resubmit publishes the original message back to its ingress subject
// with a replay authorization only this gateway can sign. It then passes
// every gate again; the ledger lets the nonce through once, and only if
// its recorded decision was a denial.
func (g *Gateway) resubmit(ctx context.Context, it *item, deniedSeq uint64, operatorKey, operatorToken string, now time.Time) (uint64, error) {
	subj, err := subjects.Ingress(it.ref.Tenant, it.ref.Agent)
	if err != nil {
		return 0, err
	}
	m := nats.NewMsg(subj)
	m.Data = it.body
	for k, v := range it.hdr {
		if k == header.Credential || k == header.Signature || k == header.Traceparent || k == header.Notify {
			m.Header[k] = v
		}
	}
	sealedOp, err := g.box.SealCredential(operatorToken, it.body)
	if err != nil {
		return 0, fmt.Errorf("gateway: re-submit: seal the operator's credential: %w", err)
	}
	digest := envelope.Digest(it.body)
	exp := now.Add(replayAuthTTL).Unix()
	opDigest := sha256.Sum256([]byte(sealedOp))
	sig := g.signer.Sign(operator.ReplayInput(hex.EncodeToString(digest[:]), deniedSeq, operatorKey, exp, hex.EncodeToString(opDigest[:])))
	m.Header.Set(header.Replay, fmt.Sprintf("%d.%s.%d.%s", deniedSeq, operatorKey, exp, base64.RawURLEncoding.EncodeToString(sig)))
	m.Header.Set(header.ReplayCredential, sealedOp)
	// Repeated requests for one denied message collapse in JetStream.
	m.Header.Set(header.MsgID, g.replayMsgID(it.body, deniedSeq))
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := g.js.PublishMsg(pctx, m)
	if err != nil {
		return 0, fmt.Errorf("gateway: re-submit: %w", err)
	}
	if ack.Duplicate {
		return 0, reason.Deny(reason.ReplayRefused, "denied message %d was already re-submitted", deniedSeq)
	}
	return ack.Sequence, nil
}

// replayMsgID is the Nats-Msg-Id of the re-submission of denied message
// deniedSeq with body: "agw-replay-<denied seq>-" and the hex of the
// first 16 bytes of SHA-256 of the gateway's signature over
// operator.ReplayIDInput. JetStream de-duplicates ids across the whole
// ingress stream, whatever the subject, so an id anyone could compute
// would let any publisher on the stream, in any tenant, store it first
// and have the operator's replay refused as already re-submitted.
func (g *Gateway) replayMsgID(body []byte, deniedSeq uint64) string {
	digest := envelope.Digest(body)
	sum := sha256.Sum256(g.signer.Sign(operator.ReplayIDInput(hex.EncodeToString(digest[:]), deniedSeq)))
	return fmt.Sprintf("agw-replay-%d-%x", deniedSeq, sum[:16])
}

// replayAuth checks the Agentgw-Replay header of an ingress message, with
// the operator's sealed credential it binds (Agentgw-Replay-Credential),
// and returns the operator it authorizes and its expiry (Unix seconds),
// which the caller holds against the instant the message is judged at,
// with the credential's standing then (judge). An absent header is "",
// 0, nil; a present but invalid one, an empty value included, is a
// denial: only the gateway signs them. Header names are case-sensitive
// (docs/wire.md), so present means a value under the exact name.
func (g *Gateway) replayAuth(it *item) (string, int64, error) {
	vs, present := it.hdr[header.Replay]
	if !present {
		return "", 0, nil
	}
	v := ""
	if len(vs) > 0 {
		v = vs[0]
	}
	sealedOp := it.hdr.Get(header.ReplayCredential)
	bad := reason.Deny(reason.ReplayRefused, "invalid replay authorization")
	// At most five parts: the header is unauthenticated, and a split of
	// every "." of a header as long as max_payload would allocate 16
	// bytes per byte before the count refused it.
	parts := strings.SplitN(v, ".", 5)
	if len(parts) != 4 {
		return "", 0, bad
	}
	// One encoding only, as the gateway writes it: canonical decimals
	// and the 86-character canonical base64url of the signature.
	seq, ok1 := decimal(parts[0])
	uexp, ok2 := decimal(parts[2])
	sig, err := envelope.DecodeSignature(parts[3])
	if !ok1 || !ok2 || uexp > math.MaxInt64 || err != nil || !subjects.ValidAgent(parts[1]) {
		return "", 0, bad
	}
	exp := int64(uexp)
	pub, err := nkeys.Decode(nkeys.PrefixByteServer, []byte(g.PublicKey()))
	if err != nil {
		return "", 0, bad
	}
	digest := envelope.Digest(it.body)
	opDigest := sha256.Sum256([]byte(sealedOp))
	if sealedOp == "" || !envelope.VerifyBytes(ed25519.PublicKey(pub), operator.ReplayInput(hex.EncodeToString(digest[:]), seq, parts[1], exp, hex.EncodeToString(opDigest[:])), sig[:]) {
		return "", 0, bad
	}
	return parts[1], exp, nil
}

// replayStanding re-checks, as the re-submission (body, of tenant) it
// authorized is decided or, held for an approver, released, the
// credential of the operator that asked for it: opened from sealed (the
// Agentgw-Replay-Credential the authorization's signature binds),
// judged for its validity at the instant the gateway took the request
// (the authorization's expiry less replayAuthTTL) and for its standing
// (revocation of its jti, key or principal, its issuer's trust, the
// tenant, the scope) under what is in force now, as a held request's
// credential is at its release. An error is the replay_refused denial.
func (g *Gateway) replayStanding(sealed string, body []byte, tenant, operatorKey string, exp int64) error {
	refused := func(why string) error {
		return reason.Deny(reason.ReplayRefused, "replay authorized by operator %s, %s", operatorKey, why)
	}
	tok, err := g.openOwnCredential(sealed, body)
	if err != nil {
		return refused("whose credential no longer opens")
	}
	cred, err := g.verifier.Verify(string(tok), time.Unix(exp, 0).Add(-replayAuthTTL))
	switch {
	case err != nil:
		return refused(fmt.Sprintf("whose credential no longer stands (%s)", reason.Of(err)))
	case cred.Subject != operatorKey:
		return refused("with a credential of another key")
	case tenant == "" || cred.Tenant != tenant:
		return refused("of another tenant")
	case !cred.HasScope(operator.Scope):
		return refused("whose credential lacks scope " + operator.Scope)
	}
	return nil
}

// decimal reads s as an unsigned decimal written canonically: digits
// only, no sign, no leading zero (except "0" itself).
func decimal(s string) (uint64, bool) {
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil && strconv.FormatUint(v, 10) == s
}
