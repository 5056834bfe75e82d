package faults

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/internal/devenv"
	"github.com/agentgw/agentgw/internal/invariant"
)

// TestClockSkew runs the real gateway while the agent's clock is off by
// less, then more, than limits.skew (30 s): envelopes and credentials
// issued ahead of the gateway's clock, or expired by it. The gateway uses
// the real clock, so the agent side is shifted instead; the difference
// is what the gates see. Within the skew everything is accepted; beyond
// it the gate that owns the time field denies with its reason.
func TestClockSkew(t *testing.T) {
	t.Parallel()
	start := time.Now()
	e := newEnv(t, envOptions{skew: 30 * time.Second})
	e.startGateway()
	l := newLoad(t, e, 1)
	issuer, err := identity.ReadSeedFile(e.mat.Issuer)
	must(t, err)
	tok, kp, err := identity.ReadCreds(e.mat.Agent.Creds)
	must(t, err)
	agentPub, _ := kp.PublicKey()
	// credentialAt issues the agent a credential as of a shifted clock.
	credentialAt := func(now time.Time, ttl time.Duration) identity.Token {
		c, err := identity.Issue(issuer, identity.IssueRequest{
			Subject: agentPub, Audience: devenv.Audience, Tenant: devenv.Tenant, Service: devenv.Service("agent"),
			Scopes: []string{"kb:read", "refund:draft"}, XKey: l.agent.xkey, TTL: ttl,
		}, now)
		must(t, err)
		return c
	}
	// Margins of 10 s or more either side of the 30 s skew, so a slow
	// decision cannot move a case across the line.
	cases := []struct {
		name      string
		issued    time.Duration // envelope issued_at relative to now
		ttl       time.Duration
		cred      func(now time.Time) identity.Token
		wantRoute string
		wantWhy   string
	}{
		{name: "allow/on_time", ttl: time.Minute, wantRoute: "allow"},
		{name: "allow/issued_ahead_within_skew", issued: 20 * time.Second, ttl: time.Minute, wantRoute: "allow"},
		{name: "deny/issued_ahead_beyond_skew", issued: 45 * time.Second, ttl: time.Minute, wantRoute: "deny", wantWhy: "issued_in_future"},
		{name: "allow/expired_within_skew", issued: -80 * time.Second, ttl: time.Minute, wantRoute: "allow"},
		{name: "deny/expired_beyond_skew", issued: -105 * time.Second, ttl: time.Minute, wantRoute: "deny", wantWhy: "message_expired"},
		{name: "allow/credential_issued_ahead_within_skew", ttl: time.Minute, wantRoute: "allow",
			cred: func(now time.Time) identity.Token { return credentialAt(now.Add(20*time.Second), time.Hour) }},
		{name: "deny/credential_issued_ahead_beyond_skew", ttl: time.Minute, wantRoute: "deny", wantWhy: "credential_not_yet_valid",
			cred: func(now time.Time) identity.Token { return credentialAt(now.Add(50*time.Second), time.Hour) }},
		{name: "allow/credential_expired_within_skew", ttl: time.Minute, wantRoute: "allow",
			cred: func(now time.Time) identity.Token { return credentialAt(now.Add(-80*time.Second), time.Minute) }},
		{name: "deny/credential_expired_beyond_skew", ttl: time.Minute, wantRoute: "deny", wantWhy: "credential_expired",
			cred: func(now time.Time) identity.Token { return credentialAt(now.Add(-105*time.Second), time.Minute) }},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seqs := make([]uint64, len(cases))
	for i, c := range cases {
		now := time.Now()
		cred := tok
		if c.cred != nil {
			cred = c.cred(now)
		}
		b := envelope.Builder{Tenant: devenv.Tenant, Audience: devenv.Audience, TTL: c.ttl,
			Capability: envelope.Read, Target: "kb.search", Payload: envelope.Payload{Plain: json.RawMessage(`{"query":"skew"}`)}}
		b.MessageID = envelope.NewMessageID()
		body, err := b.Build(now.Add(c.issued))
		must(t, err)
		m := nats.NewMsg(l.agent.subject)
		m.Data = body
		m.Header.Set(header.Credential, cred.Reveal())
		m.Header.Set(header.Signature, base64.RawURLEncoding.EncodeToString(l.agent.signer.Sign(envelope.SigningInput(body))))
		m.Header.Set(header.MsgID, b.MessageID)
		seq, ok := l.publish(ctx, m, true)
		if !ok {
			t.Fatalf("%s: publish failed", c.name)
		}
		seqs[i] = seq
	}
	outs := waitOutputs(t, e, seqs, 30*time.Second)
	for i, c := range cases {
		o := outs[seqs[i]]
		if got, why := o.hdr.Get(header.Route), o.hdr.Get(header.Reason); got != c.wantRoute || why != c.wantWhy {
			t.Errorf("%s: decision = %s %q (%s); want %s %q", c.name, got, why, o.hdr.Get(header.Detail), c.wantRoute, c.wantWhy)
		}
	}
	rep, err := invariant.Wait(ctx, e.js, 10*time.Second)
	must(t, err)
	if err := rep.Err(); err != nil {
		t.Error(err)
	}
	t.Logf("%s: %s, %d skew cases, %s", t.Name(), time.Since(start).Round(time.Second), len(cases), rep)
}

// waitOutputs waits for the terminal output of each ingress sequence.
func waitOutputs(t testing.TB, e *env, seqs []uint64, timeout time.Duration) map[uint64]smsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		got := map[uint64]smsg{}
		for _, name := range invariant.Terminal {
			msgs, err := readStream(ctx, e.js, name)
			if err != nil {
				break
			}
			for _, m := range msgs {
				if m.hdr.Get(notice.Header) != "" {
					continue // a decision notice, not the terminal output
				}
				if s, err := strconv.ParseUint(m.hdr.Get(header.IngressSeq), 10, 64); err == nil {
					got[s] = m
				}
			}
		}
		missing := 0
		for _, s := range seqs {
			if _, ok := got[s]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d ingress messages have no output after %s", missing, len(seqs), timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
