package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/subjects"
)

func auditCmd(args []string) int {
	return group("audit", "The audit trail: one event per decision (stream "+gateway.StreamAudit+").", []subcommand{
		{"tail", "print audit events, optionally of one trace, and follow new ones", auditTail},
	}, args)
}

func auditTail(args []string) int {
	c := newCmd("audit tail", "[--tenant T] [--trace ID] [--since 1h] [--follow] [--json]", `
Print audit events oldest first, one line each: time, event, route,
reason, tenant, agent, target, deciding policy ids and gateway latency.
--trace keeps one trace's events (request, decision, approval, response).
--follow keeps printing new events until interrupted. --json prints each
audit.Event as one JSON object per line.`)
	var cf connFlags
	cf.register(c.fs)
	cf.operatorSide = true
	tenant := c.fs.String("tenant", "", "only this tenant (default: all)")
	trace := c.fs.String("trace", "", "only this trace `id` (32 lowercase hex)")
	age := c.fs.Duration("since", 0, "only events stored in the last `duration`, e.g. 1h (default: all retained)")
	follow := c.fs.Bool("follow", false, "keep printing new events until interrupted")
	asJSON := c.fs.Bool("json", false, "print one JSON object per event")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	tok := "*"
	if *tenant != "" {
		if !subjects.ValidToken(*tenant) {
			return c.usageErr("--tenant %q is not [a-z0-9_-]{1,64}", *tenant)
		}
		tok = *tenant
	}
	if *trace != "" && (len(*trace) != 32 || strings.Trim(*trace, "0123456789abcdef") != "") {
		return c.usageErr("--trace %q is not a trace id (32 lowercase hex)", *trace)
	}
	if *age < 0 {
		return c.usageErr("--since must not be negative")
	}
	nc, js, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	ctx, cancel := interruptible()
	defer cancel()

	jl := newJSONLines(c.out)
	var t *table
	if !*asJSON {
		t = newTable(c.out, *follow, column{"TIME", 20}, column{"EVENT", 18}, column{"ROUTE", 8}, column{"REASON", 22},
			column{"TENANT", 10}, column{"AGENT", 12}, column{"TARGET", 22}, column{"POLICY", 24}, column{"LATENCY", 0})
	}
	show := func(ev audit.Event) error {
		if *trace != "" && ev.TraceID != *trace {
			return nil
		}
		if *asJSON {
			return jl.write(ev)
		}
		latency := "-"
		if ev.LatencyMicros > 0 {
			latency = (time.Duration(ev.LatencyMicros) * time.Microsecond).String()
		}
		policies := "-"
		if len(ev.PolicyIDs) > 0 {
			policies = clean(strings.Join(ev.PolicyIDs, ","))
		}
		t.row(stamp(ev.Time), clean(ev.Kind), clean(ev.Route), clean(ev.Reason), clean(ev.Tenant),
			short(ev.Agent), clean(ev.Target), policies, latency)
		return nil
	}
	err := scan(ctx, js, gateway.StreamAudit, subjects.Root+".audit."+tok, *age, *follow, func(m *jetstream.RawStreamMsg) error {
		// One message holds the events of a batch and tenant, one per line.
		evs, err := audit.Decode(m.Data)
		if err != nil {
			fmt.Fprintf(c.err, "agentgw %s: seq %d: skipped: not an audit event\n", c.name, m.Sequence)
		}
		for _, ev := range evs {
			if err := show(ev); err != nil {
				return err
			}
		}
		return nil
	})
	if t != nil {
		t.flush()
	}
	if err != nil {
		return c.fail(err, streamHint(gateway.StreamAudit, err))
	}
	return exitOK
}
