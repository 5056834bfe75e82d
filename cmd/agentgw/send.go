package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/subjects"
)

func sendCmd(args []string) int {
	c := newCmd("send", "--credential FILE [--curve-seed FILE --gateway-xkey X…] --capability C --target T (--plain JSON | --sealed JSON | --sealed-file F) [--wait --gateway-key N…] [flags]", `
Build, sign and publish one envelope as the agent of --credential (an
agentgw .creds file), with client.Agent.Send. A sealed payload is sealed
to the gateway's curve key --gateway-xkey from the agent's curve key
--curve-seed (the credential's xkey). Prints the message id, the trace id and the
ingress stream sequence once JetStream has stored the message, then
waits (up to --timeout) for the gateway's decision notice on the agent's
reply subject and prints it: delivered (to which target), held (the
approval id and deadline) or denied (the reason code; exit 3). The notice
must carry a decision token of a gateway key given with --gateway-key.
--no-wait-decision prints the receipt only; follow the outcome with
'agentgw audit tail --trace <trace id>'. With --wait, for a target that
takes responses, it waits for the reply and prints it: the gateway seals
every reply to the agent's curve key, so --wait needs --curve-seed and
--gateway-xkey (the reply's sealer) and --gateway-key (its signer) for
plain requests as for sealed ones; a denial told by the decision notice
ends that wait (printed, exit 3). A wait that ends with no notice or
no reply exits 4 (not determined: the request may have been delivered),
or 3 when one came and did not verify. While the gateway's curve key is being
rotated, --reply-xkey names the other gateway curve key a reply may be
sealed from (the gateway seals a reply to a plain request from its
current key, and one to a sealed request from the key it was sealed to).

Connects to NATS as the agent's key (the nkey user of --credential, inbox
_INBOX.<key>), as tenant accounts require, unless --creds, $NATS_CREDS,
$NATS_NKEY or a NATS context name another user.`)
	var cf connFlags
	cf.register(c.fs)
	creds := c.credentialFlag("the agent's")
	curve := c.fs.String("curve-seed", "", "the agent's curve seed `file` (SX…); needed for sealed payloads")
	gwX := c.fs.String("gateway-xkey", "", "the gateway's public curve `key` (X…); needed for sealed payloads")
	tenant := c.fs.String("tenant", "", "tenant (default: the credential's)")
	audience := c.fs.String("audience", "", "gateway audience (default: the credential's)")
	capability := c.fs.String("capability", "", "read, delegate, tool_call, workflow_command, approve or respond")
	target := c.fs.String("target", "", "catalog target; for approve the held message id; for respond <requesting agent key>/<message id>")
	plain := c.fs.String("plain", "", "plain payload: one JSON object (the catalog must allow plain for the target)")
	sealed := c.fs.String("sealed", "", "payload to seal to the gateway: one JSON object (on the command line other local users can read it: prefer --sealed-file)")
	sealedFile := c.fs.String("sealed-file", "", "`file` holding the payload to seal (- for stdin)")
	idem := c.fs.String("idempotency-key", "", "idempotency key (default: the message id)")
	ttl := c.fs.Duration("ttl", envelope.DefaultTTL, "expires_at - issued_at; the gateway refuses more than its limits.max_ttl")
	timeout := c.fs.Duration("timeout", 30*time.Second, "give up after this long without an acknowledgement")
	asJSON := c.fs.Bool("json", false, "print the receipt as JSON")
	wait := c.fs.Bool("wait", false, "wait (up to --timeout) for the reply to this request and print it, plain or sealed; needs --gateway-key, --curve-seed and --gateway-xkey")
	noDecision := c.fs.Bool("no-wait-decision", false, "do not wait for the gateway's decision notice; print the receipt only")
	var gwKeys, replyXKeys listFlag
	c.fs.Var(&gwKeys, "gateway-key", "gateway signing `key` (N…) whose reply and notice tokens to trust; repeatable")
	c.fs.Var(&replyXKeys, "reply-xkey", "with --wait: another gateway curve `key` (X…) a reply may be sealed from, as while the gateway's curve key is rotated; repeatable")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	if code, ok := c.require("capability", "target"); !ok {
		return code
	}
	if *timeout <= 0 {
		return c.usageErr("--timeout must be positive")
	}
	if !envelope.Capability(*capability).Valid() {
		return c.usageErr("--capability %q: want one of read, delegate, tool_call, workflow_command, approve, respond", *capability)
	}
	n := 0
	for _, s := range []string{*plain, *sealed, *sealedFile} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return c.usageErr("give exactly one of --plain, --sealed and --sealed-file")
	}
	req := client.Request{
		Capability:     envelope.Capability(*capability),
		Target:         *target,
		IdempotencyKey: *idem,
		TTL:            *ttl,
	}
	switch {
	case *plain != "":
		if !json.Valid([]byte(*plain)) {
			return c.usageErr("--plain is not valid JSON")
		}
		req.Plain = json.RawMessage(*plain)
	case *sealed != "":
		req.Sealed = []byte(*sealed)
	default:
		data, err := readInput(*sealedFile)
		if err != nil {
			return c.fail(err, "")
		}
		req.Sealed = data
	}
	if req.Sealed != nil {
		defer clear(req.Sealed)
		if !json.Valid(req.Sealed) {
			return c.usageErr("the sealed payload is not valid JSON")
		}
		if *curve == "" || *gwX == "" {
			return c.usageErr("a sealed payload needs --curve-seed (the agent's SX… seed) and --gateway-xkey (the gateway's X… key)")
		}
	}
	if *wait && (len(gwKeys) == 0 || *curve == "" || *gwX == "") {
		// The gateway seals the reply to the agent's curve key from its
		// own: opening it needs both, trusting it the signing key.
		return c.usageErr("--wait needs --gateway-key, --curve-seed and --gateway-xkey (replies are sealed to the agent by the gateway)")
	}
	if len(replyXKeys) > 0 && !*wait {
		return c.usageErr("--reply-xkey names keys a reply may be sealed from: it needs --wait")
	}
	for _, k := range replyXKeys {
		if !subjects.ValidKey(k, 'X') { // the wire's strict form, as the SDK checks it
			return c.usageErr("--reply-xkey %q is not a public curve (X…) key", k)
		}
	}
	if !*wait && !*noDecision && len(gwKeys) == 0 {
		return c.usageErr("waiting for the decision needs --gateway-key (the gateway's N… signing key, which signs the notice); or pass --no-wait-decision")
	}
	if code, ok := c.needCredential(*creds, &cf); !ok {
		return code
	}
	if *curve != "" {
		kp, err := c.seedFile(*curve, "SX")
		if err != nil {
			return c.fail(err, "--curve-seed must be the agent's curve seed file (the credential's xkey).")
		}
		kp.Wipe()
	}
	nc, _, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	cfg := client.DefaultAgentConfig()
	cfg.Tenant, cfg.Audience, cfg.GatewayXKey, cfg.ReplyXKeys = *tenant, *audience, *gwX, replyXKeys
	curvePath := *curve
	if req.Sealed == nil && !*wait {
		curvePath = "" // a plain send that waits for nothing needs no curve key
	}
	agent, err := client.AgentFromCreds(nc, *creds, curvePath, cfg)
	if err != nil {
		return c.fail(err, "Check that --credential is the agent's .creds file, --curve-seed its curve seed (the credential's xkey), and --tenant/--audience match the credential.")
	}
	ctx, cancel := interruptible()
	defer cancel()
	ctx, stop := context.WithTimeout(ctx, *timeout)
	defer stop()
	var rc *client.Receipt
	var reply *client.Reply
	var dec *client.Decision
	var untrusted untrustedKey
	if *wait {
		var last *client.Decision
		var denied *client.DeniedError
		rc, reply, err = agent.SendAndWait(ctx, req, client.WaitOptions{TrustedGateways: gwKeys,
			OnDecision: func(d *client.Decision) { last = d }, OnReject: untrusted.reject})
		switch {
		case errors.Is(err, client.ErrNoReply) && last != nil:
			fmt.Fprintf(c.err, "agentgw send: message %s sent and %s, but no reply within %s.\n", rc.MessageID, decisionText(last), *timeout)
			untrusted.say(c.err)
			return untrusted.emptyWait()
		case errors.Is(err, client.ErrNoReply):
			fmt.Fprintf(c.err, "agentgw send: message %s sent, but no reply within %s.\n  It may have been denied: 'agentgw denied ls' and 'agentgw audit tail' show why.\n", rc.MessageID, *timeout)
			untrusted.say(c.err)
			return untrusted.emptyWait()
		case errors.As(err, &denied):
			dec, err = last, nil
		}
	} else if !*noDecision {
		var denied *client.DeniedError
		rc, dec, err = agent.SendAndDecide(ctx, req, client.WaitOptions{TrustedGateways: gwKeys, OnReject: untrusted.reject})
		switch {
		case errors.Is(err, client.ErrNoDecision):
			fmt.Fprintf(c.err, "agentgw send: message %s sent, but no decision notice within %s.\n  Is the gateway running with notify_senders on, and --gateway-key its signing key? 'agentgw audit tail --trace %s' shows the outcome.\n", rc.MessageID, *timeout, rc.TraceID)
			untrusted.say(c.err)
			return untrusted.emptyWait()
		case errors.As(err, &denied):
			err = nil
		}
	} else {
		rc, err = agent.Send(ctx, req)
	}
	if err != nil {
		hint := ""
		switch {
		case errors.Is(err, client.ErrRequest):
			return c.usageErr("%v", err)
		case errors.Is(err, client.ErrUnavailable):
			hint = "No stream stored the message: is the gateway's ingress stream (AGENTGW_IN) on this server?"
		case errors.Is(err, client.ErrPublish):
			hint = "JetStream refused the message: check the NATS user's publish permissions and the stream limits."
		}
		return c.fail(err, hint)
	}
	if *asJSON {
		out := map[string]any{
			"message_id": rc.MessageID, "trace_id": rc.TraceID, "stream": rc.Stream, "seq": rc.Seq, "attempts": rc.Attempts,
		}
		if reply != nil {
			out["reply"] = map[string]any{"responder": reply.Responder, "message_id": reply.MessageID, "payload": json.RawMessage(reply.Payload)}
		}
		if dec != nil {
			out["decision"] = decisionJSON(dec)
		}
		_ = newJSONLines(c.out).write(out)
		return decisionExit(dec)
	}
	fmt.Fprintf(c.out, "message_id  %s\ntrace_id    %s\nstream_seq  %s %d\n", rc.MessageID, rc.TraceID, rc.Stream, rc.Seq)
	if reply != nil {
		fmt.Fprintf(c.out, "reply       from %s: %s\n", clean(reply.Responder), clean(string(reply.Payload)))
	}
	if dec != nil {
		fmt.Fprintf(c.out, "decision    %s\n", decisionText(dec))
	}
	return decisionExit(dec)
}

