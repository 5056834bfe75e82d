// Package decision owns the gateway decision token (docs/wire.md, "Decision tokens"): the
// short-lived token (JWT-shaped claims, four parts:
// header.claims.proof.signature) the gateway attaches to every message it puts on a
// capability or reply subject or the approval queue (in the body of a
// delivery and of a decision notice, in the Agentgw-Decision header of a
// reply and of an approval request), and that consumers and approvers
// verify so that nothing reaches them without the gateway.
//
// A token is header.claims.proof.signature (batch.go): the gateway
// prepares the tokens of a batch (Prepare), then signs them all with one
// Ed25519 signature by its server ('N') key over the root of a Merkle
// tree of their claims (SignBatch); each token carries its audit path,
// so it verifies on its own, and Verify caches verified roots so the
// other tokens of a batch cost no signature check. Sign is a batch of
// one. Its claims follow jwt/v2's layout: registered claims jti, iss
// (the gateway key), sub (the agent), aud (the target), iat, exp, and
// the agentgw claims under "nats" beside jwt/v2's own type and version:
//
//	type            "agentgw-decision"
//	version         2
//	tenant          the tenant
//	scope           the one capability scope used
//	act             {sub: agent, via: gateway[, approver: approver key]}
//	trace_id        W3C trace id
//	message_id      the envelope message id
//	body_digest     hex SHA-256 of the original envelope body bytes
//	payload_digest  hex SHA-256 of the payload bytes the consumer receives
//	policy_ids      the policies that decided
//	policy_version  the policy set version
//	route           "allow" (capability), "reply" (response), "notice"
//	                (a decision notice to its sender) or "approval" (an
//	                approval request to approvers); the last two
//	                authorize nothing
//
// "nats" rather than a private top-level member, so the credential and
// the decision token share one claims layout (jwt/v2 does not parse the
// four-part token).
//
// Package decision knows nothing of NATS connections, policy or the
// ledger: it signs the claims it is given and verifies the bytes it is
// handed at the instant it is told.
package decision
