package operator

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/agentgw/agentgw/gateway/envelope"
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
	Route      string   `json:"route"`            // what the pipeline would decide (dry run), "not_predicted" (a dry run of an answer: the approval or response gate decides), or "submitted"
	Reason     string   `json:"reason,omitempty"` // the denial it would give
	Detail     string   `json:"detail,omitempty"`
	PolicyIDs  []string `json:"policy_ids,omitempty"`
	IngressSeq uint64   `json:"ingress_seq,omitempty"` // the re-submitted message, for a real replay
	Error      string   `json:"error,omitempty"`       // why the request itself was refused
	Code       string   `json:"code,omitempty"`
}

// members are the request's member names, all required.
var members = [...]string{"v", "request_id", "tenant", "denied_seq", "dry_run", "issued_at", "expires_at"}

// Parse reads a request strictly and checks its form and freshness. The
// bytes must pass the envelope's strict scan (envelope.DecodePayload:
// valid UTF-8, no duplicate names, case variants included, bounded size
// and depth) and hold exactly the seven members of Request with exact
// names, each of its type: v the integer 1, denied_seq a positive decimal
// integer, dry_run a boolean, issued_at and expires_at times as the
// envelope writes them (envelope.ParseTime: UTC, ending in Z). A version
// other than 1 is UnsupportedVersion, any other form MalformedEnvelope.
func Parse(data []byte, now time.Time, skew time.Duration) (*Request, error) {
	obj, err := envelope.DecodePayload(data, envelope.DefaultLimits())
	if err != nil {
		return nil, reason.Deny(reason.MalformedEnvelope, "operator request is not a strict JSON object: %v", err)
	}
	if v, ok := obj["v"].(json.Number); ok && v != "1" {
		if _, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return nil, reason.Deny(reason.UnsupportedVersion, "operator request version %s", v)
		}
	}
	if len(obj) != len(members) {
		return nil, reason.Deny(reason.MalformedEnvelope, "operator request needs exactly the members %v", members)
	}
	for _, name := range members {
		if _, ok := obj[name]; !ok {
			return nil, reason.Deny(reason.MalformedEnvelope, "operator request needs exactly the members %v", members)
		}
	}
	v, ok := obj["v"].(json.Number)
	if !ok || v != "1" {
		return nil, reason.Deny(reason.MalformedEnvelope, "operator request v is not the number 1")
	}
	r := Request{V: 1}
	var okID, okTenant, okDry, okIssued, okExpires bool
	r.RequestID, okID = obj["request_id"].(string)
	r.Tenant, okTenant = obj["tenant"].(string)
	r.DryRun, okDry = obj["dry_run"].(bool)
	if !okID || !okTenant || !okDry {
		return nil, reason.Deny(reason.MalformedEnvelope, "operator request request_id and tenant must be strings, dry_run a boolean")
	}
	if seq, ok := obj["denied_seq"].(json.Number); ok {
		r.DeniedSeq, _ = strconv.ParseUint(string(seq), 10, 64) // 0 on failure
	}
	issued, _ := obj["issued_at"].(string)
	expires, _ := obj["expires_at"].(string)
	r.IssuedAt, okIssued = envelope.ParseTime(issued)
	r.ExpiresAt, okExpires = envelope.ParseTime(expires)
	switch {
	case len(r.RequestID) < 16 || len(r.RequestID) > 128 || r.DeniedSeq == 0 || r.Tenant == "":
		return nil, reason.Deny(reason.MalformedEnvelope, "operator request needs request_id (16-128), tenant and denied_seq (a positive integer)")
	case !okIssued || !okExpires:
		return nil, reason.Deny(reason.MalformedEnvelope, "operator request times must be RFC 3339 UTC: YYYY-MM-DDTHH:MM:SS[.fraction]Z")
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

// ReplayIDInput is what the gateway signs to derive a re-submission's
// Nats-Msg-Id: the denied body's digest and sequence, under a context of
// its own. The signature is deterministic, so every request for one
// denied record gets one id, and only the gateway's key can make it.
func ReplayIDInput(bodyDigestHex string, deniedSeq uint64) []byte {
	return fmt.Appendf(nil, "agentgw-replay-id-v1\n%s\n%d", bodyDigestHex, deniedSeq)
}

// ReplayInput is what the gateway signs to authorize one re-submission:
// the body digest, the denied sequence, the operator, an expiry, and the
// digest of the operator's credential as the re-submission carries it
// (sealed; Agentgw-Replay-Credential), so that the credential re-checked
// when the message is decided is the one that asked.
func ReplayInput(bodyDigestHex string, deniedSeq uint64, operatorKey string, expires int64, credentialDigestHex string) []byte {
	return fmt.Appendf(nil, "agentgw-replay-v2\n%s\n%d\n%s\n%d\n%s", bodyDigestHex, deniedSeq, operatorKey, expires, credentialDigestHex)
}
