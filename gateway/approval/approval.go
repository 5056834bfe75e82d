package approval

import "time"

// Decisions an approver can give.
const (
	Grant = "grant"
	Deny  = "deny"
)

// Request is what approvers see. It is redacted: no credential, no sealed
// or opened payload, only the fields the catalog marks approver-visible.
type Request struct {
	HeldMessageID string         `json:"held_message_id"`
	TraceID       string         `json:"trace_id"`
	Tenant        string         `json:"tenant"`
	Agent         string         `json:"agent"`
	Service       string         `json:"service,omitempty"`
	Capability    string         `json:"capability"`
	Target        string         `json:"target"`
	Risk          string         `json:"risk"`
	PolicyIDs     []string       `json:"policy_ids,omitempty"`
	PolicyVersion string         `json:"policy_version"`
	BodyDigest    string         `json:"body_digest"`
	PayloadDigest string         `json:"payload_digest"`
	Fields        map[string]any `json:"fields,omitempty"`
	RequestedAt   time.Time      `json:"requested_at"`
	Deadline      time.Time      `json:"deadline"`
}

// Answer is the plain payload of an `approve` envelope whose target is the
// held message id. BodyDigest and PolicyVersion must equal the request's:
// an approver approves exactly the bytes and the policy they were shown.
type Answer struct {
	Decision      string `json:"decision"`
	Reason        string `json:"reason,omitempty"`
	BodyDigest    string `json:"body_digest"`
	PolicyVersion string `json:"policy_version"`
}
