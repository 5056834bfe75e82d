package eval

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/yamlerr"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// Record is one denied record as read from the denied stream, with the
// decision event of its ingress sequence from the audit stream when one
// was found.
type Record struct {
	Seq    uint64
	Header nats.Header
	Body   []byte
	Event  *audit.Event
}

// ExportOptions tune Export.
type ExportOptions struct {
	// Sandbox is written as the file's sandbox section (tenants and
	// audience are filled in from the records when empty).
	Sandbox SandboxSpec
	// IncludePayload copies a plain payload, or a body that did not
	// parse, into the case. Off: a plain payload becomes {} and the
	// case's doc keeps its digest, and records whose denial depends on
	// the payload's content are skipped.
	IncludePayload bool
}

// Skipped is a record Export made no case of, and why.
type Skipped struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
	Why    string `json:"why"`
}

// tamperFor is the tamper that rebuilds a denial whose cause is the
// message's or credential's own defect rather than who sent what.
var tamperFor = map[reason.Code]string{
	reason.ReplayDetected:        "replay",
	reason.DuplicateRequest:      "duplicate",
	reason.MessageExpired:        "message_expired",
	reason.IssuedInFuture:        "issued_in_future",
	reason.TTLTooLong:            "ttl_too_long",
	reason.CredentialExpired:     "credential_expired",
	reason.CredentialNotYetValid: "credential_not_yet_valid",
	reason.CredentialTooLong:     "credential_too_long",
	reason.BadSignature:          "bad_signature",
	reason.SubjectMismatch:       "wrong_subject_agent",
	reason.MalformedCredential:   "malformed_credential",
	reason.SealBroken:            "seal_corrupt",
}

// contentReasons are decided on the payload's content: a case needs it.
var contentReasons = map[reason.Code]bool{
	reason.PayloadInvalid:      true,
	reason.ContentDenied:       true,
	reason.PayloadCaseVariant:  true,
	reason.IdempotencyConflict: true,
}

// Export turns denied records into a case file whose cases expect the
// same denial. No secret is copied: the actor is rebuilt in the sandbox
// from the credential's public claims in the audit event (tenant,
// service, scopes), the credential itself stays sealed in the record,
// and the payload is copied only with IncludePayload (a sealed payload
// never: only the gateway can open it).
func Export(recs []Record, opts ExportOptions) (*File, []Skipped) {
	f := &File{Version: 1, Sandbox: opts.Sandbox, Actors: map[string]Actor{}}
	var skipped []Skipped
	tenants := map[string]bool{}
	for _, r := range recs {
		c, a, why := exportOne(r, opts)
		if why == "" && !sendSurvivesYAML(c.Send) {
			why = "its payload does not read back from YAML as it was (a tab, a carriage return, a key \"<<\", a value such as .inf); send it with a case written by hand"
		}
		code := r.Header.Get(header.Reason)
		if why != "" {
			skipped = append(skipped, Skipped{Seq: r.Seq, Reason: code, Why: why})
			continue
		}
		f.Actors[c.From] = a
		f.Cases = append(f.Cases, *c)
		tenants[a.Tenant] = true
		if f.Sandbox.Audience == "" && r.Event != nil && code != string(reason.WrongAudience) {
			if env, err := envelope.Parse(r.Body, envelope.Limits{}); err == nil {
				f.Sandbox.Audience = env.Audience
			}
		}
	}
	if len(f.Sandbox.Tenants) == 0 {
		for t := range tenants {
			f.Sandbox.Tenants = append(f.Sandbox.Tenants, t)
		}
		sort.Strings(f.Sandbox.Tenants)
	}
	return f, skipped
}

