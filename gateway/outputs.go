package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/gateway/tracing"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// UnroutableTenant is the tenant token used on the denied stream for a
// message whose subject did not parse, so no tenant can be trusted.
const UnroutableTenant = subjects.UnroutableTenant

// outputMsgID derives the output's Nats-Msg-Id from what identifies the
// ingress message: (tenant, agent, message_id) and its stream sequence.
// The agent's own Nats-Msg-Id is never copied. The sequence keeps a
// replayed copy (same ids, new sequence) from being de-duplicated into
// nothing: it must still land on the denied stream.
func outputMsgID(it *item, suffix string) string {
	if it.outID != "" {
		return it.outID + suffix
	}
	h := sha256.New()
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], it.seq)
	h.Write(seq[:])
	if it.refOK {
		h.Write([]byte(it.ref.Tenant + "\x00" + it.ref.Agent + "\x00"))
	}
	if it.env != nil {
		h.Write([]byte(it.env.MessageID))
	}
	id := "agw-" + hex.EncodeToString(h.Sum(nil)[:16])
	if it.env != nil {
		it.outID = id // every input is known: the id of each output of it
	}
	return id + suffix
}

func (it *item) tenant() string {
	if it.refOK {
		return it.ref.Tenant
	}
	return UnroutableTenant
}

// traceHeaders copies only the W3C trace context from the agent; every
// other agent header (Nats-* above all) stays behind. With a tracer the
// output continues the gateway's span. Without one the gateway is not a
// hop of the trace: it passes on the agent's traceparent only when it
// names the signed trace id, and otherwise adds none (consumers fall
// back to the signed id). It never makes one up: a sampled traceparent
// makes nats-server parse every header of the message into a map on
// each publish (message tracing), a cost worth paying only when someone
// records the trace.
func traceHeaders(it *item, h nats.Header) {
	if it.ctx != nil {
		tracing.Inject(it.ctx, h)
		return
	}
	if it.env == nil || !it.bound {
		return // the trace id is signed only once the signature bound the message
	}
	if tp := it.hdr.Get(header.Traceparent); tracing.InTrace(tp, it.env.TraceID) {
		h.Set(header.Traceparent, tp)
	}
}

func (g *Gateway) decisionHeaders(it *item, h nats.Header, now time.Time) {
	h.Set(header.MsgID, outputMsgID(it, ""))
	h.Set(header.Route, string(it.route))
	h.Set(header.IngressSeq, strconv.FormatUint(it.seq, 10))
	h.Set(header.IngressSubject, it.subject)
	h.Set(header.DecidedAt, now.UTC().Format(time.RFC3339Nano))
	if it.env != nil {
		h.Set(header.MessageID, it.env.MessageID)
		h.Set(header.TraceID, it.env.TraceID)
		h.Set(header.Target, it.env.Target)
	}
	if it.refOK {
		h.Set(header.Tenant, it.ref.Tenant)
		h.Set(header.Agent, it.ref.Agent)
	}
	if len(it.pol.PolicyIDs) > 0 {
		h.Set(header.Policy, strings.Join(it.pol.PolicyIDs, ","))
	}
	if it.pol.Version != "" {
		h.Set(header.PolicyVersion, it.pol.Version)
	}
	traceHeaders(it, h)
}

// deliveryHeaders are the headers of a capability delivery, the hot path:
// what JetStream and an operator matching outputs to ingress need. The
// token, the agent's signature and the re-sealed payload are in the body
// (package delivery); the rest of what the denied and approval outputs
// say in headers (tenant, agent, target, trace id, policy, time) is in
// the signed token and envelope.
func (g *Gateway) deliveryHeaders(it *item) nats.Header {
	h := newHeaders(5)
	h.set(header.MsgID, outputMsgID(it, ""))
	h.set(header.Route, string(it.route))
	h.set(header.IngressSeq, strconv.FormatUint(it.seq, 10))
	h.set(header.MessageID, it.env.MessageID)
	traceHeaders(it, h.h)
	return h.h
}

