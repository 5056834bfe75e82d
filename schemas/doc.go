// Package schemas owns the machine-readable contract of agentgw's wire
// format: JSON Schema 2020-12 documents for the envelope body
// (envelope.schema.json), the decoded claims of a credential JWT
// (credential.schema.json), audit events (audit-event.schema.json) and
// evaluation case files (eval-cases.schema.json, docs/evals.md),
// embedded in the binary, and the one way to compile them and the
// catalog's payload schemas: format assertions on, draft 2020-12 by default, and no loading of anything by URL (no network,
// no files) — a schema may only refer to itself, to the embedded schemas
// and to the standard metaschemas.
//
// The envelope schema and envelope.Parse agree on every fixture in
// testdata/envelopes except where JSON Schema cannot express a rule; there
// the parser alone refuses, and the schema accepts:
//
//   - duplicate member names, and names differing only in case (a schema
//     sees the already-decoded object);
//   - invalid UTF-8 and unpaired surrogate escapes inside plain (decoding
//     replaces them; in fields with an ASCII alphabet the pattern refuses
//     the replacement character, so there the two agree);
//   - nesting depth, per-string and per-number length limits inside plain,
//     number exponents beyond 1000, and the body size limit;
//   - "v" written as 1.0 or 1e0 (a schema compares numbers by value);
//   - a leap second (23:59:60Z is a valid date-time; time.Time has none);
//   - an nkey curve key with a bad checksum.
//
// schemas_test.go lists these fixtures by name and fails if the schema
// starts rejecting one, or if any other fixture gets different verdicts.
//
// Package schemas refuses to know about NATS, signatures, trust and policy;
// it does not parse envelopes (package envelope does).
package schemas
