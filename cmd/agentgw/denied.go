package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

func deniedCmd(args []string) int {
	return group("denied", "Denied messages and their decision records (stream "+gateway.StreamDenied+").", []subcommand{
		{"ls", "list denied messages, filtered by tenant, reason, agent and age", deniedList},
		{"show", "show one denied message's decision record (secrets redacted)", deniedShow},
		{"replay", "re-evaluate (--dry-run) or re-submit a denied message through every gate", deniedReplay},
		{"export", "turn denied messages into evaluation cases that expect the same denial", deniedExport},
	}, args)
}

// deniedRow is one denied message as listed: decision headers only.
type deniedRow struct {
	Seq       uint64    `json:"seq"`
	Time      time.Time `json:"time"`
	Tenant    string    `json:"tenant"`
	Reason    string    `json:"reason"`
	Stage     string    `json:"stage,omitempty"`
	Agent     string    `json:"agent,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	TraceID   string    `json:"trace_id,omitempty"`
	Target    string    `json:"target,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

func deniedList(args []string) int {
	c := newCmd("denied ls", "[--tenant T] [--reason R] [--agent KEY] [--since 1h] [--json]", `
List denied messages, oldest first: stream sequence, time, tenant, reason,
agent, message id and the operator-facing detail. Only headers are shown,
never bodies. Use the sequence with 'agentgw denied show SEQ'.

Tenant "`+subjects.UnroutableTenant+`" holds messages whose tenant could not be trusted.`)
	var cf connFlags
	cf.register(c.fs)
	cf.operatorSide = true
	tenant := c.fs.String("tenant", "", "only this tenant (default: all)")
	why := c.fs.String("reason", "", "only this reason `code`, e.g. bad_signature (default: all)")
	agent := c.fs.String("agent", "", "only this agent public `key` (U…)")
	age := c.fs.Duration("since", 0, "only messages stored in the last `duration`, e.g. 1h (default: all retained)")
	asJSON := c.fs.Bool("json", false, "print one JSON object per message")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	tok, rtok := "*", "*"
	if *tenant != "" {
		if !subjects.ValidToken(*tenant) {
			return c.usageErr("--tenant %q is not [a-z0-9_-]{1,64}", *tenant)
		}
		tok = *tenant
	}
	if *why != "" {
		if !reason.Known(reason.Code(*why)) {
			return c.usageErr("--reason %q is not a reason code (e.g. %s, %s)", *why, reason.BadSignature, reason.ReplayDetected)
		}
		rtok = *why
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
		t = newTable(c.out, false, column{name: "SEQ"}, column{name: "TIME"}, column{name: "TENANT"}, column{name: "REASON"},
			column{name: "AGENT"}, column{name: "MESSAGE ID"}, column{name: "DETAIL"})
	}
	err := scan(ctx, js, gateway.StreamDenied, subjects.Root+".denied."+tok+"."+rtok, *age, false, func(m *jetstream.RawStreamMsg) error {
		h := m.Header
		if *agent != "" && h.Get(header.Agent) != *agent {
			return nil
		}
		r := deniedRow{
			Seq: m.Sequence, Time: m.Time.UTC(),
			Reason: h.Get(header.Reason), Stage: h.Get(header.Stage), Agent: h.Get(header.Agent),
			MessageID: h.Get(header.MessageID), TraceID: h.Get(header.TraceID), Target: h.Get(header.Target), Detail: h.Get(header.Detail),
		}
		if st, code, err := subjects.ParseDenied(m.Subject); err == nil {
			r.Tenant, r.Reason = st, string(code)
		}
		if *asJSON {
			return jl.write(r)
		}
		t.row(strconv.FormatUint(r.Seq, 10), stamp(r.Time), clean(r.Tenant), clean(r.Reason), short(r.Agent), clean(r.MessageID), clean(r.Detail))
		return nil
	})
	if t != nil {
		t.flush()
	}
	if err != nil {
		return c.fail(err, streamHint(gateway.StreamDenied, err))
	}
	return exitOK
}

// redactedHeaders hold secrets, payloads or what only the gateway opens:
// their values are never shown, whatever the case of the name.
var redactedHeaders = map[string]string{
	header.Credential: "[redacted]", header.Signature: "[redacted]", header.Decision: "[redacted]", header.Sealed: "[redacted]",
	header.CredentialSealed: "[sealed]",
}

// redacted returns what to show instead of header k's value, if k is
// one of redactedHeaders in any case.
func redacted(k string) (string, bool) {
	for name, shown := range redactedHeaders {
		if strings.EqualFold(name, k) {
			return shown, true
		}
	}
	return "", false
}

func deniedShow(args []string) int {
	c := newCmd("denied show", "SEQ [--json]", `
Show the denied message at stream sequence SEQ: its subject, time, every
header (the signature as "[redacted]"; the agent's credential, which the
record holds only sealed to the gateway's curve key for a replay, as
"[sealed]") and the SHA-256 digest of the body, not the body itself. The
digest is the audit event's body_digest. A record of a body denied
oversized does not hold the body: its digest and size are those the
record names (Agentgw-Body-Digest, Agentgw-Body-Bytes), and it cannot be
replayed.`)
	var cf connFlags
	cf.register(c.fs)
	cf.operatorSide = true
	asJSON := c.fs.Bool("json", false, "print the record as JSON")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if len(c.args) != 1 {
		return c.usageErr("want exactly one SEQ (from 'agentgw denied ls')")
	}
	seq, err := strconv.ParseUint(c.args[0], 10, 64)
	if err != nil || seq == 0 {
		return c.usageErr("SEQ %q is not a stream sequence number", c.args[0])
	}
	nc, js, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, gateway.StreamDenied)
	if err != nil {
		return c.fail(err, streamHint(gateway.StreamDenied, err))
	}
	raw, err := st.GetMsg(ctx, seq)
	if err != nil {
		hint := ""
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			hint = "No message at that sequence (deleted, aged out, or never there): list them with 'agentgw denied ls'."
		}
		return c.fail(fmt.Errorf("seq %d: %w", seq, err), hint)
	}
	sum := sha256.Sum256(raw.Data)
	digest, size, kept := "sha256:"+hex.EncodeToString(sum[:]), len(raw.Data), true
	if d := raw.Header.Get(header.BodyDigest); d != "" {
		// A record that names its body instead of holding it (oversized).
		n, _ := strconv.Atoi(raw.Header.Get(header.BodyBytes))
		digest, size, kept = clean(d), n, false
	}
	headers := map[string][]string{}
	for k, vs := range raw.Header {
		if shown, ok := redacted(k); ok {
			headers[k] = []string{shown}
			continue
		}
		for _, v := range vs {
			headers[k] = append(headers[k], clean(v))
		}
	}
	if *asJSON {
		_ = newJSONLines(c.out).write(map[string]any{
			"seq": raw.Sequence, "subject": raw.Subject, "time": raw.Time.UTC(),
			"body_digest": digest, "body_bytes": size, "body_kept": kept, "headers": headers,
		})
		return exitOK
	}
	t := newTable(c.out, false, column{name: "FIELD"}, column{name: "VALUE"})
	t.row("seq", strconv.FormatUint(raw.Sequence, 10))
	t.row("subject", clean(raw.Subject))
	t.row("time", stamp(raw.Time))
	if kept {
		t.row("body", fmt.Sprintf("%s (%d bytes)", digest, size))
	} else {
		t.row("body", fmt.Sprintf("%s (%d bytes, not kept)", digest, size))
	}
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		t.row(clean(k), strings.Join(headers[k], ", "))
	}
	t.flush()
	return exitOK
}
