// Package audit defines the audit event: one per decision and per notable
// gate outcome, published to agentgw.audit.<tenant> and written to the
// log. The event has no field that could hold a secret: credentials
// appear as their jti and issuer, payloads as digests. Its JSON Schema is
// schemas/audit-event.schema.json.
//
// An audit message holds one event or several, one JSON object per line
// (newline-delimited JSON; encoding/json never writes a raw newline
// inside an object): the gateway writes the decisions of one fetch batch
// and tenant as one message. Read messages with Decode or Lines, never
// with a single json.Unmarshal.
package audit
