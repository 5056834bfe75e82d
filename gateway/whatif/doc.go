// Package whatif evaluates a candidate policy set against recorded
// decisions (audit events) and reports which would flip. It re-runs only
// what policy can change: a decision made by a built-in gate before policy
// (signature, credential, replay, catalog, budget...) stays as it was,
// and the content stage, which needs the opened payload, is not re-run
// (audit events hold digests, never payloads); such decisions are
// counted as not re-evaluable rather than guessed. It knows nothing of
// NATS: the caller reads the events.
package whatif
