package eval

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/token"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/yamlerr"
	"github.com/agentgw/agentgw/schemas"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// ErrInvalid wraps every problem found loading a case file.
var ErrInvalid = errors.New("eval: invalid case file")

// File is one case file: the sandbox it runs in, the actors its cases
// send as, and the cases. Decoded strictly (unknown fields are errors)
// and checked against schemas/eval-cases.schema.json.
type File struct {
	// Version is 1.
	Version int `yaml:"version" json:"version"`
	// Sandbox is the gateway a sandbox run starts. Optional when every
	// run of the file names a gateway config or an external gateway.
	Sandbox SandboxSpec `yaml:"sandbox,omitempty" json:"sandbox"`
	// Actors are the identities cases send as, by name.
	Actors map[string]Actor `yaml:"actors,omitempty" json:"actors"`
	// Cases run in file order.
	Cases []Case `yaml:"cases" json:"cases"`

	path string
}

// SandboxSpec is what a sandbox run configures its gateway with. Paths are
// relative to the case file. The issuers of every tenant, the gateway's
// keys, the ledger and the server are generated per run.
type SandboxSpec struct {
	// Audience is the gateway's audience. Empty: "agentgw-eval".
	Audience string `yaml:"audience,omitempty" json:"audience,omitempty"`
	// Tenants are the tenants the gateway serves, each with one
	// generated issuer.
	Tenants []string `yaml:"tenants,omitempty" json:"tenants,omitempty"`
	// Catalog is the capability catalog file.
	Catalog string `yaml:"catalog,omitempty" json:"catalog,omitempty"`
	// Policies are the Cedar policy files. Empty: default deny.
	Policies []string `yaml:"policies,omitempty" json:"policies,omitempty"`
}

// Actor is an identity generated per case: a fresh agent key and curve
// key, and a credential issued by Issuer.
type Actor struct {
	// Tenant is the actor's tenant; required.
	Tenant string `yaml:"tenant" json:"tenant"`
	// Issuer is who signs the credential: empty or "tenant" for the
	// tenant's trusted issuer, "untrusted" for a key no tenant trusts,
	// "tenant:<name>" for another tenant's issuer.
	Issuer string `yaml:"issuer,omitempty" json:"issuer,omitempty"`
	// Service is the credential's service claim.
	Service string `yaml:"service,omitempty" json:"service,omitempty"`
	// Scopes are the credential's scopes.
	Scopes []string `yaml:"scopes,omitempty" json:"scopes,omitempty"`
	// Revoked puts the actor's key on the sandbox's revocation list.
	Revoked bool `yaml:"revoked,omitempty" json:"revoked,omitempty"`
}

// Case is one message and what must become of it.
type Case struct {
	// Name is unique in the file; "deny/credential/expired" style.
	Name string `yaml:"name" json:"name"`
	// Doc says what the case proves.
	Doc string `yaml:"doc,omitempty" json:"doc,omitempty"`
	// From names the actor that sends.
	From string `yaml:"from" json:"from"`
	// Send is the message.
	Send Send `yaml:"send" json:"send"`
	// Tamper lists what is done to the message or its identity (Tampers).
	Tamper []string `yaml:"tamper,omitempty" json:"tamper,omitempty"`
	// Count sends the message this many times, each a fresh message;
	// the expectation is about the last. Zero: once.
	Count int `yaml:"count,omitempty" json:"count,omitempty"`
	// Expect is the outcome.
	Expect Expect `yaml:"expect" json:"expect"`
	// Record refers to the denied record the case was exported from
	// ("AGENTGW_DENIED#<seq>"), for the reader; Run does not read it.
	Record string `yaml:"record,omitempty" json:"record,omitempty"`
}