// headers builds the headers of a hot-path output with one array for
// their values, rather than one slice per header as nats.Header.Set
// allocates. Keys must be canonical (package header's are).
type headers struct {
	h    nats.Header
	vals []string
}

// newHeaders has room for n headers; more still work.
func newHeaders(n int) headers {
	return headers{h: make(nats.Header, n), vals: make([]string, 0, n)}
}

func (hs *headers) set(k, v string) {
	hs.vals = append(hs.vals, v)
	hs.h[k] = hs.vals[len(hs.vals)-1 : len(hs.vals) : len(hs.vals)]
}

// denyOutput is the original message (body, the agent's signature, and
// its credential sealed to the gateway's own curve key, so that an
// operator replay can re-run every gate while no reader of the stream
// gets the credential) plus the decision record, on
// agentgw.denied.<tenant>.<reason>.
//
// A body denied oversized is not carried (withoutBody): it is refused
// again by any replay, and one near the server's max_payload, which an
// unauthenticated sender can publish, would make a record the server
// cannot take. The agent's headers are kept only as long as they can
// be: a credential no longer than identity.MaxTokenSize (a longer one
// never verifies), a signature no longer than maxKeptSignature. So a
// denied record is at most the body plus a bounded set of headers.
func (g *Gateway) denyOutput(it *item, now time.Time) (*nats.Msg, error) {
	subj, err := subjects.Denied(it.tenant(), it.denial.Code)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(subj)
	g.decisionHeaders(it, m.Header, now)
	if it.denial.Code == reason.Oversized {
		withoutBody(m, envelopeDigestHex(it), len(it.body))
	} else {
		m.Data = it.body
		in := it.hdr
		switch cred := in.Get(header.Credential); {
		case it.credSealed != "":
			m.Header.Set(header.CredentialSealed, it.credSealed)
			m.Header.Set(header.CredentialSealedTo, it.credSealedTo)
		case cred != "" && len(cred) <= identity.MaxTokenSize:
			sealed, err := g.box.SealCredential(cred, it.body)
			if err != nil {
				return nil, fmt.Errorf("gateway: seal credential: %w", err)
			}
			m.Header.Set(header.CredentialSealed, sealed)
			m.Header.Set(header.CredentialSealedTo, g.box.PublicKey())
		}
		if v := in.Get(header.Signature); v != "" && len(v) <= maxKeptSignature {
			m.Header.Set(header.Signature, v)
		}
		if !wantsNotice(it) {
			// What the sender asked for holds on an operator replay.
			m.Header.Set(header.Notify, notice.NotifyNone)
		}
	}
	m.Header.Set(header.Reason, string(it.denial.Code))
	if info, ok := reason.Lookup(it.denial.Code); ok {
		m.Header.Set(header.Stage, string(info.Stage))
	}
	m.Header.Set(header.Detail, headerSafe(it.denial.Detail))
	return m, nil
}

// maxKeptSignature bounds the signature header a denied record keeps, in
// bytes. A signature that verifies is 86 characters; a longer one is
// denied whatever the record says.
const maxKeptSignature = 128

// withoutBody makes m, a denied record, one that names its body (header
// BodyDigest, "sha256:<hex>", and BodyBytes, its size) instead of
// carrying it, and drops the agent's signature and sealed credential,
// which are bound to that body and useless without it. Such a record
// cannot be replayed (deniedMessage).
func withoutBody(m *nats.Msg, digest string, size int) {
	m.Header.Set(header.BodyDigest, digest)
	m.Header.Set(header.BodyBytes, strconv.Itoa(size))
	m.Header.Del(header.CredentialSealed)
	m.Header.Del(header.CredentialSealedTo)
	m.Header.Del(header.Signature)
	m.Data = nil
}

