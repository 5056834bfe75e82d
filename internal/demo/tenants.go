package demo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/devenv"
	"github.com/agentgw/agentgw/subjects"
)

// refusedReason is the reason shown for what the NATS server refused:
// its own words, not a gateway reason code (the gateway never saw it).
const refusedReason = "permission violation"

// tenantB plays tenant_b's agent and tool: its own traffic, then every
// way it has of reaching tenant_a, as real as this system allows. The
// gateway's answers are typed denials read from the audit stream; what
// never reaches the gateway is refused by the NATS server, because
// tenant_b's account imports nothing of tenant_a's.
func (s *scene) tenantB(ctx context.Context, url string, opts []nats.Option, record func(who, what string, seq uint64) error, emit func(Row), step *int) error {
	b, ok := s.m.Tenant(devenv.TenantB)
	if !ok {
		return fmt.Errorf("demo: the dev material in %s has no %s (it predates the second tenant): remove it to have it written afresh", s.m.Dir, devenv.TenantB)
	}
	nc, err := devenv.Connect(url, b.Agent.Creds, "demo-agent-b", opts...)
	if err != nil {
		return err
	}
	s.conns = append(s.conns, nc)
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cfg := client.DefaultAgentConfig()
	cfg.GatewayXKey = s.m.GatewayXKey
	agent, err := client.AgentFromCreds(nc, b.Agent.Creds, b.Agent.Curve, cfg)
	if err != nil {
		return err
	}
	tok, kp, err := identity.ReadCreds(b.Agent.Creds)
	if err != nil {
		return err
	}
	signer, err := identity.NewSigner(kp)
	if err != nil {
		return err
	}
	pub := signer.PublicKey()
	ck, err := readSeed(b.Agent.Curve)
	if err != nil {
		return err
	}
	box, err := identity.NewBox(ck)
	if err != nil {
		return err
	}
	xkey, _ := ck.PublicKey()
	issuer, err := readSeed(b.Issuer)
	if err != nil {
		return err
	}
	// What tenant_b's issuer can mint for its own agent: any scope, any
	// tenant claim. The gateway trusts it for tenant_b only.
	mint := func(tenant string, scopes ...string) (identity.Token, error) {
		return identity.Issue(issuer, identity.IssueRequest{Subject: pub, Audience: devenv.Audience, Tenant: tenant,
			Service: devenv.Service("agent"), Scopes: scopes, XKey: xkey, TTL: time.Hour}, time.Now())
	}
	// sign builds an envelope and signs it with signer and tok.
	sign := func(sign *identity.Signer, tok identity.Token, b envelope.Builder) ([]byte, nats.Header, error) {
		body, err := b.Build(time.Now())
		if err != nil {
			return nil, nil, err
		}
		hdr := nats.Header{}
		hdr.Set(header.Credential, tok.Reveal())
		hdr.Set(header.Signature, base64.RawURLEncoding.EncodeToString(sign.Sign(envelope.SigningInput(body))))
		return body, hdr, nil
	}
	// publish sends on tenant_b's agent's own ingress subject, the only
	// one its account has.
	publish := func(body []byte, hdr nats.Header, err error) (uint64, error) {
		if err != nil {
			return 0, err
		}
		subj, err := subjects.Ingress(devenv.TenantB, pub)
		if err != nil {
			return 0, err
		}
		m := nats.NewMsg(subj)
		m.Data, m.Header = body, hdr
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ack, err := js.PublishMsg(pctx, m)
		if err != nil {
			return 0, err
		}
		return ack.Sequence, nil
	}
	sealedRefund := func(b *envelope.Builder) error {
		sealed, err := box.Seal([]byte(`{"order_id":"ord_b1","amount_cents":900}`), s.m.GatewayXKey)
		if err != nil {
			return err
		}
		b.Capability, b.Target = envelope.ToolCall, "refunds.draft_refund"
		b.Payload = envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(sealed), From: xkey, To: s.m.GatewayXKey}
		return nil
	}
	lookup := func(region string) (uint64, error) {
		r, err := agent.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "orders.lookup",
			Sealed: fmt.Appendf(nil, `{"order_id":"ord_b7","region":%q}`, region)})
		if err != nil {
			return 0, err
		}
		return r.Seq, nil
	}

	steps := []struct {
		who, what string
		send      func() (uint64, error)
	}{
		{"agent_b", "tenant_b: look up an EU order (its own tool)", func() (uint64, error) { return lookup("eu") }},
		{"agent_b", "tenant_b: look up a US order (its own policy)", func() (uint64, error) { return lookup("us") }},
		{"agent_b", "tenant_a's refund tool (scope its issuer gave)", func() (uint64, error) {
			tok, err := mint(devenv.TenantB, "refund:draft")
			if err != nil {
				return 0, err
			}
			bld := envelope.Builder{Tenant: devenv.TenantB, Audience: devenv.Audience}
			if err := sealedRefund(&bld); err != nil {
				return 0, err
			}
			return publish(sign(signer, tok, bld))
		}},
		{"agent_b", "tenant_a credential from tenant_b's issuer", func() (uint64, error) {
			tok, err := mint(devenv.Tenant, "refund:draft")
			if err != nil {
				return 0, err
			}
			bld := envelope.Builder{Tenant: devenv.Tenant, Audience: devenv.Audience}
			if err := sealedRefund(&bld); err != nil {
				return 0, err
			}
			return publish(sign(signer, tok, bld))
		}},
		{"agent_b", "forwards tenant_a's signed message as its own", func() (uint64, error) {
			// tenant_a's agent's own envelope, credential and signature,
			// as a leak would hand them to tenant_b.
			body, hdr, err := s.signed(s.plainSearch)
			return publish(body, hdr, err)
		}},
	}
	for _, sc := range steps {
		seq, err := sc.send()
		if err != nil {
			return fmt.Errorf("demo: %s: %w", sc.what, err)
		}
		if err := record(sc.who, sc.what, seq); err != nil {
			return err
		}
	}

	// What never reaches the gateway: the NATS server refuses it.
	refusals := []struct {
		who, what, creds, where string
		try                     func(nc *nats.Conn) error
	}{
		{"agent_b", "publishes on tenant_a's ingress subject", b.Agent.Creds,
			"nowhere: TENANT_B imports no tenant_a ingress subject",
			func(nc *nats.Conn) error {
				body, hdr, err := sign(signer, tok, envelope.Builder{Tenant: devenv.Tenant, Audience: devenv.Audience,
					Capability: envelope.Read, Target: "kb.search", Payload: envelope.Payload{Plain: json.RawMessage(`{"query":"tenant_a's orders"}`)}})
				if err != nil {
					return err
				}
				subj, err := subjects.Ingress(devenv.Tenant, pub)
				if err != nil {
					return err
				}
				m := nats.NewMsg(subj)
				m.Data, m.Header = body, hdr
				return nc.PublishMsg(m)
			}},
		{"tool_b", "binds tenant_a's refunds consumer", b.Consumer.Creds,
			"nowhere: TENANT_B imports no tenant_a consumer",
			func(nc *nats.Conn) error {
				tjs, err := client.TenantJetStream(nc)
				if err != nil {
					return err
				}
				bctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				if _, err := tjs.Consumer(bctx, client.StreamCapability, client.CapabilityConsumerName(devenv.Tenant, "refunds.draft_refund")); err == nil {
					return errors.New("bound")
				}
				return nil
			}},
	}
	for _, r := range refusals {
		if err := refused(ctx, url, r.creds, r.who, opts, r.try); err != nil {
			return fmt.Errorf("demo: %s: %w", r.what, err)
		}
		*step++
		emit(Row{Step: *step, Who: r.who, What: r.what, Decision: "refused", Reason: refusedReason, Where: r.where})
	}
	return nil
}

// refused connects as the user of creds, runs try, and returns nil once
// the server reports a permissions violation for it. An attempt the
// server lets through is an error: the demo shows refusals only.
func refused(ctx context.Context, url, creds, who string, opts []nats.Option, try func(*nats.Conn) error) error {
	errc := make(chan error, 16)
	handler := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case errc <- err:
		default:
		}
	})
	nc, err := devenv.Connect(url, creds, "demo-"+who, append(append([]nats.Option(nil), opts...), handler)...)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := try(nc); err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	wait := time.NewTimer(5 * time.Second)
	defer wait.Stop()
	for {
		select {
		case err := <-errc:
			if errors.Is(err, nats.ErrPermissionViolation) {
				return nil
			}
		case <-wait.C:
			return errors.New("the NATS server did not refuse it")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
