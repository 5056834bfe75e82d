package audit

import (
	"time"
	"unicode/utf8"
)

// Event kinds.
const (
	KindDecision        = "decision"
	KindRedelivery      = "redelivery"
	KindApprovalRequest = "approval_requested"
	KindApprovalGranted = "approval_granted"
	KindApprovalDenied  = "approval_denied"
	KindApprovalExpired = "approval_expired"
	// KindApprovalWithdrawn: a held request denied without an answer
	// because its requester's credential no longer stands (revoked, or
	// its issuer no longer trusted for the tenant); Reason says which.
	KindApprovalWithdrawn = "approval_withdrawn"
	KindOperatorReplay    = "operator_replay"
	KindResponse          = "response"
	KindPolicyReload      = "policy_reload"
	// KindCredentialExchange: an IdP token exchanged for a credential
	// (Reason empty) or refused (Reason set). Package exchange.
	KindCredentialExchange = "credential_exchange"
)

// Event is one audit record. Every field is safe to log.
type Event struct {
	Time          time.Time `json:"time"`
	Kind          string    `json:"event"`
	Gateway       string    `json:"gateway,omitempty"`
	Route         string    `json:"route,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	Stage         string    `json:"stage,omitempty"`
	Detail        string    `json:"detail,omitempty"`
	TraceID       string    `json:"trace_id,omitempty"`
	MessageID     string    `json:"message_id,omitempty"`
	Tenant        string    `json:"tenant,omitempty"`
	Agent         string    `json:"agent,omitempty"`
	Service       string    `json:"service,omitempty"`
	CredentialID  string    `json:"credential_jti,omitempty"`
	Issuer        string    `json:"issuer,omitempty"`
	Scopes        []string  `json:"scopes,omitempty"`
	Capability    string    `json:"capability,omitempty"`
	Target        string    `json:"target,omitempty"`
	PolicyIDs     []string  `json:"policy_ids,omitempty"`
	PolicyVersion string    `json:"policy_version,omitempty"`
	IngressSeq    uint64    `json:"ingress_seq,omitempty"`
	Delivery      uint64    `json:"delivery,omitempty"`
	Output        string    `json:"output,omitempty"`
	BodyDigest    string    `json:"body_digest,omitempty"`
	PayloadDigest string    `json:"payload_digest,omitempty"`
	Approver      string    `json:"approver,omitempty"`
	HeldMessageID string    `json:"held_message_id,omitempty"`
	// HeldOperator is the operator whose replay the held request was,
	// on an answer's event; Operator is the answer's own.
	HeldOperator  string `json:"held_operator,omitempty"`
	Operator      string `json:"operator,omitempty"`
	DeniedSeq     uint64 `json:"denied_seq,omitempty"`
	DryRun        bool   `json:"dry_run,omitempty"`
	LatencyMicros int64  `json:"latency_us,omitempty"`

	// Token exchange (KindCredentialExchange). The IdP token itself is
	// never recorded: its issuer and subject are.
	IdPIssuer  string   `json:"idp_issuer,omitempty"`
	IdPSubject string   `json:"idp_subject,omitempty"`
	IdPActors  []string `json:"idp_actors,omitempty"`
	Rules      []string `json:"rules,omitempty"`
	RequestID  string   `json:"request_id,omitempty"`
}

// MaxDetail bounds an event's detail, in bytes: the audit schema allows
// 1,024 characters. Producers keep what they quote short, and cut the
// detail they put in an event with ClipDetail (as the logs do) in case
// one did not; AppendJSON writes what it is given, as json.Marshal.
const MaxDetail = 1024

// ClipDetail returns s cut to at most MaxDetail bytes, at a rune
// boundary.
func ClipDetail(s string) string {
	if len(s) <= MaxDetail {
		return s
	}
	i := MaxDetail
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
