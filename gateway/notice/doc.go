// Package notice owns the decision notice (docs/wire.md, "Decision
// notices"): the short JSON message that tells an authenticated sender
// what the gateway decided for one of its envelopes — delivered (to which
// target), held for approval (the approval id and deadline), or denied
// (the reason code) — on the sender's own reply subject,
// agentgw.reply.<tenant>.<agent>, marked by the header Agentgw-Notice:
// decision.
//
// A notice says nothing of policy: no policy ids, no version, no detail
// string; only the typed reason code of the reason table. A decision
// token (package decision, route "notice") addressed to the sender binds
// its exact bytes, so a party that can write to the reply subject cannot
// forge one. The message's body is the notice document, which carries
// both: {"v":1,"decision":"<token>","notice":{…}} (AppendDoc, ParseDoc).
//
// The package knows nothing of NATS or of the pipeline: it encodes and
// strictly decodes the notice and its document.
package notice