// Send is the message: built from its parts (Capability, Target and one
// of Plain or Sealed) or given as Raw bytes.
type Send struct {
	Capability string `yaml:"capability,omitempty" json:"capability,omitempty"`
	Target     string `yaml:"target,omitempty" json:"target,omitempty"`
	// Tenant overrides the envelope's tenant (default: the actor's).
	Tenant string `yaml:"tenant,omitempty" json:"tenant,omitempty"`
	// Plain is a plain JSON object payload.
	Plain map[string]any `yaml:"plain,omitempty" json:"plain,omitempty"`
	// Sealed is a JSON object sealed from the actor to the gateway; its
	// plaintext is one of the secrets the redaction scan looks for.
	Sealed map[string]any `yaml:"sealed,omitempty" json:"sealed,omitempty"`
	// Raw sends bytes as they are.
	Raw *Raw `yaml:"raw,omitempty" json:"raw,omitempty"`
	// Answer answers the request an earlier case of the file had held.
	Answer *Answer `yaml:"answer,omitempty" json:"answer,omitempty"`
}

// Answer is an approver's answer (an approve envelope) to the request an
// earlier case had held, bound to the digest and policy version the
// approval queue showed, as client.Approver builds it.
type Answer struct {
	// To names the earlier case; it must expect route approval.
	To string `yaml:"to" json:"to"`
	// Decision is grant or deny.
	Decision string `yaml:"decision" json:"decision"`
}

// Raw is a message sent byte for byte, for malformed input.
type Raw struct {
	// Body is sent verbatim.
	Body string `yaml:"body" json:"body"`
	// PadTo appends spaces to Body up to this many bytes.
	PadTo int `yaml:"pad_to,omitempty" json:"pad_to,omitempty"`
	// Credential attaches the actor's credential header.
	Credential bool `yaml:"credential,omitempty" json:"credential,omitempty"`
	// Sign attaches the actor's signature over Body.
	Sign bool `yaml:"sign,omitempty" json:"sign,omitempty"`
	// Headers are added as they are (never a secret: the loader refuses
	// the credential header).
	Headers map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
}

// Expect is the outcome a case pins.
type Expect struct {
	// Route is allow (delivered to the target's capability subject),
	// approval (held) or deny.
	Route string `yaml:"route" json:"route"`
	// Reason is the denial's reason code; required with deny.
	Reason string `yaml:"reason,omitempty" json:"reason,omitempty"`
	// Policy, when set, are the deciding policy ids (as a set); [] pins
	// that no policy decided.
	Policy []string `yaml:"policy,omitempty" json:"policy,omitempty"`
}

// Routes, least restrictive first.
const (
	RouteAllow    = "allow"
	RouteApproval = "approval"
	RouteDeny     = "deny"
)

// capabilities a built message may carry (raw covers the rest).
var capabilities = []envelope.Capability{envelope.Read, envelope.Delegate, envelope.ToolCall, envelope.WorkflowCommand, envelope.Approve, envelope.Respond}

// Tampers are what a case may do to its message or identity.
var Tampers = map[string]string{
	"replay":                    "send the same bytes and headers twice; the expectation is about the second",
	"duplicate":                 "send a second message with the first one's idempotency key and payload",
	"message_expired":           "issued 2h ago, expired a minute later",
	"issued_in_future":          "issued 1h from now",
	"ttl_too_long":              "expires 2h after it is issued",
	"wrong_audience":            "the envelope names another gateway",
	"credential_wrong_audience": "the credential names another gateway",
	"credential_expired":        "the credential expired an hour ago",
	"credential_not_yet_valid":  "the credential is valid from an hour from now",
	"credential_too_long":       "the credential lives 48h",
	"bad_signature":             "one bit of the signature flipped",
	"wrong_signer":              "signed by a key that is not the credential's",
	"no_credential":             "the credential header dropped",
	"malformed_credential":      "the credential header replaced by text that is no JWT",
	"body_edited":               "the capability in the body changed after signing",
	"no_signature":              "the signature header dropped",
	"wrong_subject_agent":       "published on another agent's ingress subject",
	"wrong_subject_tenant":      "published on another tenant's ingress subject",
	"invalid_subject":           "published on an ingress subject whose agent token is no agent key",
	"seal_to_other":             "sealed to a curve key that is not the gateway's",
	"seal_from_other":           "sealed from a curve key that is not the credential's",
	"seal_corrupt":              "one byte of the ciphertext flipped",
}

// Load reads, validates and checks a case file.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", identity.SafeReadError(err))
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", identity.SafePath(path), err)
	}
	f.path = path
	return f, nil
}

