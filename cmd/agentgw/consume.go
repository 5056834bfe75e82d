package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

func consumeCmd(args []string) int {
	c := newCmd("consume", "--tenant T --target T... --gateway-key N... [--curve-seed FILE] [--count N] [--durable NAME] [--json]", `
Read agentgw.cap.<tenant>.<target> with client.Consumer, as a capability
consumer would, and print each delivery whose gateway decision token
verifies (trusted --gateway-key, audience = target, unexpired, bound to
the exact body and payload): its message id, agent, target and payload
as JSON. Re-sealed payloads are opened with --curve-seed (the catalog's
consumer_xkey for the target). A message that fails verification is
printed as "rejected" with its reason code and terminated, except what
a reader with another clock or other keys may verify: one whose token
is issued up to 5 minutes ahead of this clock is handed back, and so,
on a durable, is one this run lacks a key for (printed
unknown_key=true; below).

Payloads are printed on stdout because that is what this command is for;
nothing else agentgw prints contains one. Says on stderr which consumer
it waits on, then runs until --count messages (verified or rejected),
--timeout or an interrupt; --timeout with fewer than --count messages
exits 1. Verified messages fetched beyond
--count are handed back for redelivery; a prefetched one that fails
verification is settled as above (terminated, or handed back), and
reported. A message handed back comes again about a second later and
is printed and counted again each time. Exits 3 if any message was
rejected.

Connected as an nkey user (--creds: the consumer's seed or .creds) of
a server that requires authentication, as on the 'agentgw run' server and
in deploy/, it binds the pre-created consumer <tenant>~<target> (every dot
of the target as ~; --durable overrides) through the API prefix `+client.TenantAPIPrefix+`:
one --target, and what it acknowledges is consumed. Otherwise it creates
its own consumer (ephemeral unless --durable); --bind forces binding.

A durable consumer (--durable, --bind, or bound as a tenant nkey user)
is shared by every process that reads it, a tool in service included:
what this command acknowledges there is consumed, and what fails
verification is terminated there (forged or altered, expired, a copy of
a delivery already handed over...), never to be redelivered to anyone. So a durable is read only with --settle-durable;
without it consume refuses and reads nothing. What fails there for want
of a key of this run's (a token from a gateway key not among
--gateway-key, a re-sealed payload from a key not among --gateway-xkey,
no --curve-seed or another one) is handed back, printed "rejected ...
unknown_key=true", for the readers that have the keys. An ephemeral
consumer is this run's alone, and terminates it.`)
	var cf connFlags
	cf.register(c.fs)
	cf.tenantSide = true
	bind := c.fs.Bool("bind", false, "bind the existing durable (--durable, default <tenant>~<target>) instead of creating a consumer; automatic as a tenant nkey user")
	tenant := c.fs.String("tenant", "", "tenant whose capability subjects to read")
	var targets, gwKeys, gwXKeys listFlag
	c.fs.Var(&targets, "target", "catalog `target` served (repeatable, or comma separated)")
	c.fs.Var(&gwKeys, "gateway-key", "trusted gateway public `key` (N…), repeatable")
	c.fs.Var(&gwXKeys, "gateway-xkey", "accept re-sealed payloads only from this gateway curve `key` (X…), repeatable")
	curve := c.fs.String("curve-seed", "", "the consumer's curve seed `file` (SX…); without it only plain deliveries verify")
	count := c.fs.Int("count", 0, "stop after this many messages (0: until interrupted)")
	timeout := c.fs.Duration("timeout", 0, "give up after this long; fewer than --count messages by then exits 1 (0: wait until --count or an interrupt)")
	durable := c.fs.String("durable", "", "durable consumer `name` (resume where it stopped; default: ephemeral, from the oldest message)")
	agentSig := c.fs.Bool("verify-agent-signature", false, "also verify the agent's own signature over the body")
	asJSON := c.fs.Bool("json", false, "print one JSON object per message")
	settle := c.fs.Bool("settle-durable", false, "read a durable consumer, settling its deliveries for every reader of it: acknowledge verified ones, hand back ones this run lacks a key for, terminate the other refusals (required with a durable)")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	if *count < 0 {
		return c.usageErr("--count must not be negative")
	}
	if *timeout < 0 {
		return c.usageErr("--timeout must not be negative")
	}
	cfg := client.DefaultConsumerConfig()
	cfg.Tenant, cfg.Targets, cfg.TrustedGateways, cfg.GatewayXKeys = *tenant, targets, gwKeys, gwXKeys
	cfg.Durable, cfg.VerifyAgentSignature, cfg.Stream = *durable, *agentSig, gateway.StreamCap
	if *curve != "" {
		kp, err := c.seedFile(*curve, "SX")
		if err != nil {
			return c.fail(err, "--curve-seed must be the consumer's curve seed file (from 'agentgw keys new --type curve').")
		}
		defer kp.Wipe()
		cfg.Curve = kp
	}
	if err := cfg.Validate(); err != nil {
		return c.usageErr("%v", err)
	}
	nc, js, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	if cf.bound || *bind {
		if len(targets) != 1 {
			return c.usageErr("a bound consumer reads one --target: run one consume per target")
		}
		cfg.Bind = true
		if cfg.Durable == "" {
			cfg.Durable = client.CapabilityConsumerName(*tenant, targets[0])
		}
	}
	if cfg.Durable != "" && !*settle {
		// What this run acknowledges and terminates there is gone for
		// every reader.
		alone := ", or drop --durable and --bind to read through an ephemeral consumer of this run's own"
		if cf.bound {
			alone = " (a tenant nkey user reads only its pre-created durable)"
		}
		return c.usageErr("consumer %s is durable, shared with every process that reads it: this run would consume there, for every reader, what verifies, and terminate there what fails verification other than for want of its keys. Give --settle-durable to read it so%s", cfg.Durable, alone)
	}

	ctx, cancel := interruptible()
	defer cancel()
	// The printer's stop (--count reached) cancels the parent: only the
	// timer ends tctx with DeadlineExceeded.
	tctx := ctx
	if *timeout > 0 {
		var stopTimer context.CancelFunc
		tctx, stopTimer = context.WithTimeout(ctx, *timeout)
		defer stopTimer()
	}
	// On a durable, what fails for want of this run's keys goes back to
	// the readers that have them.
	cfg.HandBackUnknownKeys = cfg.Durable != ""
	p := &consumePrinter{out: newJSONLines(c.out), text: !*asJSON, c: c, limit: *count, stop: cancel}
	cfg.OnReject = p.rejected
	cons, err := client.NewConsumer(js, cfg)
	if err != nil {
		return c.usageErr("%v", err)
	}
	where := "an ephemeral consumer"
	if cfg.Durable != "" {
		where = "consumer " + cfg.Durable
	}
	where = fmt.Sprintf("%s of stream %s (subjects %s)", where, cfg.Stream, strings.Join(capSubjects(*tenant, targets), ", "))
	until := "Ctrl-C to stop"
	if *count > 0 {
		until = fmt.Sprintf("until %d, or Ctrl-C", *count)
	}
	if *timeout > 0 {
		until += fmt.Sprintf("; giving up after %s", *timeout)
	}
	fmt.Fprintf(c.err, "agentgw consume: waiting for deliveries on %s (%s)\n", where, until)
	if err := cons.Consume(tctx, p.delivered); err != nil {
		hint := streamHint(gateway.StreamCap, err)
		if cfg.Bind {
			hint = "Binding " + cfg.Durable + " failed: the consumer must exist ('agentgw run' creates one per catalog target) and --creds must be a NATS user allowed to read it."
		}
		return c.fail(err, hint)
	}
	if n := p.taken(); errors.Is(tctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil && *count > 0 && n < *count {
		fmt.Fprintf(c.err, "agentgw consume: --timeout %s elapsed with %d of %d messages on %s\n", *timeout, n, *count, where)
		fmt.Fprintf(c.err, "  Nothing more was delivered: has the gateway allowed anything for this tenant and target? 'agentgw audit tail' shows its decisions.\n")
		return exitError
	}
	if p.nRejected > 0 {
		return exitRejected
	}
	return exitOK
}

// capSubjects returns the capability subjects of tenant's targets, as
// far as they are valid (client.Consumer reports the invalid ones).
func capSubjects(tenant string, targets []string) []string {
	var out []string
	for _, t := range targets {
		if s, err := subjects.Capability(tenant, t); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// errCountReached hands a message back (nak) once --count is reached.
var errCountReached = errors.New("count reached")

// consumePrinter prints deliveries and rejections and counts them.
type consumePrinter struct {
	c         *cmd
	out       *jsonLines
	text      bool
	limit     int
	stop      context.CancelFunc
	mu        sync.Mutex
	n         int
	nRejected int
}

// taken returns how many messages were counted.
func (p *consumePrinter) taken() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// take counts one message; ok is false once the limit was reached.
func (p *consumePrinter) take() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.limit > 0 && p.n >= p.limit {
		return false
	}
	p.n++
	if p.limit > 0 && p.n >= p.limit {
		p.stop()
	}
	return true
}

func (p *consumePrinter) delivered(_ context.Context, d *client.Delivery) error {
	if !p.take() {
		return errCountReached
	}
	env := d.Envelope
	payload := json.RawMessage(d.Payload)
	var buf bytes.Buffer
	if json.Compact(&buf, d.Payload) == nil {
		payload = buf.Bytes()
	} else {
		// Not JSON (a sealed payload may be any bytes): print it as a
		// JSON string instead of raw bytes on a terminal.
		payload, _ = json.Marshal(string(d.Payload))
	}
	if !p.text {
		_ = p.out.write(map[string]any{
			"status": "verified", "message_id": env.MessageID, "trace_id": env.TraceID,
			"agent": d.Agent, "tenant": env.Tenant, "target": d.Target, "capability": env.Capability,
			"sealed": d.Sealed, "policy_ids": d.Claims.PolicyIDs, "payload": payload,
		})
		return nil
	}
	fmt.Fprintf(p.c.out, "verified  message_id=%s agent=%s target=%s trace_id=%s payload=%s\n",
		clean(env.MessageID), d.Agent, clean(d.Target), env.TraceID, clean(string(payload)))
	return nil
}

func (p *consumePrinter) rejected(subject string, err error) {
	p.mu.Lock()
	p.nRejected++
	p.mu.Unlock()
	p.take()
	code, detail := reason.Of(err), ""
	var dn *reason.Denial
	if errors.As(err, &dn) {
		detail = dn.Detail
	}
	// For want of a key of this run's: handed back on a durable.
	unknownKey := errors.Is(err, client.ErrUnknownKey)
	if !p.text {
		_ = p.out.write(map[string]any{"status": "rejected", "subject": subject, "reason": code, "detail": detail, "unknown_key": unknownKey})
		return
	}
	fmt.Fprintf(p.c.out, "rejected  subject=%s reason=%s detail=%s unknown_key=%t\n", clean(subject), code, clean(detail), unknownKey)
}
