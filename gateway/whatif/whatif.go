package whatif

import (
	"sort"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/subjects/reason"
)

// Flip is one decision that the candidate would change.
type Flip struct {
	IngressSeq uint64   `json:"ingress_seq"`
	MessageID  string   `json:"message_id"`
	Tenant     string   `json:"tenant"`
	Agent      string   `json:"agent"`
	Target     string   `json:"target"`
	From       string   `json:"from"`
	To         string   `json:"to"`
	PolicyIDs  []string `json:"policy_ids,omitempty"` // the candidate's deciding policies
}

// Report summarises an evaluation.
type Report struct {
	Decisions int            `json:"decisions"` // decision events read
	Evaluated int            `json:"evaluated"` // re-run against the candidate
	Unchanged int            `json:"unchanged"`
	Skipped   map[string]int `json:"skipped"` // why a decision was not re-run
	Changes   map[string]int `json:"changes"` // "allow→deny": count
	Flips     []Flip         `json:"flips"`
}

// Reasons for skipping.
const (
	SkipBeforePolicy = "decided_before_policy"
	SkipContent      = "content_stage_needs_payload"
	SkipNoTarget     = "target_not_in_catalog"
	SkipNotDecision  = "not_a_request_decision"
)

// Evaluate re-runs the authorize stage of every policy-decided request
// in events against candidate, with targets' kind and risk from cat.
func Evaluate(events []audit.Event, cat *catalog.Catalog, candidate *policy.Set) Report {
	r := Report{Skipped: map[string]int{}, Changes: map[string]int{}}
	for _, ev := range events {
		if ev.Kind != audit.KindDecision && ev.Kind != audit.KindApprovalRequest {
			continue
		}
		r.Decisions++
		if ev.Route == "" || ev.Agent == "" {
			r.Skipped[SkipNotDecision]++
			continue
		}
		if ev.Route == "deny" {
			info, _ := reason.Lookup(reason.Code(ev.Reason))
			switch {
			case ev.Reason == string(reason.PolicyDenied):
			case info.Stage == reason.StagePayload:
				r.Skipped[SkipContent]++
				continue
			default:
				r.Skipped[SkipBeforePolicy]++
				continue
			}
		}
		t, ok := cat.Lookup(ev.Target)
		if !ok {
			r.Skipped[SkipNoTarget]++
			continue
		}
		d := candidate.Decide(policy.Request{
			Principal: policy.Principal{Agent: ev.Agent, Tenant: ev.Tenant, Service: ev.Service, Issuer: ev.Issuer, Scopes: ev.Scopes},
			Action:    ev.Capability,
			Resource:  policy.Resource{Target: t.Name, Tenant: ev.Tenant, Kind: t.Kind, Risk: t.Risk},
			Time:      ev.Time,
		})
		to := "deny"
		switch {
		case !d.Allow:
		case d.Approval || t.NeedsApproval:
			to = "approval"
		default:
			to = "allow"
		}
		r.Evaluated++
		if to == ev.Route {
			r.Unchanged++
			continue
		}
		r.Changes[ev.Route+"→"+to]++
		r.Flips = append(r.Flips, Flip{IngressSeq: ev.IngressSeq, MessageID: ev.MessageID, Tenant: ev.Tenant,
			Agent: ev.Agent, Target: ev.Target, From: ev.Route, To: to, PolicyIDs: d.PolicyIDs})
	}
	sort.Slice(r.Flips, func(i, j int) bool { return r.Flips[i].IngressSeq < r.Flips[j].IngressSeq })
	return r
}
