package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentgw/agentgw/client"
)

func deniedReplay(args []string) int {
	c := newCmd("denied replay", "--creds OPERATOR.creds --tenant T [--dry-run] SEQ", `
Ask the gateway about the denied message at sequence SEQ of the denied
stream (see 'agentgw denied ls'). With --dry-run it is re-evaluated
against the current credentials, revocations, catalog and policy, and
nothing changes. Without it the original message is re-submitted through
every gate; it can succeed at most once per message, and a message that
has expired since stays denied. The record keeps the agent's credential
sealed to the gateway's curve key; only the gateway opens it, so a record
sealed to a curve key the gateway no longer holds cannot be replayed.
Either way the request is signed with the operator's key and audited. The operator credential needs scope
operator:replay in the message's tenant. Connects to NATS as the
operator's key (the nkey user of --creds: account OPS on the 'agentgw
run' server) unless --nats-nkey or --nats-creds name another user.`)
	var cf connFlags
	cf.register(c.fs)
	creds := c.fs.String("creds", "", "operator .creds `file` (agentgw credential with scope operator:replay)")
	tenant := c.fs.String("tenant", "", "tenant of the denied message")
	dry := c.fs.Bool("dry-run", false, "re-evaluate only; change nothing")
	timeout := c.fs.Duration("timeout", 10*time.Second, "how long to wait for the gateway")
	asJSON := c.fs.Bool("json", false, "print the result as JSON")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.require("creds", "tenant"); !ok {
		return code
	}
	if len(c.args) != 1 {
		return c.usageErr("give exactly one denied-stream sequence")
	}
	seq, err := strconv.ParseUint(c.args[0], 10, 64)
	if err != nil || seq == 0 {
		return c.usageErr("sequence %q is not a positive integer", c.args[0])
	}
	cf.identity = *creds
	nc, _, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	op, err := client.NewOperator(nc, *creds, *tenant)
	if err != nil {
		return c.fail(err, "check --creds: an agentgw operator credential (.creds)")
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
	if *asJSON {
		return jsonExit(c, res)
	}
	if res.DryRun {
		fmt.Fprintf(c.out, "dry run of denied #%d: would be %s", seq, res.Route)
		if res.Reason != "" {
			fmt.Fprintf(c.out, " (%s: %s)", res.Reason, res.Detail)
		}
		if len(res.PolicyIDs) > 0 {
			fmt.Fprintf(c.out, " by %s", strings.Join(res.PolicyIDs, ","))
		}
		fmt.Fprintln(c.out)
		if res.Route == "deny" {
			return exitRejected
		}
		return exitOK
	}
	fmt.Fprintf(c.out, "denied #%d re-submitted as ingress #%d; follow it with 'agentgw audit tail --tenant %s'\n", seq, res.IngressSeq, *tenant)
	return exitOK
}

func jsonExit(c *cmd, v any) int {
	if err := newJSONLines(c.out).write(v); err != nil {
		return c.fail(err, "")
	}
	return exitOK
}
