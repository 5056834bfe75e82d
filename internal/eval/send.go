package eval

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
)

// actor is one case's instance of a named actor.
type actor struct {
	pub    string
	xkey   string
	signer *identity.Signer
	box    *identity.Box
	token  identity.Token
	tenant string
}

// message is one publish: subject, headers and body.
type message struct {
	subject string
	header  nats.Header
	body    []byte
}

// builder makes a case's messages and records every secret it creates.
type builder struct {
	t       *Target
	secrets *[]secret
	now     func() time.Time
}

// secret is a value the redaction scan looks for, and what to call it in
// a report (never the value).
type secret struct {
	kind  string
	value string
}

// minSecret is the shortest value the scan looks for: a shorter one (a
// stand-in payload such as {}) occurs in unrelated text and would be
// reported as a leak where there is none.
const minSecret = 12

func (b *builder) keep(kind, v string) {
	if len(v) >= minSecret {
		*b.secrets = append(*b.secrets, secret{kind, v})
	}
}

func (b *builder) keepSeed(kp nkeys.KeyPair) {
	seed, _ := kp.Seed()
	b.keep("seed", string(seed))
}

// newKeys makes an agent key and a curve key.
func (b *builder) newKeys() (*identity.Signer, *identity.Box, error) {
	kp, err := identity.NewAgent()
	if err != nil {
		return nil, nil, err
	}
	ck, err := identity.NewCurve()
	if err != nil {
		return nil, nil, err
	}
	b.keepSeed(kp)
	b.keepSeed(ck)
	s, err := identity.NewSigner(kp)
	if err != nil {
		return nil, nil, err
	}
	box, err := identity.NewBox(ck)
	if err != nil {
		return nil, nil, err
	}
	return s, box, nil
}

// actor generates the case's instance of the named actor a.
func (b *builder) actor(name string, a Actor, tamper []string) (*actor, error) {
	s, box, err := b.newKeys()
	if err != nil {
		return nil, fmt.Errorf("eval: actor %s: %w", name, err)
	}
	var issuer nkeys.KeyPair
	switch iss, other, _ := strings.Cut(a.Issuer, ":"); {
	case a.Issuer == "untrusted":
		if issuer, err = identity.NewIssuer(); err != nil {
			return nil, fmt.Errorf("eval: actor %s: %w", name, err)
		}
		b.keepSeed(issuer)
	case iss == "tenant" && other != "":
		issuer = b.t.Issuers[other]
	default:
		issuer = b.t.Issuers[a.Tenant]
	}
	if issuer == nil {
		return nil, fmt.Errorf("eval: actor %s: no issuer seed for its tenant (%s)", name, a.Issuer+a.Tenant)
	}
	req := identity.IssueRequest{
		Subject: s.PublicKey(), Audience: b.t.Audience, Tenant: a.Tenant, Service: a.Service,
		Name: "eval " + name, Scopes: a.Scopes, XKey: box.PublicKey(), TTL: time.Hour,
	}
	now := b.now()
	switch {
	case slices.Contains(tamper, "credential_wrong_audience"):
		req.Audience = "not-" + b.t.Audience
	case slices.Contains(tamper, "credential_expired"):
		now = now.Add(-tamperPast)
	case slices.Contains(tamper, "credential_not_yet_valid"):
		req.NotBefore = now.Add(tamperFuture)
	case slices.Contains(tamper, "credential_too_long"):
		req.TTL = 48 * time.Hour
	}
	tok, err := identity.Issue(issuer, req, now)
	if err != nil {
		return nil, fmt.Errorf("eval: actor %s: credential: %w", name, err)
	}
	b.keep("credential", tok.Reveal())
	if a.Revoked {
		if b.t.Revoke == nil {
			return nil, fmt.Errorf("eval: actor %s: revoked, and this gateway's revocations cannot be changed", name)
		}
		if err := b.t.Revoke(s.PublicKey()); err != nil {
			return nil, err
		}
	}
	return &actor{pub: s.PublicKey(), xkey: box.PublicKey(), signer: s, box: box, token: tok, tenant: a.Tenant}, nil
}

