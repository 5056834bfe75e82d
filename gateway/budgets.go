package gateway

import (
	"time"

	"github.com/agentgw/agentgw/gateway/budget"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/subjects/reason"
)

// budgetTake is a budget Take an item was granted: what Budgets.Refund
// needs to give its token back.
type budgetTake struct {
	tenant, agent, target string
	limit                 *budget.Limit // the target limit it was granted under
}

// takeBudget takes it a token from the rate budgets of target t at now,
// recording the grant on it, or denies it (BudgetExceeded). Either way
// it.budget is what policy sees of the budgets.
func (g *Gateway) takeBudget(it *item, t *catalog.Target, now time.Time) {
	limit := budgetLimit(t, g.cfg.Budgets.Target)
	state, ok := g.budgets.Take(it.env.Tenant, it.cred.Subject, t.Name, now, limit)
	it.budget = state.Context()
	if !ok {
		it.deny(reason.Deny(reason.BudgetExceeded, "rate budget for %s exhausted", t.Name))
		return
	}
	it.took = &budgetTake{tenant: it.env.Tenant, agent: it.cred.Subject, target: t.Name, limit: limit}
}

// refundBudgets gives back the budget tokens items were granted, for a
// batch handed back for redelivery undecided: nothing of it is recorded,
// so the redelivery takes its tokens again. A commit that failed yet
// reached the disk leaves outcomes its redelivery re-emits without a
// Take: those tokens are given back once too often (package budget).
func (g *Gateway) refundBudgets(items []*item) {
	var now time.Time
	for _, it := range items {
		tk := it.took
		if tk == nil {
			continue
		}
		if now.IsZero() {
			now = g.clock()
		}
		g.budgets.Refund(tk.tenant, tk.agent, tk.target, now, tk.limit)
		it.took = nil
	}
}

// handBack sends a batch's items back for redelivery undecided: the
// decisions of those decided are kept, for a redelivery that re-emits
// one all the same (reportDecided), their budget tokens are refunded,
// then they are naked.
func (g *Gateway) handBack(items []*item) {
	g.handedBack.keep(items)
	g.refundBudgets(items)
	g.nakAll(items)
}

// budgetLimit is t's own rate budget, nil when it has none (the default
// target limit applies). It replaces the default target limit for t,
// lower or higher: a rate of 100 over a default of 5/s lifts the limit.
// Only its zero fields take the default's: a budget without a rate takes
// the default's rate, one without a burst the default's burst.
func budgetLimit(t *catalog.Target, def budget.Limit) *budget.Limit {
	if t.Budget == nil {
		return nil
	}
	l := budget.Limit{Rate: t.Budget.Rate, Burst: t.Budget.Burst}
	if l.Rate <= 0 {
		l.Rate = def.Rate
	}
	if l.Burst <= 0 {
		l.Burst = def.Burst
	}
	return &l
}