// allowOutput is a delivery (package delivery): the original body
// untouched, the payload re-sealed to the target's consumer, and a
// decision token binding both, which signTokens adds with the rest of the
// batch's before it encodes the body.
func (g *Gateway) allowOutput(it *item, now time.Time, plain []byte) (*nats.Msg, error) {
	subj, err := subjects.Capability(it.env.Tenant, it.target.Name)
	if err != nil {
		return nil, err
	}
	doc := &delivery.Doc{Signature: it.hdr.Get(header.Signature), Envelope: it.body}
	var resealed []byte
	if ck := it.target.ConsumerKey(it.env.Tenant); ck != "" {
		resealed, err = g.box.Seal(plain, ck)
		if err != nil {
			return nil, fmt.Errorf("gateway: re-seal: %w", err)
		}
		doc.Sealed, doc.SealedFrom = base64.RawURLEncoding.EncodeToString(resealed), g.box.PublicKey()
	}
	if err := doc.Check(); err != nil {
		return nil, reason.Deny(reason.Internal, "delivery: %v", err)
	}
	m := &nats.Msg{Subject: subj, Header: g.deliveryHeaders(it)}
	p, err := decision.Prepare(g.signer, g.decisionClaims(it, now, it.body, resealed))
	if err != nil {
		return nil, fmt.Errorf("gateway: decision token: %w", err)
	}
	it.unsigned = append(it.unsigned, unsignedToken{m: m, p: p, doc: doc})
	return m, nil
}

// approvalOutput is the redacted request approvers see.
func (g *Gateway) approvalOutput(it *item, now time.Time, visible map[string]any) (*nats.Msg, error) {
	return g.approvalOutputAt(it, now, now.Add(g.approvalTTL(it.target)), now, visible)
}

// approvalTTL is how long a request for t waits for an approver: the
// target's approval_ttl, or limits.approval_ttl.
func (g *Gateway) approvalTTL(t *catalog.Target) time.Duration {
	if t.ApprovalTTL != 0 {
		return t.ApprovalTTL
	}
	return g.cfg.Limits.ApprovalTTL
}

