// Package invariant checks the promise agentgw makes about a run: every
// message that entered the ingress stream ends in exactly one place
// (capability subject, approval queue or denied stream), no output lacks
// its input, and none is duplicated. Tests of every kind (end to end,
// crash, soak) read the real streams and call Check.
package invariant
