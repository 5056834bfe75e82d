package client_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/identity"
)

// startNATS runs an embedded nats-server with JetStream in a temporary
// directory, connects to it, and returns a function that tears both down.
func startNATS() (*nats.Conn, jetstream.JetStream, func()) {
	dir, err := os.MkdirTemp("", "agentgw-example-")
	check(err)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	check(err)
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	check(err)
	js, err := jetstream.New(nc)
	check(err)
	return nc, js, func() {
		nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
		os.RemoveAll(dir)
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func key(f func() (nkeys.KeyPair, error)) (nkeys.KeyPair, string) {
	kp, err := f()
	check(err)
	pub, err := kp.PublicKey()
	check(err)
	return kp, pub
}

// stream creates a stream the gateway would create (a minimal stand-in).
func stream(js jetstream.JetStream, name, subject string) {
	_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: name, Subjects: []string{subject}, Duplicates: 5 * time.Minute,
	})
	check(err)
}

// credential issues an agent credential, as `agentgw creds` would.
func credential(issuer nkeys.KeyPair, agent, xkey string, scopes ...string) identity.Token {
	tok, err := identity.Issue(issuer, identity.IssueRequest{
		Subject: agent, Audience: "billing-gateway", Tenant: "tenant_a", Scopes: scopes, XKey: xkey, TTL: time.Hour,
	}, time.Now())
	check(err)
	return tok
}

func ExampleAgent_Send() {
	nc, js, stop := startNATS()
	defer stop()
	stream(js, "AGENTGW_IN", "agentgw.in.*.*")

	issuer, _ := key(identity.NewIssuer)
	_, gatewayX := key(identity.NewCurve)
	agentKey, agentPub := key(identity.NewAgent)
	agentCurve, agentX := key(identity.NewCurve)

	agent, err := client.NewAgent(nc, client.AgentConfig{
		Credential:  credential(issuer, agentPub, agentX, "refund:draft"),
		Key:         agentKey,
		Curve:       agentCurve,
		GatewayXKey: gatewayX,
	})
	check(err)
	rcpt, err := agent.Send(context.Background(), client.Request{
		Capability:     envelope.ToolCall,
		Target:         "refunds.draft_refund",
		Sealed:         []byte(`{"order":"A-1","amount_cents":2500}`),
		IdempotencyKey: "refund-A-1",
	})
	check(err)
	fmt.Println(rcpt.Stream, rcpt.Seq, rcpt.Attempts, len(rcpt.MessageID))
	// Output: AGENTGW_IN 1 1 32
}

