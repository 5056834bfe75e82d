// Package identity owns agentgw's keys and credentials: nkey generation by
// role, fast Ed25519 signing, the agentgw credential JWT (issue and
// verify, with per-tenant issuer trust, revocation and a bounded cache of
// signature-verified claims), NATS-style .creds files, payload sealing in
// the nkeys xkey wire format with precomputed shared keys (and a
// credential sealed to the box's own key, bound to its message, for
// records only the gateway may read back), and the secret types (Seed,
// Token) whose every printed form is redacted.
//
// Key roles, by nkey prefix:
//
//	A  tenant issuer: signs credentials (NewIssuer)
//	U  agent, approver, consumer, operator: the credential subject (NewAgent)
//	N  the gateway: signs decision tokens (NewGatewayKey)
//	X  curve key for sealing payloads (NewCurve)
//
// A key can only ever act in its role: a credential whose issuer is not an
// A key, or a decision token whose issuer is not an N key, is malformed,
// so a misconfigured trust list cannot turn one role into another.
//
// Every verification function returns a *reason.Denial (match it with
// errors.Is on a reason.Code); its detail names a credential by jti and
// never contains a token, a seed or payload bytes.
//
// Package identity knows nothing of NATS connections, subjects, envelopes
// or policy: it verifies bytes it is handed at the instant it is told.
package identity