// messages builds what case c publishes, in order; the last is the one
// the expectation is about.
func (b *builder) messages(c *Case, a *actor) ([]message, error) {
	n := max(c.Count, 1)
	var out []message
	var first *envelope.Builder
	for range n {
		m, bd, err := b.message(c, a, nil)
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = bd
		}
		out = append(out, m)
	}
	switch {
	case slices.Contains(c.Tamper, "replay"):
		out = append(out, out[len(out)-1])
	case slices.Contains(c.Tamper, "duplicate"):
		m, _, err := b.message(c, a, first)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// message builds one message; again, when set, is an earlier message's
// builder whose idempotency key and payload it reuses.
func (b *builder) message(c *Case, a *actor, again *envelope.Builder) (message, *envelope.Builder, error) {
	has := func(t string) bool { return slices.Contains(c.Tamper, t) }
	subj, err := b.subject(c, a)
	if err != nil {
		return message{}, nil, err
	}
	if raw := c.Send.Raw; raw != nil {
		body := []byte(raw.Body)
		for len(body) < raw.PadTo {
			body = append(body, ' ')
		}
		h := nats.Header{}
		keys := make([]string, 0, len(raw.Headers))
		for k := range raw.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			h.Set(k, raw.Headers[k])
		}
		if raw.Credential {
			h.Set(header.Credential, a.token.Reveal())
		}
		if raw.Sign {
			h.Set(header.Signature, base64.RawURLEncoding.EncodeToString(a.signer.Sign(envelope.SigningInput(body))))
		}
		return message{subject: subj, header: h, body: body}, nil, nil
	}
	tenant := c.Send.Tenant
	if tenant == "" {
		tenant = a.tenant
	}
	bd := envelope.Builder{
		Tenant: tenant, Audience: b.t.Audience, Capability: envelope.Capability(c.Send.Capability), Target: c.Send.Target,
	}
	if has("wrong_audience") {
		bd.Audience = "not-" + b.t.Audience
	}
	if again != nil {
		bd.IdempotencyKey, bd.Payload = again.MessageID, again.Payload
	} else if err := b.payload(c, a, &bd); err != nil {
		return message{}, nil, err
	}
	now := b.now()
	switch {
	case has("message_expired"):
		now, bd.TTL = now.Add(-tamperPast), time.Minute
	case has("issued_in_future"):
		now = now.Add(tamperFuture)
	case has("ttl_too_long"):
		bd.TTL = tamperPast
	}
	bd.MessageID = envelope.NewMessageID()
	body, err := bd.Build(now)
	if err != nil {
		return message{}, nil, fmt.Errorf("eval: build: %w", err)
	}
	h := nats.Header{}
	switch {
	case has("malformed_credential"):
		h.Set(header.Credential, "not-a-credential")
	case !has("no_credential"):
		h.Set(header.Credential, a.token.Reveal())
	}
	signer := a.signer
	if has("wrong_signer") {
		if signer, _, err = b.newKeys(); err != nil {
			return message{}, nil, err
		}
	}
	sig := signer.Sign(envelope.SigningInput(body))
	if has("bad_signature") {
		sig[len(sig)/2] ^= 1
	}
	if !has("no_signature") {
		h.Set(header.Signature, base64.RawURLEncoding.EncodeToString(sig))
	}
	if has("body_edited") {
		to := envelope.Read
		if bd.Capability == envelope.Read {
			to = envelope.Delegate
		}
		body = bytes.Replace(body, []byte(`"capability":"`+string(bd.Capability)+`"`), []byte(`"capability":"`+string(to)+`"`), 1)
	}
	return message{subject: subj, header: h, body: body}, &bd, nil
}

