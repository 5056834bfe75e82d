package operator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

// Subject is where the gateway serves operator requests (request-reply).
const Subject = "agentgw.ops.replay"

// SigningContext separates operator request signatures from envelopes.
const SigningContext = "agentgw-operator-v1\n"

// Scope an operator credential needs to replay.
const Scope = "operator:replay"

// MaxTTL bounds expires_at - issued_at of a request.
const MaxTTL = 5 * time.Minute

// Request asks the gateway to re-evaluate (DryRun) or re-submit a denied
// message, named by its sequence in the denied stream.
type Request struct {
	V         int       `json:"v"`
	RequestID string    `json:"request_id"`
	Tenant    string    `json:"tenant"`
	DeniedSeq uint64    `json:"denied_seq"`
	DryRun    bool      `json:"dry_run"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Result is the gateway's answer.
type Result struct {
	DryRun     bool     `json:"dry_run"`
	Route      string   `json:"route"`            // what the pipeline would decide (dry run) or "submitted"
	Reason     string   `json:"reason,omitempty"` // the denial it would give
	Detail     string   `json:"detail,omitempty"`
	PolicyIDs  []string `json:"policy_ids,omitempty"`
	IngressSeq uint64   `json:"ingress_seq,omitempty"` // the re-submitted message, for a real replay
	Error      string   `json:"error,omitempty"`       // why the request itself was refused
	Code       string   `json:"code,omitempty"`
}

// Parse decodes a request strictly and checks its form and freshness.
func Parse(data []byte, now time.Time, skew time.Duration) (*Request, error) {
	var r Request
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil || dec.More() {
		return nil, reason.Deny(reason.MalformedEnvelope, "operator request is not a strict JSON object")
	}
	switch {
	case r.V != 1:
		return nil, reason.Deny(reason.UnsupportedVersion, "operator request version %d", r.V)
	case len(r.RequestID) < 16 || len(r.RequestID) > 128 || r.DeniedSeq == 0 || r.Tenant == "":
		return nil, reason.Deny(reason.MalformedEnvelope, "operator request needs request_id (16-128), tenant and denied_seq")
	case r.ExpiresAt.Sub(r.IssuedAt) > MaxTTL || !r.ExpiresAt.After(r.IssuedAt):
		return nil, reason.Deny(reason.TTLTooLong, "operator request lifetime must be in (0, %s]", MaxTTL)
	case now.After(r.ExpiresAt.Add(skew)):
		return nil, reason.Deny(reason.MessageExpired, "operator request expired")
	case r.IssuedAt.After(now.Add(skew)):
		return nil, reason.Deny(reason.IssuedInFuture, "operator request issued in the future")
	}
	return &r, nil
}

// SigningInput is what the operator signs.
func SigningInput(body []byte) []byte {
	return append([]byte(SigningContext), body...)
}

// ReplayInput is what the gateway signs to authorize one re-submission:
// the body digest, the denied sequence, the operator and an expiry.
func ReplayInput(bodyDigestHex string, deniedSeq uint64, operatorKey string, expires int64) []byte {
	return fmt.Appendf(nil, "agentgw-replay-v1\n%s\n%d\n%s\n%d", bodyDigestHex, deniedSeq, operatorKey, expires)
}