// Parse decodes and checks a case file's bytes; relative sandbox paths
// stay relative (Load resolves them against the file).
func Parse(data []byte) (*File, error) {
	if err := refuseAliases(data); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, yamlerr.Clean(err))
	}
	sch, err := schemas.Compile(schemas.EvalCases)
	if err != nil {
		return nil, err
	}
	if err := schemas.Validate(sch, js); err != nil {
		// The schema's errors quote the file's keys and values, and a
		// secret is refused here: shown by SafeText, not wrapped.
		return nil, fmt.Errorf("%w: %s", ErrInvalid, identity.SafeText(err.Error()))
	}
	var f File
	if err := yamlerr.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := f.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return &f, nil
}

// refuseAliases refuses anchors and aliases before anything decodes the
// file: the decoder expands every alias, so a few hundred bytes of
// nested aliases ("billion laughs") would take minutes and gigabytes.
// Tokenizing is linear and expands nothing.
func refuseAliases(data []byte) error {
	for _, tk := range lexer.Tokenize(string(data)) {
		if tk.Type == token.AnchorType || tk.Type == token.AliasType {
			what := "an anchor"
			if tk.Type == token.AliasType {
				what = "an alias"
			}
			return fmt.Errorf("line %d, column %d: %s: anchors and aliases are not allowed in a case file", tk.Position.Line, tk.Position.Column, what)
		}
	}
	return nil
}

// Path is the file the cases were loaded from.
func (f *File) Path() string { return f.path }

// resolve makes p relative to the case file's directory.
func (f *File) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || f.path == "" {
		return p
	}
	return filepath.Join(filepath.Dir(f.path), p)
}

// Check reports every problem schema validation cannot see.
func (f *File) Check() error {
	var errs []error
	if f.Version != 1 {
		errs = append(errs, fmt.Errorf("version %d; want 1", f.Version))
	}
	for _, t := range f.Sandbox.Tenants {
		if !subjects.ValidToken(t) {
			errs = append(errs, fmt.Errorf("sandbox tenant %q is not [a-z0-9_-]{1,64}", t))
		}
	}
	names := make([]string, 0, len(f.Actors))
	for n := range f.Actors {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := f.Actors[n]
		if !subjects.ValidToken(a.Tenant) {
			errs = append(errs, fmt.Errorf("actor %s: tenant %q is not [a-z0-9_-]{1,64}", n, a.Tenant))
		}
		switch iss, other, _ := strings.Cut(a.Issuer, ":"); {
		case a.Issuer == "" || a.Issuer == "tenant" || a.Issuer == "untrusted":
		case iss == "tenant" && subjects.ValidToken(other):
		default:
			errs = append(errs, fmt.Errorf("actor %s: issuer %q is not tenant, untrusted or tenant:<name>", n, a.Issuer))
		}
	}
	seen := map[string]bool{}
	for i, c := range f.Cases {
		at := fmt.Sprintf("case %d (%s)", i+1, c.Name)
		if c.Name == "" {
			errs = append(errs, fmt.Errorf("case %d: no name", i+1))
		} else if seen[c.Name] {
			errs = append(errs, fmt.Errorf("%s: name used twice", at))
		}
		seen[c.Name] = true
		if _, ok := f.Actors[c.From]; !ok {
			errs = append(errs, fmt.Errorf("%s: from %q is not an actor", at, c.From))
		}
		errs = append(errs, c.check(at)...)
		if a := c.Send.Answer; a != nil {
			j := slices.IndexFunc(f.Cases[:i], func(e Case) bool { return e.Name == a.To })
			if j < 0 || f.Cases[j].Expect.Route != RouteApproval {
				errs = append(errs, fmt.Errorf("%s: answer to %q: no earlier case of that name expecting route approval", at, a.To))
			}
		}
	}
	return errors.Join(errs...)
}

