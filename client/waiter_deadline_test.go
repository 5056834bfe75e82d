package client

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/subjects"
)

// TestSendAndWaitTakesNoReplyAfterItsDeadline: SendAndWait waits until
// its context is done. A reply that comes once it is, while the
// application's OnDecision still runs, is not taken: the wait ends with
// ErrNoReply.
func TestSendAndWaitTakesNoReplyAfterItsDeadline(t *testing.T) {
	w := newWorld(t)
	w.ingressStream()
	a := w.newActor(testTenant, "refund:draft")
	ag := w.agent(a)
	replySubj, _ := subjects.Reply(testTenant, a.pub)
	replyAfter := make(chan string, 1)
	sub, err := w.nc.Subscribe(ag.Subject(), func(in *nats.Msg) {
		body, err := envelope.Parse(in.Data, envelope.Limits{})
		if err != nil {
			t.Error(err)
			return
		}
		// notice: delivered
		nd := []byte(`{"message_id":"` + body.MessageID + `","route":"allow","target":"` + testTarget + `"}`)
		tok, err := decision.Sign(w.gwSign, decision.Claims{
			Subject: a.pub, Audience: a.pub, IssuedAt: testClock, Expires: testClock.Add(time.Minute),
			Tenant: testTenant, Scope: notice.Scope, TraceID: body.TraceID, MessageID: body.MessageID,
			BodyDigest: decision.Digest(in.Data), PayloadDigest: decision.Digest(nd), Route: decision.RouteNotice,
		})
		if err != nil {
			t.Error(err)
			return
		}
		n := nats.NewMsg(replySubj)
		n.Header.Set(notice.Header, notice.Kind)
		n.Header.Set(header.MessageID, body.MessageID)
		n.Data, _ = notice.AppendDoc(nil, tok.Reveal(), nd)
		_ = w.nc.PublishMsg(n)
		replyAfter <- body.MessageID
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	opt := WaitOptions{TrustedGateways: []string{w.gwSign.PublicKey()}, OnDecision: func(*Decision) {
		// The application's callback runs past the deadline; the reply
		// is published only once the deadline has passed.
		<-ctx.Done()
		id := <-replyAfter
		m := signedReply(t, w, a, w.gwCurve, w.gwCurve.PublicKey())
		m.Header.Set(headerRequestID, id)
		_ = w.nc.PublishMsg(m)
		_ = w.nc.Flush()
		time.Sleep(200 * time.Millisecond) // the reply is queued for the waiter
	}}
	_, r, err := ag.SendAndWait(ctx, Request{Capability: envelope.ToolCall, Target: testTarget, Plain: json.RawMessage(`{}`)}, opt)
	if ctx.Err() == nil {
		t.Fatal("context not done")
	}
	if !errors.Is(err, ErrNoReply) {
		t.Errorf("SendAndWait after its context ended = reply %v, err %v; want ErrNoReply (the reply came after the deadline)", r, err)
	}
}
