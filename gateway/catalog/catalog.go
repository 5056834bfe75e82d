package catalog

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/yamlerr"
	"github.com/agentgw/agentgw/schemas"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// Risk classes, lowest first.
const (
	RiskLow      = "low"
	RiskMedium   = "medium"
	RiskHigh     = "high"
	RiskCritical = "critical"
)

var risks = []string{RiskLow, RiskMedium, RiskHigh, RiskCritical}

// MaxWait bounds approval_ttl and response_deadline (and the gateway's
// limits.approval_ttl): a held request or a request awaiting its
// response is recorded until then, and a record's deadline must be one
// the ledger can store.
const MaxWait = 366 * 24 * time.Hour

// MaxBurst bounds a budget's burst: the bucket counts in float64, exact
// for whole numbers up to 2^53.
const MaxBurst = 1 << 53

// Budget is a per-target rate limit. A zero Rate or Burst means the
// gateway default's (budgets.target). Rate is finite, Burst at most
// MaxBurst.
type Budget struct {
	// Rate is tokens per second.
	Rate float64 `yaml:"rate" json:"rate"`
	// Burst is the bucket size.
	Burst int `yaml:"burst" json:"burst"`
}

// TargetSpec is one target as written in the catalog file.
type TargetSpec struct {
	// Name is the dotted target name, e.g. "refunds.draft_refund".
	Name string `yaml:"name" json:"name"`
	// Kind is the capability an envelope must use for this target:
	// read, delegate, tool_call or workflow_command.
	Kind string `yaml:"kind" json:"kind"`
	// Scope is the credential scope required, e.g. "refund:draft".
	Scope string `yaml:"scope" json:"scope"`
	// Tenants lists the tenants this target serves. Required: a target
	// serves no tenant by default.
	Tenants []string `yaml:"tenants" json:"tenants"`
	// Risk is low, medium, high or critical. Empty means low.
	Risk string `yaml:"risk" json:"risk"`
	// Approval forces every permitted request through an approver.
	Approval bool `yaml:"approval" json:"approval"`
	// ApprovalTTL is how long a held request waits for an approver, at
	// most MaxWait. Zero means the gateway default.
	ApprovalTTL time.Duration `yaml:"approval_ttl" json:"approval_ttl"`
	// Plain allows {"plain": {...}} payloads. False means sealed only.
	Plain bool `yaml:"plain" json:"plain"`
	// ConsumerXKey is the curve public key (X...) of the consumer that
	// payloads are re-sealed to and responses must be sealed from.
	// Required unless Plain is true and ResponseDeadline is zero.
	ConsumerXKey string `yaml:"consumer_xkey" json:"consumer_xkey"`
	// ConsumerXKeys gives a tenant's consumer a curve key of its own
	// (tenant name to X...), so that a target serving several tenants
	// need not give all their consumers one key that opens every
	// tenant's deliveries: a tenant listed here is re-sealed to, and
	// answered from, its own key; the others use ConsumerXKey. Empty
	// means every tenant uses ConsumerXKey. Each name must be one of
	// Tenants.
	ConsumerXKeys map[string]string `yaml:"consumer_xkeys" json:"consumer_xkeys"`
	// PayloadSchema is a JSON Schema file path (relative to the catalog
	// file) or an inline JSON object. Empty means any JSON object, which
	// only a target without visible fields may have: with visible fields
	// it must be closed at its top level ("additionalProperties": false,
	// no patternProperties) and declare each visible field.
	PayloadSchema string `yaml:"payload_schema" json:"payload_schema"`
	// PolicyVisible names the top-level payload fields placed in the
	// Cedar context after opening. A payload member differing from one
	// only in case is denied (PayloadCaseVariant), as for ApproverVisible.
	PolicyVisible []string `yaml:"policy_visible" json:"policy_visible"`
	// ApproverVisible names the top-level payload fields shown to
	// approvers in the redacted approval request.
	ApproverVisible []string `yaml:"approver_visible" json:"approver_visible"`
	// Budget overrides the gateway's per-target rate limit.
	Budget *Budget `yaml:"budget" json:"budget"`
	// ResponseDeadline enables responses (docs/design.md §7): how long after a
	// request is delivered its consumer may answer, at most MaxWait.
	// Zero: no responses.
	// Needs ConsumerXKey: only a response sealed from the consumer key
	// the request was delivered under answers it, so another holder of
	// respond:<target> cannot.
	ResponseDeadline time.Duration `yaml:"response_deadline" json:"response_deadline"`
	// ResponseSchema is a JSON Schema (file or inline) every response
	// must match. Empty means any JSON object; with Sensitive fields it
	// must be closed and declare them, as PayloadSchema with visible ones.
	ResponseSchema string `yaml:"response_schema" json:"response_schema"`
	// Sensitive names top-level response fields removed before the
	// requesting agent sees the response. A response member differing
	// from one only in case is denied (PayloadCaseVariant).
	Sensitive []string `yaml:"sensitive" json:"sensitive"`
}

