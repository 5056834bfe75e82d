package whatif

import (
	"sort"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/identity"
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
	// Undetermined counts the skipped decisions the candidate could
	// change but that the record cannot settle (Undeterminable reasons):
	// while it is not zero, that no decision flips is not known.
	Undetermined int            `json:"undetermined"`
	Changes      map[string]int `json:"changes"` // "allow→deny": count
	Flips        []Flip         `json:"flips"`
}

// Reasons for skipping.
const (
	// SkipBeforePolicy: a built-in gate before policy decided it.
	SkipBeforePolicy = "decided_before_policy"
	// SkipPayloadGate: a built-in payload check denied it (the seal, the
	// strict JSON, the schema); policy either denies the request before
	// that check or lets it reach the same check, which denies again.
	SkipPayloadGate = "decided_by_payload_gate"
	// SkipContent: the candidate's content stage would decide it, and
	// that needs the payload's policy-visible fields, which audit never
	// holds; or it was denied at the content stage (content_denied) and
	// the candidate's authorize stage allows it.
	SkipContent = "content_stage_needs_payload"
	// SkipBudget: a candidate policy whose scope takes it in reads
	// context.budget, the budget state the gateway passed, which audit
	// does not hold.
	SkipBudget      = "budget_state_not_recorded"
	SkipNoTarget    = "target_not_in_catalog"
	SkipNotDecision = "not_a_request_decision"
	// SkipAnswerTarget: an answer (respond, approve) names the request it
	// answers, not the target policy judged it against, and the targets
	// it may have answered for are decided differently by the candidate,
	// or there are none in the catalog.
	SkipAnswerTarget = "answer_target_not_recorded"
)

// Undeterminable are the skip reasons of decisions the candidate could
// change: they count in Report.Undetermined.
var Undeterminable = map[string]bool{SkipContent: true, SkipBudget: true, SkipAnswerTarget: true}

// Evaluate re-runs every policy-decided request in events against
// candidate, with targets' kind and risk from cat: the authorize stage,
// and the content stage where the record holds what it needs (a target
// without policy-visible fields, whose content stage sees an empty
// payload). A decision the candidate could change only through what audit
// does not keep (the budget state, the payload) is counted in Skipped
// and Undetermined, never as unchanged.
func Evaluate(events []audit.Event, cat *catalog.Catalog, candidate *policy.Set) Report {
	r := Report{Skipped: map[string]int{}, Changes: map[string]int{}}
	undetermined := func(why string) {
		r.Skipped[why]++
		r.Undetermined++
	}
	for _, ev := range events {
		answer := ev.Capability == string(envelope.Approve) || ev.Capability == string(envelope.Respond)
		if ev.Kind != audit.KindDecision && ev.Kind != audit.KindApprovalRequest &&
			!(answer && (ev.Kind == audit.KindApprovalGranted || ev.Kind == audit.KindApprovalDenied)) {
			continue
		}
		r.Decisions++
		if ev.Route == "" || ev.Agent == "" {
			r.Skipped[SkipNotDecision]++
			continue
		}
		if answer {
			r.answer(ev, cat, candidate, undetermined)
			continue
		}
		contentDenied := false
		if ev.Route == "deny" {
			info, _ := reason.Lookup(reason.Code(ev.Reason))
			switch {
			case ev.Reason == string(reason.PolicyDenied):
			case ev.Reason == string(reason.ContentDenied):
				// The content policy, or a payload claim contradicting
				// the envelope: the record does not say which.
				contentDenied = true
			case info.Stage == reason.StagePayload:
				r.Skipped[SkipPayloadGate]++
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
		req := requestFor(ev, t)
		dep := candidate.DependsOn(req)
		if dep.Budget {
			undetermined(SkipBudget)
			continue
		}
		d := candidate.Decide(req)
		if d.Allow {
			switch {
			case contentDenied, dep.Content && len(t.PolicyVisible) > 0:
				undetermined(SkipContent)
				continue
			case dep.Content:
				// The content stage of a target without visible fields
				// sees an empty payload, as the gateway's does.
				creq := req
				creq.Payload = map[string]any{}
				c := candidate.DecideContent(d, creq)
				if !c.Allow {
					d = c
				} else {
					d.Approval = d.Approval || c.Approval
				}
			}
		}
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

// answer re-runs an answer's policy decision. Its record names the
// request it answers, not the target policy judged it against: it is
// judged against every target of the catalog it may have answered for
// (serving its tenant, one its credential may answer for), and settled
// only when the candidate decides them all alike. An answer that passed
// policy is recorded as the release or denial of what it answered (an
// approver's) or as the reply (a responder's); one policy refused is
// denied policy_denied; one refused before policy was skipped above.
func (r *Report) answer(ev audit.Event, cat *catalog.Catalog, candidate *policy.Set, undetermined func(string)) {
	if ev.Route == "deny" && ev.Kind == audit.KindDecision && ev.Reason != string(reason.PolicyDenied) {
		r.Skipped[SkipBeforePolicy]++
		return
	}
	was := "allow"
	if ev.Kind == audit.KindDecision && ev.Route == "deny" {
		was = "deny"
	}
	cred := identity.Credential{Scopes: ev.Scopes}
	var allowed, denied int
	var ids []string
	for _, name := range cat.Names() {
		t, _ := cat.Lookup(name)
		if !t.Serves(ev.Tenant) || !cred.HasScope(ev.Capability+":"+t.Name) ||
			(ev.Capability == string(envelope.Respond) && t.ResponseDeadline == 0) {
			continue
		}
		req := requestFor(ev, t)
		if dep := candidate.DependsOn(req); dep.Budget || dep.Content {
			undetermined(SkipAnswerTarget)
			return
		}
		// An answer cannot wait for an approver: a permit asking for one
		// refuses it.
		if d := candidate.Decide(req); d.Allow && !d.Approval {
			allowed++
		} else {
			denied++
			ids = d.PolicyIDs
		}
	}
	if allowed+denied == 0 || (allowed > 0 && denied > 0) {
		undetermined(SkipAnswerTarget)
		return
	}
	to := "allow"
	if denied > 0 {
		to = "deny"
	}
	r.Evaluated++
	if to == was {
		r.Unchanged++
		return
	}
	r.Changes[was+"→"+to]++
	r.Flips = append(r.Flips, Flip{IngressSeq: ev.IngressSeq, MessageID: ev.MessageID, Tenant: ev.Tenant,
		Agent: ev.Agent, Target: ev.Target, From: was, To: to, PolicyIDs: ids})
}

// requestFor is the policy request of ev's message to target t, as the
// gateway builds it: the credential's principal, the envelope's
// capability and tenant, the target's kind and risk, at ev's time.
func requestFor(ev audit.Event, t *catalog.Target) policy.Request {
	return policy.Request{
		Principal: policy.Principal{Agent: ev.Agent, Tenant: ev.Tenant, Service: ev.Service, Issuer: ev.Issuer, Scopes: ev.Scopes},
		Action:    ev.Capability,
		Resource:  policy.Resource{Target: t.Name, Tenant: ev.Tenant, Kind: t.Kind, Risk: t.Risk},
		Time:      ev.Time,
	}
}
