package approval

import (
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/subjects/reason"
)

// ParseAnswer reads the plain payload of an `approve` envelope strictly:
// envelope.DecodePayload's scan (valid UTF-8, no duplicate names, case
// variants included, bounded size and depth), then exact member names —
// decision, body_digest and policy_version required, reason optional, all
// strings, nothing else. A member whose name differs from one of these
// only in case is unknown, never read as that member: an approver and the
// gateway read the same answer. Every failure is an ApprovalInvalid
// denial that names the member, never its value. ParseAnswer does not
// check the binding (digests, policy version): the gateway does.
func ParseAnswer(plain []byte, lim envelope.Limits) (Answer, error) {
	obj, err := envelope.DecodePayload(plain, lim)
	if err != nil {
		return Answer{}, reason.Deny(reason.ApprovalInvalid, "answer is not a strict JSON object: %v", err)
	}
	var a Answer
	fields := map[string]*string{
		"decision":       &a.Decision,
		"reason":         &a.Reason,
		"body_digest":    &a.BodyDigest,
		"policy_version": &a.PolicyVersion,
	}
	for name, v := range obj {
		dst, ok := fields[name]
		if !ok {
			return Answer{}, reason.Deny(reason.ApprovalInvalid, "answer has a member other than decision, reason, body_digest, policy_version")
		}
		s, ok := v.(string)
		if !ok {
			return Answer{}, reason.Deny(reason.ApprovalInvalid, "answer member %s is not a string", name)
		}
		*dst = s
	}
	for _, name := range []string{"decision", "body_digest", "policy_version"} {
		if _, ok := obj[name]; !ok {
			return Answer{}, reason.Deny(reason.ApprovalInvalid, "answer has no %s", name)
		}
	}
	if a.Decision != Grant && a.Decision != Deny {
		return Answer{}, reason.Deny(reason.ApprovalInvalid, "answer decision is neither grant nor deny")
	}
	return a, nil
}