// decisionJSON is a decision notice as send --json prints it.
func decisionJSON(d *client.Decision) map[string]any {
	out := map[string]any{"route": d.Route}
	switch d.Route {
	case notice.RouteAllow:
		out["target"] = d.Target
	case notice.RouteApproval:
		out["approval_id"], out["deadline"] = d.ApprovalID, d.Deadline.UTC().Format(time.RFC3339)
	default:
		out["reason"] = string(d.Reason)
	}
	if d.Answers != "" {
		out["answers"], out["answer"] = d.Answers, d.Answer
	}
	return out
}

// decisionText is a decision notice in one line.
func decisionText(d *client.Decision) string {
	var s string
	switch d.Route {
	case notice.RouteAllow:
		s = "delivered to " + d.Target
	case notice.RouteApproval:
		s = fmt.Sprintf("held for approval %s until %s", d.ApprovalID, d.Deadline.UTC().Format(time.RFC3339))
	default:
		s = "denied: " + string(d.Reason)
	}
	if d.Answers != "" {
		s = fmt.Sprintf("answer %s to %s taken; the request was %s", d.Answer, d.Answers, s)
	}
	return s
}

// decisionExit is 3 for a denial of the message itself, else 0.
func decisionExit(d *client.Decision) int {
	if d != nil && d.Route == notice.RouteDeny && d.Answers == "" {
		return exitRejected
	}
	return exitOK
}

// readInput reads path, or stdin for "-".
func readInput(path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(path)
}
