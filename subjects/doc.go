// Package subjects owns every NATS subject agentgw publishes to or reads
// from, and the rules for the tokens in them (docs/wire.md): tenants and
// target parts are [a-z0-9_-]{1,64}, agents are nkey user public keys.
// Builders refuse a bad token before it can reach a subject; parsers accept
// only what the builders produce. Nothing here panics on input (only on a
// misconfigured partition count, a programming error).
//
// Ingress is partitioned by the stream's subject transform: agents publish
// to agentgw.in.<tenant>.<agent> and the stream stores the message as
// agentgw.in.<partition>.<tenant>.<agent>. The stream listens on
// IngressStreamSubject (exactly four tokens), not agentgw.in.>, so an agent
// cannot publish a five-token subject and choose its own partition (which
// would move its nonces to another gateway instance's ledger).
//
// Package subjects refuses to know about connections, streams' other
// settings, envelopes and policy; it knows reason codes only to name
// denied subjects.
package subjects
