package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/subjects"
)

func deniedReplay(args []string) int {
	c := newCmd("denied replay", "--credential OPERATOR.creds --tenant T [--dry-run] SEQ", `
Ask the gateway about the denied message at sequence SEQ of the denied
stream (see 'agentgw denied ls'). Without --dry-run the original message
is re-submitted through every gate; it can succeed at most once per
message, and a message that has expired since stays denied. The
re-submission is used up even when it is denied again (an agent still
revoked, say). Without --no-wait it then waits (up to --timeout) for the
gateway's decision on the re-submitted message, read from the audit
stream, and prints it: allowed, held, or denied again with the reason
code (exit 3). The record keeps the agent's credential sealed to the
gateway's curve key; only the gateway opens it, so a record sealed to a
curve key the gateway no longer holds cannot be replayed.

--dry-run changes nothing. It says replay_refused when the record was
already re-submitted, or when the message's ledger entry is not a
denial or its one replay is used up. Otherwise it re-runs, as of now,
the stateless gates (credential, revocations, issuer trust, signature,
subject, audience, freshness), the idempotency key's ledger entry
(duplicate_request, idempotency_conflict), the catalog and the policy
at stage authorize, and prints the route they give. It does not run:
budgets, content policy (the payload is not opened), or, for an
approver's answer (approve) or a consumer's response (respond), the
approval or response gate, which decides on the request answered as it
stands at the real replay: such a record that passes the gates before
it is "not predicted". So is one the gates let through that a policy
takes in at stage content or by the budget, or whose record was denied
by the budget or on its opened payload. Scaled out, it reads only the
ledgers of the partitions this gateway holds.

Either way the request is signed with the operator's key and audited.
The operator credential needs scope operator:replay in the message's
tenant. Connects to NATS as the operator's key (the nkey user of
--credential: account OPS on the 'agentgw run' server) unless --creds,
$NATS_CREDS, $NATS_NKEY or a NATS context name another user.

Exit codes, text and --json alike: 0 allowed or held (a dry run: would
be; --no-wait: re-submitted); 3 denied again (a dry run: would be
denied), the request refused, or a re-submission whose decision was not
read in time; 4 a dry run that does not predict the decision; 1 a
runtime error.`)
	var cf connFlags
	cf.register(c.fs)
	cf.operatorSide = true // reads the audit stream for the outcome
	creds := c.credentialFlag("the operator's (scope operator:replay)")
	tenant := c.fs.String("tenant", "", "tenant of the denied message")
	dry := c.fs.Bool("dry-run", false, "re-evaluate only; change nothing")
	timeout := c.fs.Duration("timeout", 30*time.Second, "how long to wait for the gateway and the decision")
	asJSON := c.fs.Bool("json", false, "print the result as JSON")
	noWait := c.fs.Bool("no-wait", false, "print the new ingress sequence and return; do not wait for the decision")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.require("tenant"); !ok {
		return code
	}
	if len(c.args) != 1 {
		return c.usageErr("give exactly one denied-stream sequence")
	}
	seq, err := strconv.ParseUint(c.args[0], 10, 64)
	if err != nil || seq == 0 {
		return c.usageErr("sequence %q is not a positive integer", c.args[0])
	}
	if code, ok := c.needCredential(*creds, &cf); !ok {
		return code
	}
	nc, js, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	op, err := client.NewOperator(nc, *creds, *tenant)
	if err != nil {
		return c.fail(err, "check --credential: an agentgw operator credential (.creds)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	res, err := op.Replay(ctx, seq, *dry)
	if err != nil {
		if res != nil && res.Code != "" {
			fmt.Fprintf(c.err, "agentgw denied replay: refused: %s\n  %s\n", res.Code, res.Error)
			return exitRejected
		}
		return c.fail(err, "is the gateway running ('agentgw run' or 'agentgw serve')?")
	}
	var outcome *audit.Event
	if !res.DryRun && !*noWait {
		outcome, err = replayOutcome(ctx, js, *tenant, res.IngressSeq)
		if err != nil {
			fmt.Fprintf(c.err, "agentgw denied replay: denied #%d re-submitted as ingress #%d, but its decision is not known: %v\n  Follow it with 'agentgw audit tail --tenant %s'.\n", seq, res.IngressSeq, err, *tenant)
			return exitRejected
		}
	}
	if *asJSON {
		if outcome == nil {
			if code := jsonExit(c, res); code != exitOK || !res.DryRun {
				return code
			}
			return dryRunExit(res)
		}
		out := map[string]any{"route": res.Route, "ingress_seq": res.IngressSeq,
			"outcome": map[string]any{"route": outcome.Route, "reason": outcome.Reason, "target": outcome.Target}}
		if code := jsonExit(c, out); code != exitOK {
			return code
		}
		return outcomeExit(outcome)
	}
	if res.DryRun {
		if res.Route == gateway.DryRunNotPredicted {
			fmt.Fprintf(c.out, "dry run of denied #%d: not predicted: %s\n", seq, clean(res.Detail))
			return dryRunExit(res)
		}
		fmt.Fprintf(c.out, "dry run of denied #%d: would be %s", seq, clean(res.Route))
		if res.Reason != "" {
			fmt.Fprintf(c.out, " (%s: %s)", clean(res.Reason), clean(res.Detail))
		}
		if len(res.PolicyIDs) > 0 {
			fmt.Fprintf(c.out, " by %s", clean(strings.Join(res.PolicyIDs, ",")))
		}
		fmt.Fprintln(c.out)
		return dryRunExit(res)
	}
	if outcome == nil {
		fmt.Fprintf(c.out, "denied #%d re-submitted as ingress #%d; follow it with 'agentgw audit tail --tenant %s'\n", seq, res.IngressSeq, *tenant)
		return exitOK
	}
	switch outcome.Route {
	case "allow":
		fmt.Fprintf(c.out, "denied #%d re-submitted as ingress #%d: allowed, delivered to %s\n", seq, res.IngressSeq, clean(outcome.Target))
	case "approval":
		fmt.Fprintf(c.out, "denied #%d re-submitted as ingress #%d: held for approval (target %s)\n", seq, res.IngressSeq, clean(outcome.Target))
	default:
		fmt.Fprintf(c.out, "denied #%d re-submitted as ingress #%d: denied again: %s\n  The re-submission is used up; 'agentgw denied ls --tenant %s --reason %s' shows the new record.\n",
			seq, res.IngressSeq, clean(outcome.Reason), *tenant, clean(outcome.Reason))
	}
	return outcomeExit(outcome)
}

// dryRunExit is the exit code of dry run res, the same for text and
// JSON output: 3 for a predicted denial, exitUndetermined when the
// decision is not predicted, else 0.
func dryRunExit(res *operator.Result) int {
	switch res.Route {
	case "deny":
		return exitRejected
	case gateway.DryRunNotPredicted:
		return exitUndetermined
	}
	return exitOK
}

// outcomeExit is 3 when the re-submitted message was denied again.
func outcomeExit(ev *audit.Event) int {
	if ev.Route == "deny" {
		return exitRejected
	}
	return exitOK
}

// decides reports whether an audit event of kind is the one a message's
// decision writes: a decision, a request held for approval, or an
// approver's answer taken.
func decides(kind string) bool {
	switch kind {
	case audit.KindDecision, audit.KindApprovalRequest, audit.KindApprovalGranted, audit.KindApprovalDenied:
		return true
	}
	return false
}

// errFound ends an audit scan once the event sought is read.
var errFound = errors.New("found")

// replayOutcome waits on the tenant's audit stream for the decision on
// ingress sequence seq.
func replayOutcome(ctx context.Context, js jetstream.JetStream, tenant string, seq uint64) (*audit.Event, error) {
	var found *audit.Event
	err := scan(ctx, js, gateway.StreamAudit, subjects.Root+".audit."+tenant, 10*time.Minute, true, func(m *jetstream.RawStreamMsg) error {
		evs, _ := audit.Decode(m.Data)
		for i := range evs {
			if evs[i].IngressSeq == seq && decides(evs[i].Kind) {
				found = &evs[i]
				return errFound
			}
		}
		return nil
	})
	switch {
	case found != nil:
		return found, nil
	case err != nil && !errors.Is(err, errFound):
		return nil, err
	default:
		return nil, fmt.Errorf("no decision within the timeout")
	}
}

func jsonExit(c *cmd, v any) int {
	if err := newJSONLines(c.out).write(v); err != nil {
		return c.fail(err, "")
	}
	return exitOK
}