// approvalOutputAt is approvalOutput for a request held at requestedAt
// until deadline, decided at now. Its decision token (route approval,
// addressed to the target, bound to the held envelope and to the
// request's exact bytes) is the item's only unsigned token: signTokens
// puts it in the Agentgw-Decision header with the batch's others, so
// that an approver shows only what the gateway wrote.
func (g *Gateway) approvalOutputAt(it *item, requestedAt, deadline, now time.Time, visible map[string]any) (*nats.Msg, error) {
	req := approval.Request{
		HeldMessageID: it.env.MessageID,
		TraceID:       it.env.TraceID,
		Tenant:        it.env.Tenant,
		Agent:         it.cred.Subject,
		Service:       it.cred.Service,
		Capability:    string(it.env.Capability),
		Target:        it.target.Name,
		Risk:          it.target.Risk,
		PolicyIDs:     it.pol.PolicyIDs,
		PolicyVersion: it.pol.Version,
		BodyDigest:    it.digestHex(),
		PayloadDigest: hexDigest(it.payload),
		Fields:        visible,
		RequestedAt:   requestedAt.UTC(),
		Deadline:      deadline.UTC(),
	}
	it.deadline = req.Deadline
	subj, _ := subjects.Approval(it.env.Tenant, it.target.Name) // tenant and target validated by Parse and the catalog
	m := nats.NewMsg(subj)
	m.Data, _ = json.Marshal(req) // plain types only: cannot fail
	g.decisionHeaders(it, m.Header, now)
	p, err := decision.Prepare(g.signer, decision.Claims{
		Subject:       it.cred.Subject,
		Audience:      it.target.Name,
		IssuedAt:      now,
		Expires:       approvalTokenExpiry(now, req.Deadline),
		Tenant:        it.env.Tenant,
		Scope:         it.target.Scope,
		TraceID:       it.env.TraceID,
		MessageID:     it.env.MessageID,
		BodyDigest:    strings.TrimPrefix(req.BodyDigest, "sha256:"),
		PayloadDigest: decision.Digest(m.Data),
		PolicyIDs:     it.pol.PolicyIDs,
		PolicyVersion: it.pol.Version,
		Route:         decision.RouteApproval,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: approval request token: %w", err)
	}
	it.unsigned = []unsignedToken{{m: m, p: p}}
	return m, nil
}

// approvalTokenExpiry is the exp of an approval request's token: the
// request's deadline rounded up to the second, so that the token lives
// as long as the request can be answered, and at least a second after
// now (a request rebuilt for a hold that has already ended has its
// deadline behind it).
func approvalTokenExpiry(now, deadline time.Time) time.Time {
	exp := deadline.Truncate(time.Second)
	if exp.Before(deadline) {
		exp = exp.Add(time.Second)
	}
	if floor := now.Truncate(time.Second).Add(time.Second); exp.Before(floor) {
		exp = floor
	}
	return exp
}

// auditOutput records the decision on agentgw.audit.<tenant>.
func (g *Gateway) auditEvent(it *item, now time.Time, output string) audit.Event {
	ev := audit.Event{
		Time:          now.UTC(),
		Kind:          audit.KindDecision,
		Gateway:       g.PublicKey(),
		Route:         string(it.route),
		IngressSeq:    it.seq,
		Delivery:      it.delivery,
		Output:        output,
		PolicyIDs:     it.pol.PolicyIDs,
		PolicyVersion: it.pol.Version,
		LatencyMicros: now.Sub(it.start).Microseconds(),
	}
	if it.refOK {
		ev.Tenant, ev.Agent = it.ref.Tenant, it.ref.Agent
	}
	if it.denial != nil {
		ev.Reason, ev.Detail = string(it.denial.Code), audit.ClipDetail(it.denial.Detail)
		if info, ok := reason.Lookup(it.denial.Code); ok {
			ev.Stage = string(info.Stage)
		}
	}
	if e := it.env; e != nil {
		ev.TraceID, ev.MessageID, ev.Capability, ev.Target = e.TraceID, e.MessageID, string(e.Capability), e.Target
		ev.BodyDigest, ev.PayloadDigest = envelopeDigestHex(it), hexDigest(payloadDigest(it))
	} else if it.digest != ([32]byte{}) {
		ev.BodyDigest = it.digestHex() // an oversized body, which its record does not carry
	}
	ev.Operator = it.replayBy
	if it.heldItem != nil {
		ev.Kind, ev.Approver, ev.HeldMessageID = audit.KindApprovalGranted, it.cred.Subject, it.heldItem.env.MessageID
		ev.HeldOperator = it.heldItem.replayBy // the held request was an operator's replay
		if it.answer.Decision == approval.Deny {
			ev.Kind = audit.KindApprovalDenied
		}
	} else if it.route == store.RouteApproval {
		ev.Kind = audit.KindApprovalRequest
	}
	if c := it.cred; c != nil {
		ev.CredentialID, ev.Issuer, ev.Service, ev.Scopes = c.ID, c.Issuer, c.Service, c.Scopes
	}
	return ev
}

// payloadDigest is the envelope's payload digest, computed once by the
// verify gate when it ran.
func payloadDigest(it *item) [32]byte {
	if it.payload != ([32]byte{}) {
		return it.payload
	}
	return it.env.PayloadDigest()
}

// envelopeDigestHex is hexDigest of the envelope's SHA-256, from the
// digest the verify gate took when it has one.
func envelopeDigestHex(it *item) string {
	if it.digest != ([32]byte{}) {
		return it.digestHex()
	}
	return hexDigest(sha256.Sum256(it.body))
}

func (g *Gateway) auditOutput(it *item, ev audit.Event) *nats.Msg {
	m := nats.NewMsg(auditSubject(ev.Tenant))
	m.Data = ev.AppendJSON(make([]byte, 0, 1024))
	m.Header.Set(header.MsgID, outputMsgID(it, ".audit"))
	return m
}

// auditSubject is where the events of tenant go (an invalid tenant's to
// the unroutable one).
func auditSubject(tenant string) string {
	subj, err := subjects.Audit(tenant)
	if err != nil {
		subj, _ = subjects.Audit(UnroutableTenant)
	}
	return subj
}

// headerSafe keeps a header value on one line and bounded.
func headerSafe(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r < 0x20 {
			return ' '
		}
		return r
	}, s)
	if len(s) > 512 {
		s = s[:512]
	}
	return s
}