func ExampleConsumer_Consume() {
	_, js, stop := startNATS()
	defer stop()
	stream(js, "AGENTGW_CAP", "agentgw.cap.>")

	gwSigning, _ := key(identity.NewGatewayKey)
	gwKey, err := identity.NewSigner(gwSigning)
	check(err)
	gwCurveKP, _ := key(identity.NewCurve)
	gwCurve, err := identity.NewBox(gwCurveKP)
	check(err)
	consumerCurve, consumerX := key(identity.NewCurve)
	agentKey, agentPub := key(identity.NewAgent)
	agentSigner, err := identity.NewSigner(agentKey)
	check(err)

	// The agent's envelope, as the gateway received it.
	body, err := envelope.Builder{
		Tenant: "tenant_a", Audience: "billing-gateway", Capability: envelope.ToolCall,
		Target: "refunds.draft_refund", Payload: envelope.Payload{Plain: json.RawMessage(`{"order":"A-1","amount_cents":2500}`)},
	}.Build(time.Now())
	check(err)
	sig := base64.RawURLEncoding.EncodeToString(agentSigner.Sign(envelope.SigningInput(body)))

	// A forgery first: the same bytes published to the capability subject
	// by someone other than the gateway, so without a decision token.
	forged := nats.NewMsg("agentgw.cap.tenant_a.refunds.draft_refund")
	forged.Data = body
	_, err = js.PublishMsg(context.Background(), forged)
	check(err)

	// Then what the gateway publishes after allowing it, a delivery: the
	// original bytes, the payload re-sealed to the consumer, a token
	// binding both.
	resealed, err := gwCurve.Seal([]byte(`{"order":"A-1","amount_cents":2500}`), consumerX)
	check(err)
	env, err := envelope.Parse(body, envelope.Limits{})
	check(err)
	now := time.Now()
	tok, err := decision.Sign(gwKey, decision.Claims{
		Subject: agentPub, Audience: "refunds.draft_refund", IssuedAt: now, Expires: now.Add(time.Minute),
		Tenant: "tenant_a", Scope: "refund:draft", TraceID: env.TraceID, MessageID: env.MessageID,
		BodyDigest: decision.Digest(body), PayloadDigest: decision.Digest(resealed), Route: decision.RouteAllow,
	})
	check(err)
	genuine := nats.NewMsg("agentgw.cap.tenant_a.refunds.draft_refund")
	genuine.Data, err = delivery.Doc{Decision: tok.Reveal(), Signature: sig, Envelope: body,
		Sealed: base64.RawURLEncoding.EncodeToString(resealed), SealedFrom: gwCurve.PublicKey()}.Append(nil)
	check(err)
	_, err = js.PublishMsg(context.Background(), genuine)
	check(err)

	// The consumer side.
	cfg := client.DefaultConsumerConfig()
	cfg.Tenant = "tenant_a"
	cfg.Targets = []string{"refunds.draft_refund"}
	cfg.Curve = consumerCurve
	cfg.TrustedGateways = []string{gwKey.PublicKey()}
	cfg.VerifyAgentSignature = true
	cfg.OnReject = func(subject string, err error) { fmt.Println("rejected:", subject, err) }
	consumer, err := client.NewConsumer(js, cfg)
	check(err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = consumer.Consume(ctx, func(ctx context.Context, d *client.Delivery) error {
		fmt.Printf("%s %s: %s\n", d.Envelope.Capability, d.Target, d.Payload)
		cancel() // one is enough for this example
		return nil
	})
	check(err)
	// Output:
	// rejected: agentgw.cap.tenant_a.refunds.draft_refund decision_token_missing: no decision token: delivery: body is not a delivery document
	// tool_call refunds.draft_refund: {"order":"A-1","amount_cents":2500}
}

func ExampleApprover_Grant() {
	nc, js, stop := startNATS()
	defer stop()
	stream(js, "AGENTGW_IN", "agentgw.in.*.*")
	stream(js, "AGENTGW_APPROVAL", "agentgw.approval.>")

	issuer, _ := key(identity.NewIssuer)
	_, gatewayX := key(identity.NewCurve)
	gwSigning, gatewayKey := key(identity.NewGatewayKey)
	gwKey, err := identity.NewSigner(gwSigning)
	check(err)
	_, requester := key(identity.NewAgent)
	approverKey, approverPub := key(identity.NewAgent)
	approverCurve, approverX := key(identity.NewCurve)

	// The gateway held a request and published it for approvers, with a
	// token binding its bytes: an approver shows no other.
	held := approval.Request{
		HeldMessageID: "4c1f9a7e2b6d40d8a3e1f0c2b9d87a65",
		TraceID:       "0af7651916cd43dd8448eb211c80319c",
		Tenant:        "tenant_a",
		Agent:         requester,
		Capability:    "tool_call",
		Target:        "refunds.draft_refund",
		Risk:          "high",
		PolicyVersion: "pv-2f1c",
		BodyDigest:    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Fields:        map[string]any{"amount_cents": 250000},
		RequestedAt:   time.Now(),
		Deadline:      time.Now().Add(10 * time.Minute),
	}
	published := nats.NewMsg("agentgw.approval.tenant_a.refunds.draft_refund")
	published.Data, err = json.Marshal(held)
	check(err)
	tok, err := decision.Sign(gwKey, decision.Claims{
		Subject: requester, Audience: held.Target, IssuedAt: held.RequestedAt, Expires: held.Deadline,
		Tenant: held.Tenant, Scope: "refund:draft", TraceID: held.TraceID, MessageID: held.HeldMessageID,
		BodyDigest: strings.TrimPrefix(held.BodyDigest, "sha256:"), PayloadDigest: decision.Digest(published.Data),
		PolicyVersion: held.PolicyVersion, Route: decision.RouteApproval,
	})
	check(err)
	published.Header.Set(decision.Header, tok.Reveal())
	_, err = js.PublishMsg(context.Background(), published)
	check(err)

	approver, err := client.NewApprover(nc, js, client.ApproverConfig{AgentConfig: client.AgentConfig{
		Credential:  credential(issuer, approverPub, approverX, "approve:refunds.*"),
		Key:         approverKey,
		Curve:       approverCurve,
		GatewayXKey: gatewayX,
	}, TrustedGateways: []string{gatewayKey}})
	check(err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = approver.Watch(ctx, func(ctx context.Context, req approval.Request) error {
		fmt.Printf("held %s for %s (risk %s, amount %v)\n", req.HeldMessageID, req.Target, req.Risk, req.Fields["amount_cents"])
		_, err := approver.Grant(ctx, req, "customer verified")
		cancel()
		return err
	})
	check(err)

	// What reached the gateway's ingress: an approve envelope bound to the
	// request's body digest and policy version.
	s, err := js.Stream(context.Background(), "AGENTGW_IN")
	check(err)
	m, err := s.GetMsg(context.Background(), 1)
	check(err)
	env, err := envelope.Parse(m.Data, envelope.Limits{})
	check(err)
	fmt.Println(env.Capability, env.Target)
	fmt.Println(string(env.Payload.Plain))
	// Output:
	// held 4c1f9a7e2b6d40d8a3e1f0c2b9d87a65 for refunds.draft_refund (risk high, amount 250000)
	// approve 4c1f9a7e2b6d40d8a3e1f0c2b9d87a65
	// {"decision":"grant","reason":"customer verified","body_digest":"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","policy_version":"pv-2f1c"}
}
