// Package eval runs security evaluation cases: pinned expectations about
// what the gateway does with a message (delivered, held for approval, or
// denied with a reason code, and which policies decided), checked by
// sending each case through the real pipeline and reading the outcome off
// the output streams and the audit trail.
//
// A case file (docs/evals.md, schemas/eval-cases.schema.json) names
// actors by role and never holds a key or a credential: Run generates
// every identity per case, from issuers the sandbox trusts (or, for an
// external gateway, from issuer seeds the caller names). Run reports per
// case and in total the false allows, false denials, wrong reasons and
// wrong deciding policies, the replays detected, trace fields missing on
// outputs and in audit events, redaction failures (a seed, a credential or
// a sealed plaintext the run used found in any output, audit event or
// gateway log line) and which policies decided a case.
//
// Export turns denied records into cases that expect the same denial,
// copying no secret: the credential stays sealed in the record, and a
// plain payload is copied only when the caller asks.
//
// It lives in internal/ because it drives package gateway from above and
// uses the client SDK to read records, which the gates must never import;
// it serves the CLI (agentgw eval, agentgw denied export) and the suite
// test of testdata/evals.
package eval
