package policy

import (
	"iter"

	cedar "github.com/cedar-policy/cedar-go"
	cedarast "github.com/cedar-policy/cedar-go/ast"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// What a decision can turn on beyond the principal, the action, the
// resource and the clock. A recorded decision (an audit event) keeps
// those, but neither the budget state the gateway passed nor the payload
// the content stage saw; DependsOn tells a what-if which of them a set's
// decision on a request could turn on, so that it does not judge such a
// request without them.

// Dependence is what a Set's decision on one request could turn on.
type Dependence struct {
	// Budget: a policy whose scope takes in the request reads
	// context.budget (or uses context whole), so the decision can differ
	// with the budget state.
	Budget bool
	// Content: a policy whose scope takes in the request reads
	// context.stage or context.payload (or uses context whole), so the
	// content stage can decide otherwise than the authorize stage.
	Content bool
	// Payload: a policy whose scope takes in the request reads
	// context.payload (or uses context whole).
	Payload bool
}

// notBudgetAttrs are the context attributes other than budget.
var notBudgetAttrs = map[string]bool{"time": true, "hour": true, "stage": true, "payload": true}

// notPayloadAttrs are the context attributes other than payload.
var notPayloadAttrs = map[string]bool{"time": true, "hour": true, "stage": true, "budget": true}

// readsPayload reports whether p can see context.payload: it reads it,
// or uses context whole.
func readsPayload(p *xast.Policy) bool {
	return !contextUsesOnly(p, notPayloadAttrs)
}

// readsBudget reports whether p can see context.budget: it reads or
// tests it, or uses context other than by reading another attribute.
func readsBudget(p *xast.Policy) bool {
	return !contextUsesOnly(p, notBudgetAttrs)
}

// scopeOnly is a permit with p's principal, action and resource scopes
// and no condition: it is satisfied by exactly the requests p's scope
// takes in.
func scopeOnly(p *xast.Policy) *cedar.Policy {
	return cedar.NewPolicyFromAST((*cedarast.Policy)(&xast.Policy{
		Effect:    xast.EffectPermit,
		Principal: p.Principal,
		Action:    p.Action,
		Resource:  p.Resource,
	}))
}

// DependsOn reports what s's decision on req could turn on beyond its
// principal, action, resource and time: whether a policy whose scope
// (principal, action, resource) takes in req reads the budget state, and
// whether one can tell the stages apart. A request the tenant guard
// denies depends on neither.
func (s *Set) DependsOn(req Request) Dependence {
	var dep Dependence
	if len(s.scoped) == 0 || req.Principal.Tenant == "" || req.Principal.Tenant != req.Resource.Tenant {
		return dep
	}
	ents := &entities{
		principal: cedar.Entity{UID: cedar.NewEntityUID(entityAgent, cedar.String(req.Principal.Agent))},
		resource:  cedar.Entity{UID: cedar.NewEntityUID(entityTarget, cedar.String(req.Resource.Target))},
	}
	_, diag := cedar.Authorize(entryList(s.scoped), ents, cedar.Request{
		Principal: ents.principal.UID,
		Action:    cedar.NewEntityUID(entityAction, cedar.String(req.Action)),
		Resource:  ents.resource.UID,
		Context:   emptyRecord,
	})
	for _, r := range diag.Reasons {
		m := s.meta[r.PolicyID]
		dep.Budget = dep.Budget || m.readsBudget
		dep.Content = dep.Content || m.readsStage
		dep.Payload = dep.Payload || m.readsPayload
	}
	return dep
}

// entryList walks entries in order for cedar.Authorize.
type entryList []entry

func (l entryList) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, e := range l {
			if !yield(e.id, e.p) {
				return
			}
		}
	}
}