func (c *Case) check(at string) []error {
	var errs []error
	s := c.Send
	if s.Answer != nil {
		if s.Raw != nil || s.Plain != nil || s.Sealed != nil || s.Capability != "" || s.Target != "" {
			errs = append(errs, fmt.Errorf("%s: answer excludes capability, target, plain, sealed and raw", at))
		}
		if s.Answer.Decision != "grant" && s.Answer.Decision != "deny" {
			errs = append(errs, fmt.Errorf("%s: answer decision %q is not grant or deny", at, s.Answer.Decision))
		}
		if len(c.Tamper) > 0 {
			errs = append(errs, fmt.Errorf("%s: an answer takes no tamper", at))
		}
		return append(errs, c.checkExpect(at)...)
	}
	if s.Raw != nil {
		if s.Plain != nil || s.Sealed != nil || s.Capability != "" || s.Target != "" {
			errs = append(errs, fmt.Errorf("%s: raw excludes capability, target, plain and sealed", at))
		}
		for k := range s.Raw.Headers {
			if strings.EqualFold(k, "Agentgw-Credential") {
				errs = append(errs, fmt.Errorf("%s: raw header %s: a case never holds a credential; use credential: true", at, k))
			}
		}
	} else {
		if s.Capability == "" || s.Target == "" {
			errs = append(errs, fmt.Errorf("%s: send needs capability and target (or raw)", at))
		} else if !slices.Contains(capabilities, envelope.Capability(s.Capability)) {
			errs = append(errs, fmt.Errorf("%s: capability %q is not one of %v", at, s.Capability, capabilities))
		}
		if (s.Plain == nil) == (s.Sealed == nil) {
			errs = append(errs, fmt.Errorf("%s: send needs exactly one of plain and sealed", at))
		}
	}
	for _, t := range c.Tamper {
		if _, ok := Tampers[t]; !ok {
			errs = append(errs, fmt.Errorf("%s: unknown tamper %q", at, t))
		}
		if s.Raw != nil && t != "replay" && t != "wrong_subject_agent" && t != "wrong_subject_tenant" && t != "invalid_subject" {
			errs = append(errs, fmt.Errorf("%s: tamper %q needs a built message, not raw", at, t))
		}
		if strings.HasPrefix(t, "seal_") && s.Sealed == nil {
			errs = append(errs, fmt.Errorf("%s: tamper %q needs a sealed payload", at, t))
		}
	}
	return append(errs, c.checkExpect(at)...)
}

func (c *Case) checkExpect(at string) []error {
	var errs []error
	switch c.Expect.Route {
	case RouteDeny:
		if !reason.Known(reason.Code(c.Expect.Reason)) {
			errs = append(errs, fmt.Errorf("%s: expect reason %q is not a reason code", at, c.Expect.Reason))
		}
	case RouteAllow, RouteApproval:
		if c.Expect.Reason != "" {
			errs = append(errs, fmt.Errorf("%s: expect reason goes with route deny only", at))
		}
	default:
		errs = append(errs, fmt.Errorf("%s: expect route %q is not allow, approval or deny", at, c.Expect.Route))
	}
	if c.Count < 0 || c.Count > 1000 {
		errs = append(errs, fmt.Errorf("%s: count %d outside [0, 1000]", at, c.Count))
	}
	return errs
}

// payload encodes a case's plain or sealed object as JSON.
func payloadJSON(v map[string]any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("eval: payload: %w", err)
	}
	return b, nil
}

// windows used by the time tampers: far outside any configurable skew.
const (
	tamperPast   = 2 * time.Hour
	tamperFuture = time.Hour
)

// MarshalYAML writes the fields that are set, keeping an empty payload
// object (an exported case's stand-in) that omitempty would drop.
func (s Send) MarshalYAML() (any, error) {
	var m yaml.MapSlice
	add := func(k string, v any) { m = append(m, yaml.MapItem{Key: k, Value: v}) }
	if s.Capability != "" {
		add("capability", s.Capability)
	}
	if s.Target != "" {
		add("target", s.Target)
	}
	if s.Tenant != "" {
		add("tenant", s.Tenant)
	}
	if s.Plain != nil {
		add("plain", s.Plain)
	}
	if s.Sealed != nil {
		add("sealed", s.Sealed)
	}
	if s.Raw != nil {
		add("raw", s.Raw)
	}
	if s.Answer != nil {
		add("answer", s.Answer)
	}
	return m, nil
}