// File is the catalog file's shape.
type File struct {
	// ApprovalRisks lists the risk classes that always need approval.
	// Empty means [critical].
	ApprovalRisks []string     `yaml:"approval_risks" json:"approval_risks"`
	Targets       []TargetSpec `yaml:"targets" json:"targets"`
}

// RespondScopePrefix prefixes a target's name in the scope that answers
// requests to it: a consumer's credential needs "respond:<target>", and a
// reply token's scope is that scope.
const RespondScopePrefix = "respond:"

// Target is a compiled catalog entry.
type Target struct {
	TargetSpec
	schema    *jsonschema.Schema
	response  *jsonschema.Schema
	tenants   map[string]bool
	visible   envelope.FoldSet // PolicyVisible and ApproverVisible
	sensitive envelope.FoldSet // Sensitive
	// NeedsApproval is Approval or a risk class listed in approval_risks.
	NeedsApproval bool
}

// ConsumerKey is the curve public key tenant's deliveries of t are
// re-sealed to and its responses must be sealed from: the tenant's entry
// in ConsumerXKeys, else ConsumerXKey. Empty: none (plain only).
func (t *Target) ConsumerKey(tenant string) string {
	if k, ok := t.ConsumerXKeys[tenant]; ok {
		return k
	}
	return t.ConsumerXKey
}

// Serves reports whether t serves tenant (is listed in its Tenants).
func (t *Target) Serves(tenant string) bool { return t.tenants[tenant] }

// Catalog is an immutable, compiled set of targets.
type Catalog struct {
	targets map[string]*Target
	names   []string
	files   []string // the schema files read, in the order read
	// Digest identifies the catalog contents: "sha256:..." of the file,
	// and of the schema files it names when it names any.
	Digest string
}

// schemaFile is a schema file a catalog read, and its contents.
type schemaFile struct {
	path string
	data []byte
}

// ErrInvalid wraps every error of Load, Parse and Compile: the catalog
// does not load (its text names the problems, after "catalog: ").
var ErrInvalid = errors.New("catalog")

// Load reads and compiles a catalog file (YAML or JSON, strictly decoded).
func Load(path string) (*Catalog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, identity.SafeReadError(err))
	}
	return Parse(data, filepath.Dir(path))
}

// Parse compiles a catalog from bytes; schema paths are relative to dir.
// Every problem is reported at once.
func Parse(data []byte, dir string) (*Catalog, error) {
	var f File
	if err := yamlerr.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrInvalid, err)
	}
	return Compile(f, dir, digest(data))
}

