// Package gateway owns the decision pipeline: it consumes the ingress
// stream, runs every gate of docs/design.md §3 in order on each message, records
// the decision in the ledger with one fsync per batch, publishes exactly
// one output per ingress message (capability subject, approval queue or
// denied stream) plus an audit event, and acknowledges the ingress message
// only after JetStream has acknowledged those outputs. A partition, when
// it starts, first decides the messages its consumers had delivered and
// not acknowledged, read from the stream by sequence, before any new
// delivery (recover.go; docs/design.md, "Recovery after a crash").
//
// It composes the other packages (envelope, identity, catalog, policy,
// budget, store, decision, subjects) and adds no cryptography or parsing
// of its own. It refuses to know about the CLI, the SDK or how the NATS
// server was started.
package gateway
