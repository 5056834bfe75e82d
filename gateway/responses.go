package gateway

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// Header names of replies (docs/design.md §7).
const (
	// RequestIDHeader names the request a reply answers by its message
	// id (the reply subject already names the agent).
	RequestIDHeader = "Agentgw-Request-Id"
	// ResponderHeader is the consumer that answered.
	ResponderHeader = "Agentgw-Responder"
)

// outstanding is the ledger's record of a delivered request that its
// consumer may answer: who asked (to seal the answer to), which target
// must answer, which consumer it was delivered to, and until when.
type outstanding struct {
	Tenant  string `json:"tenant"`
	Agent   string `json:"agent"`
	XKey    string `json:"xkey"`
	Target  string `json:"target"`
	TraceID string `json:"trace_id"`
	// Consumer is the target's consumer_xkey when the request was
	// delivered (the key a sealed request is re-sealed to): only a
	// response sealed from it answers the request.
	Consumer string    `json:"consumer_xkey"`
	Deadline time.Time `json:"deadline"`
	// AllowedAt is when the request was allowed: its deadline is also
	// AllowedAt plus the target's response_deadline in the catalog in
	// force at the answer, if that is earlier. Zero in a record written
	// before records named it.
	AllowedAt time.Time `json:"allowed_at,omitzero"`
	// Issuer and CredentialID name the requester's credential, whose
	// standing (revocation, issuer trust) an answer re-checks.
	Issuer       string `json:"issuer"`
	CredentialID string `json:"credential_id"`
	// Principal and Actors are the credential's: a revoked principal
	// ends its standing too.
	Principal string   `json:"principal,omitempty"`
	Actors    []string `json:"actors,omitempty"`
	// Scopes are the requester's credential's scopes, which an answer
	// re-checks against the scope the target asks in the catalog then.
	Scopes []string `json:"scopes"`
	// SealedTo is the gateway curve key a sealed request was sealed to.
	// Its reply is sealed from that key while the gateway still holds it
	// (keys.curve or keys.accepted_curves), so an agent that has not yet
	// taken a new curve key opens the reply to what it sent. Empty for a
	// plain request, whose reply comes from the current key.
	SealedTo string `json:"sealed_to,omitempty"`

	id        string // the record's hold id, set by responseGate
	messageID string // the request's message id, set by responseGate
}

// respPrefix keeps response records apart from approval holds.
const respPrefix = "resp:"

// responseID names an outstanding request by tenant, agent and message
// id, the replay ledger's key: a message id is unique per agent only, so
// another agent's request under the same id is another record, and an
// answer names the agent too (envelope.RequestRef).
func responseID(tenant, agent, messageID string) string {
	return respPrefix + tenant + "/" + agent + "/" + messageID
}

// stageOutstanding records an allowed request whose target takes
// responses. The hold outlives the deadline by the message TTL so that a
// late answer is told response_late rather than no_such_request.
func (g *Gateway) stageOutstanding(b *ledgerBatch, it *item, now time.Time) error {
	src := it
	if it.heldItem != nil {
		src = it.heldItem
	}
	if src.target == nil || src.target.ResponseDeadline <= 0 || src.env == nil || src.cred == nil {
		return nil
	}
	rec := outstanding{Tenant: src.env.Tenant, Agent: src.cred.Subject, XKey: src.cred.XKey, Target: src.target.Name,
		TraceID: src.env.TraceID, Consumer: src.target.ConsumerKey(src.env.Tenant), Deadline: now.Add(src.target.ResponseDeadline), AllowedAt: now,
		Issuer: src.cred.Issuer, CredentialID: src.cred.ID, Principal: src.cred.Principal, Actors: src.cred.Actors, Scopes: src.cred.Scopes}
	if src.env.Payload.IsSealed() {
		rec.SealedTo = src.env.Payload.To
	}
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return g.holds.putHold(b, responseID(rec.Tenant, rec.Agent, src.env.MessageID), rec.Deadline.Add(g.cfg.Limits.MaxTTL), v, it.seq, true)
}