// Compile validates and compiles a decoded catalog.
func Compile(f File, dir, dig string) (*Catalog, error) {
	var errs []error
	approvalRisks := f.ApprovalRisks
	if len(approvalRisks) == 0 {
		approvalRisks = []string{RiskCritical}
	}
	for _, r := range approvalRisks {
		if !slices.Contains(risks, r) {
			errs = append(errs, fmt.Errorf("approval_risks: unknown risk %q", r))
		}
	}
	c := &Catalog{targets: make(map[string]*Target, len(f.Targets)), Digest: dig}
	var read []schemaFile
	for i, spec := range f.Targets {
		t, err := compileTarget(spec, dir, approvalRisks, &read)
		if err != nil {
			errs = append(errs, fmt.Errorf("targets[%d] %q: %w", i, spec.Name, err))
			continue
		}
		if _, dup := c.targets[t.Name]; dup {
			errs = append(errs, fmt.Errorf("targets[%d]: duplicate target %q", i, spec.Name))
			continue
		}
		c.targets[t.Name] = t
		c.names = append(c.names, t.Name)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	sort.Strings(c.names)
	// A schema file is part of what the catalog says: its digest
	// changes with it, and a reload watches it (Files).
	for _, sf := range read {
		c.files = append(c.files, sf.path)
	}
	c.Digest = withSchemas(dig, read)
	return c, nil
}

// withSchemas is a catalog's Digest: dig, the digest of the catalog
// file, alone when it names no schema file, else dig and the schema
// files read, in the order read.
func withSchemas(dig string, read []schemaFile) string {
	if len(read) == 0 {
		return dig
	}
	h := sha256.New()
	h.Write([]byte(dig))
	for _, sf := range read {
		fmt.Fprintf(h, "\x00%s\x00%d\x00", sf.path, len(sf.data))
		h.Write(sf.data)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// DigestOf returns the Digest a catalog loaded now from path would have
// if it named the schema files files (a Catalog's Files), without
// compiling it: a watcher compares it with the Digest of the catalog in
// force, which is the digest of what that catalog was read from. A file
// that cannot be read gives a text that names it and is no digest.
func DigestOf(path string, files []string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "unreadable\x00" + path
	}
	read := make([]schemaFile, 0, len(files))
	for _, f := range files {
		sd, err := os.ReadFile(f)
		if err != nil {
			return "unreadable\x00" + f
		}
		read = append(read, schemaFile{path: f, data: sd})
	}
	return withSchemas(digest(data), read)
}

// Files lists the schema files the catalog read, which a reload watches
// beside the catalog file.
func (c *Catalog) Files() []string { return slices.Clone(c.files) }

func compileTarget(spec TargetSpec, dir string, approvalRisks []string, read *[]schemaFile) (*Target, error) {
	var errs []error
	if !subjects.ValidTarget(spec.Name) {
		errs = append(errs, errors.New("name must be dotted [a-z0-9_-] tokens"))
	}
	switch envelope.Capability(spec.Kind) {
	case envelope.Read, envelope.Delegate, envelope.ToolCall, envelope.WorkflowCommand:
	default:
		errs = append(errs, fmt.Errorf("kind %q is not read, delegate, tool_call or workflow_command", spec.Kind))
	}
	// A target is its decision tokens' aud, its scope their scope, and
	// "respond:<target>" a reply token's scope: a target whose token
	// could not be signed would be allowed and then fail internally.
	if subjects.ValidTarget(spec.Name) && !decision.ValidClaimID(spec.Name) {
		errs = append(errs, fmt.Errorf("name is %d bytes; a decision token's aud holds at most %d", len(spec.Name), decision.MaxClaimID))
	}
	if spec.Scope == "" {
		errs = append(errs, errors.New("scope is required"))
	} else if !decision.ValidClaimID(spec.Scope) {
		errs = append(errs, fmt.Errorf("scope must be 1-%d characters of [A-Za-z0-9._:-], as a decision token's scope", decision.MaxClaimID))
	}
	if spec.Risk == "" {
		spec.Risk = RiskLow
	}
	if !slices.Contains(risks, spec.Risk) {
		errs = append(errs, fmt.Errorf("risk %q is not one of %v", spec.Risk, risks))
	}
	if len(spec.Tenants) == 0 {
		errs = append(errs, errors.New("tenants is required"))
	}
	t := &Target{TargetSpec: spec, tenants: map[string]bool{}}
	for _, tn := range spec.Tenants {
		if !subjects.ValidToken(tn) {
			errs = append(errs, fmt.Errorf("tenant %q is not a valid token", tn))
		}
		t.tenants[tn] = true
	}
	// keyless lists the tenants with no consumer key to seal to.
	var keyless []string
	for _, tn := range spec.Tenants {
		if t.ConsumerKey(tn) == "" {
			keyless = append(keyless, tn)
		}
	}
	if len(keyless) > 0 && !spec.Plain {
		errs = append(errs, fmt.Errorf("consumer_xkey (or consumer_xkeys for %s) is required for sealed targets", strings.Join(keyless, ", ")))
	}
	if spec.ConsumerXKey != "" && !subjects.ValidKey(spec.ConsumerXKey, 'X') {
		errs = append(errs, errors.New("consumer_xkey is not a curve public key (X...)"))
	}
	for _, tn := range slices.Sorted(maps.Keys(spec.ConsumerXKeys)) {
		if !t.tenants[tn] {
			errs = append(errs, fmt.Errorf("consumer_xkeys: %q is not one of the target's tenants", tn))
		}
		if !subjects.ValidKey(spec.ConsumerXKeys[tn], 'X') {
			errs = append(errs, fmt.Errorf("consumer_xkeys: the key of %q is not a curve public key (X...)", tn))
		}
	}
	if spec.ApprovalTTL < 0 || spec.ApprovalTTL > MaxWait {
		errs = append(errs, fmt.Errorf("approval_ttl must be between 0 and %s", MaxWait))
	}
	for _, f := range append(slices.Clone(spec.PolicyVisible), spec.ApproverVisible...) {
		if f == "" || strings.ContainsAny(f, ". \t\r\n") {
			errs = append(errs, fmt.Errorf("visible field %q must be a top-level field name", f))
		}
	}
	if b := spec.Budget; b != nil && (!(b.Rate >= 0) || math.IsInf(b.Rate, 0) || b.Burst < 0 || b.Burst > MaxBurst) {
		// !(>= 0) refuses NaN too, which every comparison fails: a NaN
		// rate would never run the bucket out.
		errs = append(errs, fmt.Errorf("budget rate must be a finite number >= 0 and burst between 0 and %d", MaxBurst))
	}
	if spec.PayloadSchema != "" {
		s, err := compileSchema("payload_schema", spec.Name, spec.PayloadSchema, dir, read)
		if err != nil {
			errs = append(errs, err)
		}
		t.schema = s
	}
	visible := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(spec.PolicyVisible), spec.ApproverVisible...))))
	if spec.PayloadSchema == "" || t.schema != nil {
		errs = append(errs, checkNamed(visible, t.schema, "visible field", "payload_schema")...)
	}
	t.visible = envelope.NewFoldSet(visible...)
	if spec.ResponseDeadline < 0 || spec.ResponseDeadline > MaxWait {
		errs = append(errs, fmt.Errorf("response_deadline must be between 0 and %s", MaxWait))
	}
	if (spec.ResponseSchema != "" || len(spec.Sensitive) > 0) && spec.ResponseDeadline == 0 {
		errs = append(errs, errors.New("response_schema and sensitive need a response_deadline"))
	}
	if spec.ResponseDeadline > 0 && len(keyless) > 0 {
		// Only a response sealed from the consumer key answers a request.
		errs = append(errs, errors.New("response_deadline needs a consumer_xkey (or consumer_xkeys for every tenant): responses must be sealed from it"))
	}
	if spec.ResponseDeadline > 0 && decision.ValidClaimID(spec.Name) && !decision.ValidClaimID(RespondScopePrefix+spec.Name) {
		errs = append(errs, fmt.Errorf("a target with a response_deadline is at most %d bytes: its reply tokens' scope is %s<name>, at most %d", decision.MaxClaimID-len(RespondScopePrefix), RespondScopePrefix, decision.MaxClaimID))
	}
	for _, f := range spec.Sensitive {
		if f == "" || strings.ContainsAny(f, ". \t\r\n") {
			errs = append(errs, fmt.Errorf("sensitive field %q must be a top-level field name", f))
		}
	}
	if spec.ResponseSchema != "" {
		s, err := compileSchema("response_schema", spec.Name+".response", spec.ResponseSchema, dir, read)
		if err != nil {
			errs = append(errs, err)
		}
		t.response = s
	}
	sensitive := slices.Compact(slices.Sorted(slices.Values(slices.Clone(spec.Sensitive))))
	if spec.ResponseSchema == "" || t.response != nil {
		errs = append(errs, checkNamed(sensitive, t.response, "sensitive field", "response_schema")...)
	}
	t.sensitive = envelope.NewFoldSet(sensitive...)
	t.NeedsApproval = spec.Approval || slices.Contains(approvalRisks, spec.Risk)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// checkNamed reports why names (sorted, distinct), top-level fields the
