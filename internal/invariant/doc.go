// Package invariant checks the promise agentgw makes about a run: every
// message that entered the ingress stream ends in exactly one place
// (capability subject, approval queue or denied stream), no output lacks
// its input, and none is duplicated. Decision notices to senders (on the
// reply stream, marked Agentgw-Notice) are not where a message ends; each
// must answer a known ingress message and appear at most once. Tests of
// every kind (end to end, crash, soak) read the real streams and call
// Check.
package invariant