// payload fills bd's payload from the case, sealing when asked.
func (b *builder) payload(c *Case, a *actor, bd *envelope.Builder) error {
	has := func(t string) bool { return slices.Contains(c.Tamper, t) }
	if c.Send.Plain != nil {
		p, err := payloadJSON(c.Send.Plain)
		if err != nil {
			return err
		}
		bd.Payload = envelope.Payload{Plain: p}
		return nil
	}
	plain, err := payloadJSON(c.Send.Sealed)
	if err != nil {
		return err
	}
	b.keep("sealed plaintext", string(plain))
	to, box := b.t.GatewayXKey, a.box
	if has("seal_to_other") {
		_, other, err := b.newKeys()
		if err != nil {
			return err
		}
		to = other.PublicKey()
	}
	if has("seal_from_other") {
		if _, box, err = b.newKeys(); err != nil {
			return err
		}
	}
	ct, err := box.Seal(plain, to)
	if err != nil {
		return fmt.Errorf("eval: seal: %w", err)
	}
	if has("seal_corrupt") {
		ct[len(ct)-1] ^= 0xff
	}
	bd.Payload = envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(ct), From: box.PublicKey(), To: to}
	return nil
}

// subject is the ingress subject the case publishes on.
func (b *builder) subject(c *Case, a *actor) (string, error) {
	tenant, agent := a.tenant, a.pub
	if slices.Contains(c.Tamper, "wrong_subject_agent") {
		s, _, err := b.newKeys()
		if err != nil {
			return "", err
		}
		agent = s.PublicKey()
	}
	if slices.Contains(c.Tamper, "wrong_subject_tenant") {
		tenant = ""
		names := make([]string, 0, len(b.t.Issuers))
		for t := range b.t.Issuers {
			names = append(names, t)
		}
		sort.Strings(names)
		for _, t := range names {
			if t != a.tenant {
				tenant = t
				break
			}
		}
		if tenant == "" {
			return "", errors.New("eval: wrong_subject_tenant needs a second tenant")
		}
	}
	s, err := subjects.Ingress(tenant, agent)
	if err != nil {
		return "", fmt.Errorf("eval: %w", err)
	}
	if slices.Contains(c.Tamper, "invalid_subject") {
		// Still inside the ingress stream's subjects, so the gateway
		// sees it and must deny it.
		s = strings.TrimSuffix(s, agent) + "not-an-agent-key"
	}
	return s, nil
}

// answer builds an approver's answer to the request held in h, as
// client.Approver.Answer does: the held message id as target, the
// request's digest and policy version, its trace id and the idempotency
// key approve-<held id>.
func (b *builder) answer(a *actor, h output, decision string) (message, error) {
	var req approval.Request
	if err := json.Unmarshal(h.data, &req); err != nil {
		return message{}, fmt.Errorf("eval: the held request does not decode: %w", err)
	}
	plain, err := json.Marshal(approval.Answer{Decision: decision, Reason: "eval", BodyDigest: req.BodyDigest, PolicyVersion: req.PolicyVersion})
	if err != nil {
		return message{}, fmt.Errorf("eval: answer: %w", err)
	}
	subj, err := subjects.Ingress(a.tenant, a.pub)
	if err != nil {
		return message{}, fmt.Errorf("eval: %w", err)
	}
	bd := envelope.Builder{
		Tenant: a.tenant, Audience: b.t.Audience, Capability: envelope.Approve, Target: req.HeldMessageID,
		IdempotencyKey: "approve-" + req.HeldMessageID, TraceID: req.TraceID, Payload: envelope.Payload{Plain: plain},
	}
	body, err := bd.Build(b.now())
	if err != nil {
		return message{}, fmt.Errorf("eval: build answer: %w", err)
	}
	h2 := nats.Header{}
	h2.Set(header.Credential, a.token.Reveal())
	h2.Set(header.Signature, base64.RawURLEncoding.EncodeToString(a.signer.Sign(envelope.SigningInput(body))))
	return message{subject: subj, header: h2, body: body}, nil
}
