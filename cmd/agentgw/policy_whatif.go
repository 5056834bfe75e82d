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
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/gateway/whatif"
	"github.com/agentgw/agentgw/subjects"
)

func policyTest(args []string) int {
	c := newCmd("policy test", "--catalog FILE [--since 24h] [--tenant T] [--json] CANDIDATE_POLICY_FILE...", `
What-if: read the recorded decisions of the audit stream and evaluate
the candidate Cedar policies against each, as the gateway's authorize
stage would (principal, action and target from the record; kind and risk
from --catalog). Print every decision that would flip and the counts.
Decisions made by a built-in gate before policy cannot flip and are
counted apart; content-stage decisions need the payload, which audit
never holds, and are counted as not re-evaluable. Exit 3 if anything
would flip, 0 if nothing would.`)
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
		return c.fail(err, "check --catalog")
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
		fmt.Fprintf(c.out, "  not re-evaluated: %-30s %d\n", k, r.Skipped[k])
	}
	if len(r.Flips) == 0 {
		fmt.Fprintln(c.out, "no decision would flip")
		return exitOK
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
	if len(r.Flips) > 0 {
		return exitRejected
	}
	return exitOK
}
