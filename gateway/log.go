package gateway

import (
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/gateway/audit"
)

// logDecision writes the audit event to the log: its identifying
// fields, and who answered or replayed what, so that a line tells a
// grant from a decision and an operator's dry run from a re-submission.
// The event type holds no secret, so every field may be written.
func (g *Gateway) logDecision(ev audit.Event) {
	lvl := zerolog.InfoLevel
	if ev.Route == "deny" {
		lvl = zerolog.WarnLevel
	}
	e := g.log.WithLevel(lvl).
		Str("event", ev.Kind).
		Str("route", ev.Route).
		Str("tenant", ev.Tenant).
		Str("agent", ev.Agent).
		Str("trace_id", ev.TraceID).
		Str("message_id", ev.MessageID).
		Str("capability", ev.Capability).
		Str("target", ev.Target).
		Str("credential_jti", ev.CredentialID).
		Str("issuer", ev.Issuer).
		Uint64("ingress_seq", ev.IngressSeq).
		Str("output", ev.Output).
		Int64("latency_us", ev.LatencyMicros)
	if ev.Reason != "" {
		e = e.Str("reason", ev.Reason).Str("stage", ev.Stage).Str("detail", audit.ClipDetail(ev.Detail))
	}
	if len(ev.PolicyIDs) > 0 {
		e = e.Strs("policy_ids", ev.PolicyIDs)
	}
	for _, f := range [...]struct{ key, val string }{
		{"approver", ev.Approver}, {"held_message_id", ev.HeldMessageID},
		{"held_operator", ev.HeldOperator}, {"operator", ev.Operator},
	} {
		if f.val != "" {
			e = e.Str(f.key, f.val)
		}
	}
	if ev.DeniedSeq != 0 {
		e = e.Uint64("denied_seq", ev.DeniedSeq)
	}
	if ev.DryRun {
		e = e.Bool("dry_run", true)
	}
	e.Msg("decision")
}
