package policy

import (
	"time"

	cedar "github.com/cedar-policy/cedar-go"
)

// Stages of a two-pass decision, as seen by policies in context.stage.
const (
	StageAuthorize = "authorize"
	StageContent   = "content"
)

// BuiltinTenantIsolation is the id reported when the tenant guard, not a
// policy, denied.
const BuiltinTenantIsolation = "builtin:tenant_isolation"

// BuiltinPayloadUnrepresentable is the id reported when a policy that
// takes a request in reads its payload, and a policy-visible field had to
// be left out of the policy's view: a value Cedar cannot hold at any
// depth (an integer past int64, more than four decimals, a null inside an
// array or object; a field that is null is absent), nesting deeper than
// maxPayloadDepth, or more array elements and object members across the
// payload than maxPayloadElements. The message is denied at stage
// content whatever the policies say: a field left out would pass a
// forbid guarded by `context.payload has` it.
const BuiltinPayloadUnrepresentable = "builtin:payload_unrepresentable"

// Capabilities are the action ids a policy may name (docs/wire.md).
var Capabilities = []string{"read", "delegate", "tool_call", "workflow_command", "approve", "respond"}

// Principal is the verified sender. Every field comes from the verified
// credential, never from the envelope body.
type Principal struct {
	Agent   string // agent public nkey; the entity id
	Tenant  string
	Service string
	Issuer  string // issuer public key that signed the credential
	Scopes  []string
}

// Resource is the catalog target a message asks for.
type Resource struct {
	Target string // dotted target name; the entity id
	Tenant string // tenant that owns the target
	Kind   string // capability kind of the target
	Risk   string // risk class, e.g. "low", "medium", "high", "critical"
}

// Request is one question to the policy set.
type Request struct {
	Principal Principal
	// Action is the envelope capability (see Capabilities).
	Action   string
	Resource Resource
	// Time is from the gateway's injected clock; it becomes context.time
	// (Unix seconds) and context.hour (UTC).
	Time time.Time
	// Budget holds the remaining tokens per budget level, e.g.
	// {"agent_remaining": 3}; nil means an empty record.
	Budget map[string]int64
	// Payload is nil before the payload is opened (stage "authorize").
	// After opening, a non-nil map (empty if nothing is visible) holding
	// only the fields the catalog marks policy-visible, JSON-decoded.
	Payload map[string]any
}

// Stage reports "authorize" when Payload is nil and "content" otherwise.
func (r Request) Stage() string {
	if r.Payload == nil {
		return StageAuthorize
	}
	return StageContent
}

// Decision is the outcome of one Request.
type Decision struct {
	Allow bool
	// Approval is true when Allow is and a determining permit is
	// annotated @approval("required").
	Approval bool
	// PolicyIDs are the policies that decided, sorted: the determining
	// permits on allow, the forbids (matching or erroring) on deny, or
	// BuiltinTenantIsolation. Empty on default deny.
	PolicyIDs []string
	// Version is the digest of the Set that decided.
	Version string
	// Errors are evaluation errors ("policy <id>: <message>") and notes
	// on omitted payload fields ("payload.<field>: ..."). They name
	// fields and policies, never payload values.
	Errors []string
	// The slices may be shared between decisions (memo.go): read them,
	// never write into them.
}

// policyMeta is what Decide needs to know about a policy beyond Cedar.
type policyMeta struct {
	forbid   bool
	approval bool
	// readsBudget: it can see context.budget (reads.go).
	readsBudget bool
	// readsStage: it can tell the stages apart (not stageBlind).
	readsStage bool
	// readsPayload: it can see context.payload (reads.go).
	readsPayload bool
}

// entry pairs a policy with its id, in load order.
type entry struct {
	id cedar.PolicyID
	p  *cedar.Policy
}

// Set is an immutable compiled policy set. It is safe for concurrent use.
type Set struct {
	version string
	entries []entry
	meta    map[cedar.PolicyID]policyMeta
	attrs   attrCache
	// stageBlind: no policy reads context.stage or context.payload (or
	// context as a whole), so both stages decide alike.
	stageBlind bool
	// memoOK: no policy can see context.time (see memo.go).
	memoOK bool
	// scoped holds, for each policy that reads context.budget or can
	// tell the stages apart, a permit with its scope and no condition
	// (DependsOn).
	scoped []entry
	memo   decisionMemo
}

// Version returns "sha256:<hex>" of the canonical concatenation of the
// set's source files (see the package doc).
func (s *Set) Version() string { return s.version }

// IDs returns the policy ids in load order.
func (s *Set) IDs() []string {
	ids := make([]string, len(s.entries))
	for i, e := range s.entries {
		ids[i] = string(e.id)
	}
	return ids
}

// Len returns the number of policies.
func (s *Set) Len() int { return len(s.entries) }