// Outputs are recorded in the ledger before they are published so that a
// redelivery re-emits exactly the same messages (same Nats-Msg-Id, deduped
// downstream) instead of deciding again. Encoding, version 1: a version
// byte, then uvarint-length-prefixed fields: count, and per message the
// subject, the header count, per header the key, value count and values,
// and the data — or, when the data is the ingress body itself (capability
// and denied outputs carry it untouched), a marker instead: the
// redelivered ingress message supplies the same bytes. Compact and
// allocation-light: it runs for every message.
const outcomeV1 = 1

// Data kinds of a recorded output.
const (
	dataInline  = 0
	dataIngress = 1
	// dataAround is prefix ‖ ingress body ‖ suffix: a delivery, which
	// embeds the envelope, is recorded without a second copy of it.
	dataAround = 2
)

// around reports where the ingress body sits in data: a delivery ends
// with the envelope and one closing brace.
func around(data, ingress []byte) (prefix, suffix []byte, ok bool) {
	n := len(ingress)
	if n == 0 || len(data) < n+1 {
		return nil, nil, false
	}
	at := len(data) - n - 1
	if !bytes.Equal(data[at:at+n], ingress) {
		return nil, nil, false
	}
	return data[:at], data[at+n:], true
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func encodeOutputs(msgs []*nats.Msg, ingress []byte) ([]byte, error) {
	// How each message's data is recorded, and the record's size: a
	// delivery's copy of the envelope is recorded by reference.
	type how struct {
		kind           byte
		prefix, suffix []byte
	}
	var small [4]how // a message has few outputs: none allocated for up to four
	hows := small[:]
	if len(msgs) > len(small) {
		hows = make([]how, len(msgs))
	}
	size := 8
	for i, m := range msgs {
		size += len(m.Subject) + 16
		for k, vs := range m.Header {
			size += len(k) + 8
			for _, v := range vs {
				size += len(v) + 4
			}
		}
		switch prefix, suffix, ok := around(m.Data, ingress); {
		case len(m.Data) > 0 && bytes.Equal(m.Data, ingress):
			hows[i].kind = dataIngress
		case ok:
			hows[i] = how{kind: dataAround, prefix: prefix, suffix: suffix}
			size += len(prefix) + len(suffix) + 8
		default:
			hows[i].kind = dataInline
			size += len(m.Data)
		}
	}
	b := make([]byte, 0, size)
	b = append(b, outcomeV1)
	b = binary.AppendUvarint(b, uint64(len(msgs)))
	for i, m := range msgs {
		b = appendString(b, m.Subject)
		b = binary.AppendUvarint(b, uint64(len(m.Header)))
		for k, vs := range m.Header {
			b = appendString(b, k)
			b = binary.AppendUvarint(b, uint64(len(vs)))
			for _, v := range vs {
				b = appendString(b, v)
			}
		}
		b = append(b, hows[i].kind)
		switch hows[i].kind {
		case dataAround:
			b = appendBytes(b, hows[i].prefix)
			b = appendBytes(b, hows[i].suffix)
		case dataInline:
			b = appendBytes(b, m.Data)
		}
	}
	return b, nil
}

// outcomeReader decodes with bounds checks: a damaged record is an
// error, never a panic.
type outcomeReader struct {
	b   []byte
	err error
}

func (r *outcomeReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("gateway: recorded outputs: truncated")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *outcomeReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		if r.err == nil {
			r.err = errors.New("gateway: recorded outputs: truncated")
		}
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *outcomeReader) byte1() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail()
		return 0xff
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *outcomeReader) fail() {
	if r.err == nil {
		r.err = errors.New("gateway: recorded outputs: truncated or damaged")
	}
}