// gateway reads by exact name (kind: "visible field", "sensitive
// field"), are unsafe under the schema s of key: names that differ only
// in case; no schema, or one not closed at its top level (additional
// properties false, no patternProperties), which would admit a member
// differing only in case from a named field, passing the gateway's
// exact-name checks unseen while a case-insensitive decoder downstream
// reads it as the field; a named field the schema does not declare (it
// could never appear); a declared property differing only in case from
// a named field.
func checkNamed(names []string, s *jsonschema.Schema, kind, key string) []error {
	if len(names) == 0 {
		return nil
	}
	var errs []error
	folded := make(map[string]string, len(names))
	for _, n := range names {
		f := envelope.FoldName(n)
		if other, dup := folded[f]; dup {
			errs = append(errs, fmt.Errorf("%ss %q and %q differ only in case", kind, other, n))
		}
		folded[f] = n
	}
	if s == nil || s.AdditionalProperties != false || len(s.PatternProperties) > 0 {
		return append(errs, fmt.Errorf("a target with %ss needs a %s closed at its top level (\"additionalProperties\": false, no patternProperties): an open one admits a member differing only in case from a %s, unseen by the gateway yet read as that field by case-insensitive decoders", kind, key, kind))
	}
	set := envelope.NewFoldSet(names...)
	for _, p := range slices.Sorted(maps.Keys(s.Properties)) {
		if of, ok := set.Variant(p); ok {
			errs = append(errs, fmt.Errorf("%s property %q differs only in case from %s %q", key, p, kind, of))
		}
	}
	for _, n := range names {
		if _, ok := s.Properties[n]; !ok {
			errs = append(errs, fmt.Errorf("%s %q is not a property of %s", kind, n, key))
		}
	}
	return errs
}