func exportOne(r Record, opts ExportOptions) (c *Case, a Actor, why string) {
	code := reason.Code(r.Header.Get(header.Reason))
	if !reason.Known(code) {
		return nil, a, "no known reason code on the record"
	}
	if code == reason.BudgetExceeded || code == reason.Internal || code == reason.ReplayRefused {
		return nil, a, "the denial depends on the gateway's state, not on the message"
	}
	if r.Header.Get(header.BodyDigest) != "" {
		return nil, a, "the record names its body (denied oversized) without holding it; write the case by hand"
	}
	info, _ := reason.Lookup(code)
	if info.Stage == reason.StageApproval || info.Stage == reason.StageResponse {
		return nil, a, "answers and responses bind to a held request; write the case by hand"
	}
	ev := r.Event
	if ev == nil || ev.Tenant == "" {
		return nil, a, "no decision event with the credential's claims for this ingress sequence in the audit stream"
	}
	name := fmt.Sprintf("denied/%d/%s", r.Seq, code)
	actorName := fmt.Sprintf("agent_%d", r.Seq)
	a = Actor{Tenant: ev.Tenant, Service: ev.Service, Scopes: ev.Scopes}
	c = &Case{
		Name: name, From: actorName, Record: fmt.Sprintf("%s#%d", gateway.StreamDenied, r.Seq),
		Expect: Expect{Route: RouteDeny, Reason: string(code)},
	}
	if code == reason.PolicyDenied {
		c.Expect.Policy = splitPolicies(r.Header.Get(header.Policy))
	}
	switch code {
	case reason.UntrustedIssuer:
		a.Issuer = "untrusted"
	case reason.Revoked:
		a.Revoked = true
	}
	env, err := envelope.Parse(r.Body, envelope.Limits{MaxBytes: len(r.Body) + 1})
	if err != nil {
		if !opts.IncludePayload {
			return nil, a, "the body does not parse; --include-payload copies it as raw bytes"
		}
		c.Send.Raw = &Raw{Body: string(r.Body), Credential: r.Header.Get(header.CredentialSealed) != "", Sign: r.Header.Get(header.Signature) != ""}
		c.Doc = "exported from a denied record; body copied as received"
		return c, a, ""
	}
	if env.Capability == envelope.Approve || env.Capability == envelope.Respond {
		return nil, a, "answers and responses bind to a held request; write the case by hand"
	}
	c.Send.Capability, c.Send.Target = string(env.Capability), env.Target
	if env.Tenant != ev.Tenant {
		c.Send.Tenant = env.Tenant
	}
	digest := sha256.Sum256(env.Payload.Plain)
	switch {
	case env.Payload.IsSealed():
		if contentReasons[code] {
			return nil, a, "the denial depends on a sealed payload only the gateway can open; write the case by hand"
		}
		c.Send.Sealed = map[string]any{}
		c.Doc = "exported from a denied record; the sealed payload is not copied (sealed: {} stands in)"
	case opts.IncludePayload:
		var obj map[string]any
		if err := json.Unmarshal(env.Payload.Plain, &obj); err != nil {
			return nil, a, "the plain payload does not decode: " + err.Error()
		}
		c.Send.Plain = obj
		c.Doc = "exported from a denied record; plain payload copied"
	default:
		if contentReasons[code] {
			return nil, a, "the denial depends on the plain payload; --include-payload copies it"
		}
		c.Send.Plain = map[string]any{}
		c.Doc = "exported from a denied record; plain payload sha256:" + hex.EncodeToString(digest[:]) + " not copied ({} stands in)"
	}
	if t, ok := tamperFor[code]; ok {
		c.Tamper = append(c.Tamper, t)
	}
	switch code {
	case reason.WrongAudience:
		if strings.HasPrefix(r.Header.Get(header.Detail), "envelope audience") {
			c.Tamper = append(c.Tamper, "wrong_audience")
		} else {
			c.Tamper = append(c.Tamper, "credential_wrong_audience")
		}
	case reason.MissingHeader:
		if r.Header.Get(header.Signature) == "" {
			c.Tamper = append(c.Tamper, "no_signature")
		}
		if r.Header.Get(header.CredentialSealed) == "" {
			c.Tamper = append(c.Tamper, "no_credential")
		}
	case reason.SealMismatch:
		// The detail says which end is wrong; a record whose detail does
		// not is judged by the gateway key it was sealed to.
		switch detail := r.Header.Get(header.Detail); {
		case detail == gateway.SealNotToGateway:
			c.Tamper = append(c.Tamper, "seal_to_other")
		case detail == gateway.SealNotFromCredential, detail == gateway.SealFromGateway:
			c.Tamper = append(c.Tamper, "seal_from_other")
		case env.Payload.To != r.Header.Get(header.CredentialSealedTo):
			c.Tamper = append(c.Tamper, "seal_to_other")
		default:
			c.Tamper = append(c.Tamper, "seal_from_other")
		}
	case reason.TenantMismatch:
		if ref, err := subjects.ParseIngress(r.Header.Get(header.IngressSubject)); err == nil && ref.Tenant != ev.Tenant {
			c.Tamper = append(c.Tamper, "wrong_subject_tenant")
		}
	}
	if c.Send.Sealed != nil && (code == reason.PlainNotAllowed) {
		return nil, a, "inconsistent record: plain_not_allowed on a sealed payload"
	}
	return c, a, ""
}

func splitPolicies(s string) []string {
	if s == "" {
		return []string{}
	}
	ids := strings.Split(s, ",")
	sort.Strings(ids)
	return ids
}

// sendSurvivesYAML reports whether s, written as Marshal writes it, reads
// back as it was: the YAML encoder does not write every string so that it
// reads back (a lone tab reads as null), and a case that sent another
// payload than its record's would check something else.
func sendSurvivesYAML(s Send) bool {
	if s.Plain == nil && s.Raw == nil {
		return true
	}
	out, err := yaml.MarshalWithOptions(s, yaml.Indent(2))
	if err != nil {
		return false
	}
	var back Send
	if yamlerr.Unmarshal(out, &back) != nil {
		return false
	}
	want, err1 := json.Marshal(s)
	got, err2 := json.Marshal(back)
	return err1 == nil && err2 == nil && bytes.Equal(want, got)
}

// Marshal writes f as YAML, with a header comment saying where it came
// from.
func (f *File) Marshal(comment string) ([]byte, error) {
	out, err := yaml.MarshalWithOptions(f, yaml.Indent(2))
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(comment), "\n") {
		b.WriteString("# " + l + "\n")
	}
	b.Write(out)
	return []byte(b.String()), nil
}

// IngressSeqOf is a denied record's ingress sequence, 0 if it has none.
func IngressSeqOf(h nats.Header) uint64 {
	n, _ := strconv.ParseUint(h.Get(header.IngressSeq), 10, 64)
	return n
}
