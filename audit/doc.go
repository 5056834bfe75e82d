// Package audit defines the audit event: one per decision and per notable
// gate outcome, published to agentgw.audit.<tenant> and written to the
// log. The event has no field that could hold a secret: credentials
// appear as their jti and issuer, payloads as digests. Its JSON Schema is
// schemas/audit-event.schema.json.
package audit
