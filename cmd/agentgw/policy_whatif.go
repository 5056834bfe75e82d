package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/gateway/whatif"
	"github.com/agentgw/agentgw/subjects"
)

func policyTest(args []string) int {
	c := newCmd("policy test", "--catalog FILE [--since 24h] [--tenant T] [--json] CANDIDATE_POLICY_FILE...", `
What-if: read the recorded decisions of the audit stream and evaluate
the candidate Cedar policies against each, as the gateway would
(principal, action and target from the record; kind and risk from
--catalog): the authorize stage, and the content stage where the record
holds what it needs. Print every decision that would flip and the
counts.

Decisions made by a built-in gate (before policy, or the payload's
seal, strict JSON and schema) cannot flip and are counted apart. The
audit stream holds neither payloads nor the budget state the gateway
passes to policy, so a decision the candidate could change only through
them is counted as not re-evaluable: one that a candidate policy reading
context.budget takes in; one whose content stage a candidate policy
reading context.payload or context.stage takes in, on a target with
policy-visible fields; one denied content_denied that the candidate's
authorize stage allows.

Exit 0 only if every decision the candidate could change was
re-evaluated and none would flip. Exit 3 if any would flip, or if the
candidate policies do not load; exit 4 if none would flip but some are
not re-evaluable (the report says which and why). Exit 1 if the audit
stream could not be read to its end (an interrupt included): a partial
read is never reported.`)
	var cf connFlags
	cf.register(c.fs)
	cf.operatorSide = true
	catPath := c.fs.String("catalog", "", "capability catalog `file` (targets' kind and risk)")
	sinceD := c.fs.Duration("since", 24*time.Hour, "how far back to read the audit stream")
	tenant := c.fs.String("tenant", "", "only this tenant's decisions")
	asJSON := c.fs.Bool("json", false, "print the report as JSON")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.require("catalog"); !ok {
		return code
	}
	if len(c.args) == 0 {
		return c.usageErr("give the candidate policy files")
	}
	if *tenant != "" && !subjects.ValidToken(*tenant) {
		// Pasted into a subject filter: "*" would read every tenant's.
		return c.usageErr("--tenant %q is not [a-z0-9_-]{1,64}", *tenant)
	}
	candidate, err := policy.Load(c.args...)
	if err != nil {
		fmt.Fprintf(c.err, "agentgw policy test: candidate policies do not load:\n%v\n", err)
		return exitRejected
	}
	cat, err := catalog.Load(*catPath)
	if err != nil {
		fmt.Fprintf(c.err, "agentgw policy test: the catalog does not load:\n%s\n", identity.SafeText(err.Error()))
		return exitRejected
	}
	nc, js, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	filter := "agentgw.audit.>"
	if *tenant != "" {
		filter = "agentgw.audit." + *tenant
	}
	ctx, cancel := interruptible()
	defer cancel()
	var events []audit.Event
	err = scan(ctx, js, gateway.StreamAudit, filter, *sinceD, false, func(m *jetstream.RawStreamMsg) error {
		evs, _ := audit.Decode(m.Data) // what is not an event is skipped
		events = append(events, evs...)
		if len(events)%10000 == 0 {
			fmt.Fprintf(c.err, "\rread %d audit events", len(events))
		}
		return nil
	})
	if err != nil {
		return c.fail(err, streamHint(gateway.StreamAudit, err))
	}
	r := whatif.Evaluate(events, cat, candidate)
	if *asJSON {
		return jsonExitFlips(c, r)
	}
	fmt.Fprintf(c.out, "candidate %s against %d decisions (%d re-evaluated, %d unchanged)\n",
		candidate.Version(), r.Decisions, r.Evaluated, r.Unchanged)
	keys := make([]string, 0, len(r.Skipped))
	for k := range r.Skipped {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		what := "not re-evaluated:"
		if whatif.Undeterminable[k] {
			what = "not re-evaluable:"
		}
		fmt.Fprintf(c.out, "  %s %-30s %d\n", what, k, r.Skipped[k])
	}
	if len(r.Flips) == 0 {
		if r.Undetermined > 0 {
			fmt.Fprintf(c.out, "no re-evaluated decision would flip, but %d the candidate could change are not re-evaluable\n", r.Undetermined)
			return exitUndetermined
		}
		fmt.Fprintln(c.out, "no decision would flip")
		return exitOK
	}
	if r.Undetermined > 0 {
		fmt.Fprintf(c.out, "  not re-evaluable in all: %d\n", r.Undetermined)
	}
	for k, n := range r.Changes {
		fmt.Fprintf(c.out, "  would flip: %-12s %d\n", k, n)
	}
	t := newTable(c.out, false, column{"SEQ", 0}, column{"TENANT", 0}, column{"AGENT", 0}, column{"TARGET", 0}, column{"FROM", 0}, column{"TO", 0}, column{"POLICY", 0})
	for _, f := range r.Flips {
		t.row(fmt.Sprint(f.IngressSeq), f.Tenant, short(f.Agent), f.Target, f.From, f.To, strings.Join(f.PolicyIDs, ","))
	}
	t.flush()
	return exitRejected
}

func jsonExitFlips(c *cmd, r whatif.Report) int {
	if err := newJSONLines(c.out).write(r); err != nil {
		return c.fail(err, "")
	}
	switch {
	case len(r.Flips) > 0:
		return exitRejected
	case r.Undetermined > 0:
		return exitUndetermined
	}
	return exitOK
}