// maxRecordedOutputs bounds the outputs of one recorded outcome. A
// message has a few of its own; the carrier of an audit message that a
// stream refused as too large has, besides, one audit message per event
// of the batch it carried (splitAudit): at most a batch's (consumer.batch
// ≤ 4096 messages), and no more than fit maxAuditMessage bytes.
const maxRecordedOutputs = 4096 + 64

func decodeOutputs(data, ingress []byte) ([]*nats.Msg, error) {
	if len(data) == 0 || data[0] != outcomeV1 {
		return nil, errors.New("gateway: recorded outputs: unknown format")
	}
	r := &outcomeReader{b: data[1:]}
	n := r.uvarint()
	if n == 0 || n > maxRecordedOutputs {
		return nil, errors.New("gateway: recorded outputs: bad count")
	}
	// Each output takes a few bytes of the record: a damaged count
	// allocates no more than the record can hold.
	msgs := make([]*nats.Msg, 0, min(n, uint64(len(r.b)/4+1)))
	for range n {
		m := &nats.Msg{Subject: string(r.bytes()), Header: nats.Header{}}
		hn := r.uvarint()
		for range min(hn, 64) {
			k := string(r.bytes())
			vn := r.uvarint()
			for range min(vn, 16) {
				m.Header[k] = append(m.Header[k], string(r.bytes()))
			}
		}
		switch r.byte1() {
		case dataIngress:
			m.Data = ingress
		case dataInline:
			m.Data = r.bytes()
		case dataAround:
			prefix, suffix := r.bytes(), r.bytes()
			m.Data = append(append(append(make([]byte, 0, len(prefix)+len(ingress)+len(suffix)), prefix...), ingress...), suffix...)
		default:
			r.fail()
		}
		if r.err != nil {
			return nil, r.err
		}
		msgs = append(msgs, m)
	}
	return msgs, nil
}

// bodyDigest is decision.Digest(body), from the digest the verify gate
// took when body is the envelope it verified.
func bodyDigest(it *item, body []byte) string {
	if it.digest != ([32]byte{}) && bytes.Equal(body, it.body) {
		return strings.TrimPrefix(it.digestHex(), "sha256:")
	}
	return decision.Digest(body)
}

// decisionClaims binds the decision to the exact body and to the payload
// bytes the consumer receives: the re-sealed box, or for plain targets
// the envelope's plain object as received.
func (g *Gateway) decisionClaims(it *item, now time.Time, body, resealed []byte) decision.Claims {
	payload := resealed
	if payload == nil {
		payload = it.env.Payload.Plain
	}
	return decision.Claims{
		Subject:       it.cred.Subject,
		Audience:      it.target.Name,
		IssuedAt:      now,
		Expires:       now.Add(g.cfg.Limits.DecisionTTL),
		Tenant:        it.env.Tenant,
		Scope:         it.target.Scope,
		TraceID:       it.env.TraceID,
		MessageID:     it.env.MessageID,
		BodyDigest:    bodyDigest(it, body),
		PayloadDigest: decision.Digest(payload),
		PolicyIDs:     it.pol.PolicyIDs,
		PolicyVersion: it.pol.Version,
		Route:         decision.RouteAllow,
		Act:           decision.Actor{Approver: it.approver},
	}
}
