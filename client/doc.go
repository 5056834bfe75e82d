// Package client is the Go SDK for the three kinds of agentgw users that
// are not the gateway itself (docs/design.md §1):
//
//   - Agent builds wire-v1 envelopes (package envelope), signs them with
//     the agent's nkey, seals payloads to the gateway's curve key and
//     publishes them to the agent's ingress subject, retrying lost
//     acknowledgements under the same message id and re-issuing under a
//     new one when a duplicate acknowledgement comes while no earlier
//     attempt can have landed (another publisher's id; docs/wire.md).
//   - Consumer reads the capability subjects of its targets and hands its handler only
//     messages whose gateway decision token verifies (trusted gateway key,
//     audience = target, not expired, bound to the exact body and
//     re-sealed payload bytes), each decision once: a re-published copy
//     of a delivery already handed over (same token id, another stream
//     sequence) is terminated too. A message that may verify later (its
//     token issued ahead of this clock, within the largest skew a gateway
//     takes, or refused only because the record of handed-over tokens is
//     full or was read at a clock ahead of this one) is handed back
//     (nak), and on a durable with HandBackUnknownKeys so is one refused for want of
//     a key (ErrUnknownKey); everything else is terminated and reported. VerifyDelivery is the verification as a pure function,
//     without the memory of what was handed over.
//   - Approver watches the approval queue and answers held requests with
//     `approve` envelopes bound to the request's body digest and policy
//     version (docs/design.md §6). It shows a request only when its
//     decision token (route approval, from a gateway of TrustedGateways)
//     binds its exact bytes: VerifyRequest.
//
// Operators ask the gateway to replay denied messages with Operator and
// read the denied and audit streams with ReadRecords: direct gets only,
// no consumer, which is all their account (OPS in deploy/accounts.conf)
// may call.
//
// Every verification failure is a *reason.Denial or wraps one (match it
// with errors.Is on a reason.Code, or errors.As). No error, String or log line of this
// package contains a credential, a seed or payload bytes; a Delivery or
// Reply printed, encoded as JSON or logged with log/slog shows ids and
// the payload's length only.
//
// Package client refuses to know about the gateway's internals: the
// ledger, the capability catalog, policy, and how streams are created. It
// talks to NATS only through the connections it is given and depends on
// the wire format alone.
package client