// responseGate replaces the catalog gate for a `respond` envelope: the
// request it answers (named by agent and message id) must be
// outstanding, routed to a target this responder serves (scope
// respond:<target>), answered by the consumer it was delivered to and in
// time; the catalog in force now must still admit the answer
// (answerable); and its requester must still stand (no revocation of its
// key or credential, its issuer still trusted). Whether it is already
// answered is settled by markAnswered once the response is valid.
//
// The consumer is the holder of the target's consumer_xkey as it was when
// the request was delivered, the key a sealed request is re-sealed to:
// the response must be sealed from that key (the stateless gates already
// hold a sealed payload to the credential's xkey). The box opens only if
// it was sealed with that key's private half, or is one the gateway
// sealed to that key (a box's key is the same both ways): a delivery the
// gateway re-sealed to the consumer, sent back as an answer. Only a
// reader of the target's deliveries holding a credential that names the
// consumer key and respond:<target> can do that, and the answer is a
// request's own bytes, which its schema then judges as an answer
// (docs/security.md, Limits). Every instance sharing the target's
// durable consumer holds the key, since each must open what it is
// delivered.
func (g *Gateway) responseGate(b *ledgerBatch, cat *catalog.Catalog, it *item, now time.Time) error {
	agent, messageID, ok := envelope.ParseRequestRef(it.env.Target)
	if !ok { // Parse checked it; fail closed all the same
		it.deny(reason.Deny(reason.MalformedEnvelope, "target of respond must be <requesting agent key>/<message id>"))
		return nil
	}
	id := responseID(it.env.Tenant, agent, messageID)
	fh, ok, err := g.holds.hold(b, id, it.seq)
	if err != nil {
		return err
	}
	if !ok {
		it.deny(reason.Deny(reason.NoSuchRequest, "no outstanding request %s in tenant %s", it.env.Target, it.env.Tenant))
		return nil
	}
	var rec outstanding
	if err := json.Unmarshal(fh.value, &rec); err != nil {
		return fmt.Errorf("gateway: outstanding record %s: %w", id, err)
	}
	rec.id, rec.messageID = id, messageID
	if !it.cred.HasScope(catalog.RespondScopePrefix + rec.Target) {
		it.deny(reason.Deny(reason.NotYourRequest, "request %s was routed to %s; responder lacks respond:%s", it.env.Target, rec.Target, rec.Target))
		return nil
	}
	if rec.Consumer == "" || !it.env.Payload.IsSealed() || it.env.Payload.From != rec.Consumer {
		it.deny(reason.Deny(reason.WrongResponder, "request %s was delivered to consumer key %s; the response must be sealed from it", it.env.Target, rec.Consumer))
		return nil
	}
	if now.After(rec.Deadline) {
		it.deny(reason.Deny(reason.ResponseLate, "request %s had to be answered by %s", it.env.Target, rec.Deadline.UTC().Format(time.RFC3339)))
		return nil
	}
	// The catalog may have been reloaded since the request was
	// delivered. For the responder the request is gone, as below.
	t, err := answerable(cat, &rec)
	if err != nil {
		it.deny(reason.Deny(reason.NoSuchRequest, "request %s: %s", it.env.Target, err))
		return nil
	}
	// A response_deadline shortened since holds for requests already
	// delivered: the earlier of the two deadlines.
	if d := rec.AllowedAt.Add(t.ResponseDeadline); !rec.AllowedAt.IsZero() && now.After(d) {
		it.deny(reason.Deny(reason.ResponseLate, "request %s had to be answered by %s (response_deadline in the catalog now)", it.env.Target, d.UTC().Format(time.RFC3339)))
		return nil
	}
	// The answer goes to the requester: not once its key or credential
	// has been revoked, or its issuer lost the tenant's trust, since the
	// request was delivered. For the responder the request is gone.
	if err := g.requesterStanding(&rec); err != nil {
		it.deny(reason.Deny(reason.NoSuchRequest, "request %s: its requester no longer stands: %s", it.env.Target, reason.Of(err)))
		return nil
	}
	it.target, it.request = t, &rec
	return nil
}

// answerable is the target rec was routed to as cat has it, if cat
// still lets it carry an answer to rec's requester: the target is in the
// catalog, serves the requester's tenant, takes responses (a
// response_deadline, a consumer key for the tenant) and asks a scope the
// requester's credential holds. Not re-checked: the consumer key the
// answer must be sealed from, which stays the one the request was
// delivered under (a rotation binds only new requests); the target's kind
// and whether it takes plain payloads, which shaped the delivery, done
// already. A record written before records named the requester's scopes
// is checked on the rest, all it can name.
func answerable(cat *catalog.Catalog, rec *outstanding) (*catalog.Target, error) {
	t, ok := cat.Lookup(rec.Target)
	switch {
	case !ok:
		return nil, fmt.Errorf("target %s left the catalog", rec.Target)
	case !t.Serves(rec.Tenant):
		return nil, fmt.Errorf("target %s no longer serves tenant %s", t.Name, rec.Tenant)
	case t.ResponseDeadline <= 0 || t.ConsumerKey(rec.Tenant) == "":
		return nil, fmt.Errorf("target %s no longer takes responses", t.Name)
	case len(rec.Scopes) > 0 && !(&identity.Credential{Scopes: rec.Scopes}).HasScope(t.Scope):
		return nil, fmt.Errorf("target %s asks scope %s, which the requester's credential does not hold", t.Name, t.Scope)
	}
	return t, nil
}

