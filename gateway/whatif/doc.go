// Package whatif evaluates a candidate policy set against recorded
// decisions (audit events) and reports which would flip. It re-runs only
// what policy can change: a decision made by a built-in gate (signature,
// credential, replay, catalog, budget, the payload's seal and schema...)
// stays as it was. Audit events hold digests, never payloads, and not the
// budget state the gateway passed to policy: a decision the candidate
// could change only through them (a candidate policy in its scope reads
// context.budget, or its content stage reads policy-visible payload
// fields) is counted as not re-evaluable (Report.Undetermined) rather
// than guessed or counted unchanged. It knows nothing of NATS: the
// caller reads the events.
package whatif
