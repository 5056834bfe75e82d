// Package tracing owns OpenTelemetry set-up for agentgw and the W3C trace
// context carried in NATS headers. The envelope's signed trace_id is
// authoritative: a traceparent header is used as the parent only when it
// names the same trace, so an agent cannot graft its message onto another
// trace. Span attributes are ids, names and reasons — never a credential,
// key or payload.
package tracing