// compileSchema compiles an inline schema, or the schema file src names
// (relative to dir), which it adds to read; key (payload_schema or
// response_schema) prefixes its errors.
func compileSchema(key, name, src, dir string, read *[]schemaFile) (*jsonschema.Schema, error) {
	data := []byte(src)
	if !strings.HasPrefix(strings.TrimSpace(src), "{") {
		p := src
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		data = b
		*read = append(*read, schemaFile{path: p, data: b})
	}
	s, err := schemas.CompileBytes("catalog:///"+name+".schema.json", data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if err := checkAcyclic(s); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if err := checkExpansion(s, maxSchemaExpansion); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if err := checkFanout(s, maxValueChecks); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return s, nil
}

// Lookup returns the target by name.
func (c *Catalog) Lookup(name string) (*Target, bool) {
	t, ok := c.targets[name]
	return t, ok
}

// Names lists the targets, sorted.
func (c *Catalog) Names() []string { return slices.Clone(c.names) }

// Authorize runs the catalog gate (docs/design.md §3): the target exists, the
// capability matches its kind, the tenant is served, and the credential
// holds the required scope. hasScope is the credential's scope matcher.
func (c *Catalog) Authorize(target string, capability envelope.Capability, tenant string, hasScope func(string) bool) (*Target, error) {
	t, ok := c.targets[target]
	if !ok {
		return nil, reason.Deny(reason.UnknownTarget, "target %q", target)
	}
	if string(capability) != t.Kind {
		return nil, reason.Deny(reason.CapabilityMismatch, "target %q is %s, not %s", target, t.Kind, capability)
	}
	if !t.tenants[tenant] {
		return nil, reason.Deny(reason.TenantNotAllowed, "target %q does not serve tenant %q", target, tenant)
	}
	if !hasScope(t.Scope) {
		return nil, reason.Deny(reason.MissingScope, "target %q requires scope %q", target, t.Scope)
	}
	return t, nil
}

// ValidatePayload checks an opened payload against the target's schema.
// The payload must be a JSON object; the error never quotes its values.
func (t *Target) ValidatePayload(payload []byte) (map[string]any, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return nil, reason.Deny(reason.PayloadInvalid, "payload is not JSON")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, reason.Deny(reason.PayloadInvalid, "payload is not a JSON object")
	}
	if err := t.ValidateObject(obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// ValidateObject checks a decoded payload (maps, slices, json.Number,
// as jsonschema.UnmarshalJSON or envelope.DecodePayload make them): no
// top-level member may differ only in case from a policy- or
// approver-visible field (PayloadCaseVariant: policy and approvers see
// fields by exact name, case-insensitive decoders would read such a
// member as the field), then the target's schema (PayloadInvalid). The
// error never quotes values or the member's name.
func (t *Target) ValidateObject(obj map[string]any) error {
	if of, ok := caseVariant(t.visible, obj); ok {
		return reason.Deny(reason.PayloadCaseVariant, "payload member differs only in case from visible field %q", of)
	}
	if t.schema == nil {
		return nil
	}
	if err := t.schema.Validate(any(obj)); err != nil {
		return reason.Deny(reason.PayloadInvalid, "payload violates the schema of %q at schema %s", t.Name, schemaLocation(err))
	}
	return nil
}

// schemaLocation names where in the schema validation failed: the
// failing subschema's JSON pointer and the keyword, both the catalog's
// own text. Never the instance location: under an open map
// (additionalProperties, patternProperties) that is the payload's own
// member names, plaintext of a sealed payload or a response.
func schemaLocation(err error) string {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return "?"
	}
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	loc := "#"
	if i := strings.IndexByte(ve.SchemaURL, '#'); i >= 0 {
		loc += ve.SchemaURL[i+1:]
	}
	if ve.ErrorKind != nil {
		if kp := ve.ErrorKind.KeywordPath(); len(kp) > 0 {
			loc += "/" + strings.Join(kp, "/")
		}
	}
	return loc
}

// ValidateResponse checks a response payload against the target's
// response schema and returns it with the sensitive fields removed,
// re-encoded. Errors never quote values.
func (t *Target) ValidateResponse(payload []byte) ([]byte, error) {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return nil, reason.Deny(reason.ResponseInvalid, "response is not JSON")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, reason.Deny(reason.ResponseInvalid, "response is not a JSON object")
	}
	if of, ok := caseVariant(t.sensitive, obj); ok {
		// Removing fields by exact name would let it through.
		return nil, reason.Deny(reason.PayloadCaseVariant, "response member differs only in case from sensitive field %q", of)
	}
	if t.response != nil {
		if err := t.response.Validate(v); err != nil {
			return nil, reason.Deny(reason.ResponseInvalid, "response violates the response schema of %q at schema %s", t.Name, schemaLocation(err))
		}
	}
	for _, f := range t.Sensitive {
		delete(obj, f)
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, reason.Deny(reason.ResponseInvalid, "response does not re-encode")
	}
	return out, nil
}

// caseVariant returns the field of set that a top-level member of obj
// differs from only in case (the least such field, so the answer does
// not depend on map order). Linear in the length of obj's member names.
func caseVariant(set envelope.FoldSet, obj map[string]any) (field string, ok bool) {
	for k := range obj {
		if of, v := set.Variant(k); v && (!ok || of < field) {
			field, ok = of, true
		}
	}
	return field, ok
}

// Pick returns the named top-level fields of obj that are present.
func Pick(obj map[string]any, fields []string) map[string]any {
	if len(fields) == 0 {
		return nil
	}
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		if v, ok := obj[f]; ok {
			out[f] = v
		}
	}
	return out
}

func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// MarshalJSON is for `agentgw policy check` output and tests.
func (c *Catalog) MarshalJSON() ([]byte, error) {
	specs := make([]TargetSpec, 0, len(c.names))
	for _, n := range c.names {
		specs = append(specs, c.targets[n].TargetSpec)
	}
	return json.Marshal(struct {
		Digest  string       `json:"digest"`
		Targets []TargetSpec `json:"targets"`
	}{c.Digest, specs})
}
