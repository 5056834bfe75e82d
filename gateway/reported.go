package gateway

import (
	"sync"
	"time"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects/reason"
)

// decidedReport is what the log and the metrics say of a decision: its
// audit event and what count reads.
type decidedReport struct {
	ev      audit.Event
	route   store.Route
	code    reason.Code
	tenant  string
	answer  string // "granted" or "denied": an answer that took a held request; "" otherwise
	heldFor time.Duration
}

func reportOf(it *item) decidedReport {
	r := decidedReport{ev: it.ev, route: it.route, tenant: it.tenant(), heldFor: it.heldFor}
	if it.denial != nil {
		r.code = it.denial.Code
	}
	if it.heldItem != nil {
		r.answer = "granted"
		if it.answer.Decision == "deny" {
			r.answer = "denied"
		}
	}
	return r
}

// reportDecided logs and counts the decisions of a batch whose outcomes
// are recorded (committed and, scaled out, journaled under a lease still
// held), once each. A batch handed back after it was decided (a commit,
// journal append or lease that failed) is reported when its redelivery
// is: decided again, the new decision; re-emitting the outcome recorded
// all the same (a commit that failed yet reached the disk), the decision
// handBack kept for it. A re-emit of an outcome whose batch this
// process reported, or decided before a restart or on another instance,
// reports nothing: it was reported where it was decided.
func (g *Gateway) reportDecided(items []*item) {
	for _, it := range items {
		switch {
		case it.finished:
			g.handedBack.take(it.seq)
			g.report(reportOf(it))
		case it.reemit:
			if r, ok := g.handedBack.take(it.seq); ok {
				g.report(r)
			}
		}
	}
}

func (g *Gateway) report(r decidedReport) {
	g.logDecision(r.ev)
	switch r.route {
	case store.RouteAllow:
		g.stats.Allowed.Add(1)
	case store.RouteApproval:
		g.stats.Held.Add(1)
		g.metrics.Approvals.WithLabelValues("requested").Inc()
	default:
		g.stats.Denied.Add(1)
	}
	tenant := r.tenant
	if _, ok := g.cfg.Tenants[tenant]; !ok {
		tenant = UnroutableTenant
	}
	if r.code == reason.BudgetExceeded {
		g.metrics.BudgetDenials.WithLabelValues(tenant).Inc()
	}
	g.metrics.Decisions.WithLabelValues(tenant, string(r.route), string(r.code)).Inc()
	if r.answer != "" {
		g.metrics.Approvals.WithLabelValues(r.answer).Inc()
		g.metrics.ApprovalAge.Observe(r.heldFor.Seconds())
	}
	g.stats.Decided.Add(1)
}

// maxHandedBack bounds the decisions handBack keeps: a few batches' worth
// per partition is what can be waiting for redelivery at once.
const maxHandedBack = 4096

// handedBackReports holds, by ingress sequence, the decisions of items
// handed back after they were decided, for reportDecided. The oldest go
// first when it is full: their decisions, if recorded, are then not
// logged or counted (their audit events are among their outputs).
type handedBackReports struct {
	mu    sync.Mutex
	by    map[uint64]decidedReport
	order []uint64
}

func (h *handedBackReports) keep(items []*item) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, it := range items {
		if !it.finished {
			continue
		}
		if h.by == nil {
			h.by = map[uint64]decidedReport{}
		}
		if _, ok := h.by[it.seq]; !ok {
			h.order = append(h.order, it.seq)
		}
		h.by[it.seq] = reportOf(it)
	}
	for len(h.by) > maxHandedBack {
		delete(h.by, h.order[0])
		h.order = h.order[1:]
	}
	if len(h.order) > 2*maxHandedBack {
		// Sequences taken since leave stale places behind.
		live := h.order[:0]
		for _, s := range h.order {
			if _, ok := h.by[s]; ok {
				live = append(live, s)
			}
		}
		h.order = live
	}
}

func (h *handedBackReports) take(seq uint64) (decidedReport, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.by[seq]
	delete(h.by, seq)
	return r, ok
}
