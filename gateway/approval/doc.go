// Package approval defines the approval protocol's messages: the redacted
// request the gateway publishes to agentgw.approval.<tenant>.<target>, and
// the answer an approver puts in the payload of an `approve` envelope.
// The binding rules (digest, policy version, single use, approver ≠
// requester) are enforced by the gateway; this package only says what is
// bound. It knows nothing of NATS.
package approval