// requesterStanding is nil while the requester of rec would still be
// accepted. A record written before records named the credential
// (issuer and credential id empty) is checked on its agent key alone,
// the one revocation it can name.
func (g *Gateway) requesterStanding(rec *outstanding) error {
	if rec.Issuer == "" && rec.CredentialID == "" {
		if g.revocations.Revoked("", "", rec.Agent) {
			return reason.Deny(reason.Revoked, "subject %s is revoked", rec.Agent)
		}
		return nil
	}
	return g.verifier.CredentialStanding(&identity.Credential{Tenant: rec.Tenant, Issuer: rec.Issuer, ID: rec.CredentialID,
		Subject: rec.Agent, Principal: rec.Principal, Actors: rec.Actors})
}

// answeredMarker is the kind of a request's single-use answer marker.
const answeredMarker = "answered"

// markAnswered consumes the request's single answer, once the response
// has passed every gate: an invalid response does not use it up. Runs in
// stream order, so of two answers in one batch only the first is
// delivered.
func (g *Gateway) markAnswered(b *ledgerBatch, it *item) error {
	first, err := g.holds.once(b, answeredMarker, it.request.id, it.request.Deadline.Add(g.cfg.Limits.MaxTTL), it.seq)
	if err != nil {
		return err
	}
	if !first {
		it.deny(reason.Deny(reason.AlreadyAnswered, "request %s already has a response", it.env.Target))
		it.outputs = nil
	}
	return nil
}

// decideResponse runs on the parallel stage for a valid answer: policy
// (action respond), then — only then — opening, the response schema,
// removal of sensitive fields, and re-sealing to the requesting agent.
func (g *Gateway) decideResponse(it *item, now time.Time) {
	rec := it.request
	end := g.gate(it, "policy")
	pol := it.rules.pol.Decide(policy.Request{
		Principal: principalOf(it.cred),
		Action:    string(envelope.Respond),
		Resource:  policy.Resource{Target: it.target.Name, Tenant: rec.Tenant, Kind: it.target.Kind, Risk: it.target.Risk},
		Time:      now,
	})
	end()
	it.pol = pol
	if !pol.Allow {
		it.deny(reason.Deny(reason.PolicyDenied, "policy does not let this consumer answer for %s", it.target.Name))
		return
	}
	if pol.Approval {
		// No approver can be asked about an answer: a permit that asks
		// for one is not a permit for it. Policy sets with such a permit
		// are refused at load; this keeps the answer from passing should
		// one be decided anyway.
		it.deny(reason.Deny(reason.PolicyDenied, "policy asks an approver for this answer, and an answer cannot be held"))
		return
	}
	plain, err := g.openPayload(it)
	defer clear(plain) // also when it is refused below
	if err == nil {
		_, err = g.decodePayload(plain) // strict, as for requests
	}
	if err != nil {
		it.deny(err)
		return
	}
	end = g.gate(it, "response_schema")
	redacted, err := it.target.ValidateResponse(plain)
	end()
	if err != nil {
		it.deny(err)
		return
	}
	defer clear(redacted)
	it.route = store.RouteAllow
	m, err := g.replyOutput(it, now, redacted)
	if err != nil {
		it.deny(err)
		return
	}
	it.outputs = []*nats.Msg{m}
}

// replyOutput is the redacted response sealed to the requesting agent,
// with a decision token addressed to it, on agentgw.reply.<tenant>.<agent>.
// The responder's envelope body is not forwarded: a plain response body
// would still hold the fields just removed.
func (g *Gateway) replyOutput(it *item, now time.Time, redacted []byte) (*nats.Msg, error) {
	rec := it.request
	subj, err := subjects.Reply(rec.Tenant, rec.Agent)
	if err != nil {
		return nil, err
	}
	box := g.boxOrCurrent(rec.SealedTo)
	sealed, err := box.Seal(redacted, rec.XKey)
	if err != nil {
		return nil, fmt.Errorf("gateway: seal reply: %w", err)
	}
	m := nats.NewMsg(subj)
	m.Data = sealed
	g.decisionHeaders(it, m.Header, now)
	m.Header.Set(RequestIDHeader, rec.messageID)
	m.Header.Set(ResponderHeader, it.cred.Subject)
	m.Header.Set(header.SealedFrom, box.PublicKey())
	p, err := decision.Prepare(g.signer, decision.Claims{
		Subject: rec.Agent, Audience: rec.Agent, IssuedAt: now, Expires: now.Add(g.cfg.Limits.DecisionTTL),
		Tenant: rec.Tenant, Scope: catalog.RespondScopePrefix + it.target.Name, TraceID: it.env.TraceID, MessageID: it.env.MessageID,
		BodyDigest: decision.Digest(it.body), PayloadDigest: decision.Digest(sealed),
		PolicyIDs: it.pol.PolicyIDs, PolicyVersion: it.pol.Version, Route: decision.RouteReply,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: reply token: %w", err)
	}
	it.unsigned = append(it.unsigned, unsignedToken{m: m, p: p})
	return m, nil
}
