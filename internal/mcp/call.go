package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/notice"
)

// callTool turns one tools/call into a signed envelope whose arguments
// are sealed to the gateway, sent as the principal's agent with the
// credential of the call's bearer token, and waits for the verified
// reply. The gateway's verified decision notice of a denial ends the
// wait at once with a CodeDenied error; one of a hold for approval
// extends it to approval_wait.
func (e *Endpoint) callTool(ctx context.Context, t *Tool, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
	s, err := sessionOf(req)
	if err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: err.Error()}
	}
	if err := e.takeCall(s.p); err != nil {
		refusedUnsent(req.GetExtra().TokenInfo)
		return nil, err
	}
	defer e.endCall(s.p)
	return e.invoke(ctx, s, t, req.Params.Arguments, callHooks{})
}

// takeCall counts one more call of p in flight, synchronous or as a
// task, or refuses it (CodeBusy) when p already has as many as the
// endpoint allows, or the endpoint as many as max_calls_in_flight. The
// calls of one session share its agent's subscription to p's reply
// subject, so the endpoint holds at most one subscription per call in
// flight, and max_calls_in_flight keeps them under the account's limit.
// The caller ends the call with endCall.
func (e *Endpoint) takeCall(p *principal) *jsonrpc.Error {
	busy := func(msg string) *jsonrpc.Error {
		data, _ := json.Marshal(DeniedData{Reason: "too_many_calls"})
		return &jsonrpc.Error{Code: CodeBusy, Message: msg, Data: data}
	}
	if n := e.inflight.Add(1); n > int64(e.ep.MaxCallsInFlight) {
		e.inflight.Add(-1)
		return busy(fmt.Sprintf("too many calls in flight at this endpoint (at most %d, tasks included): try again shortly", e.ep.MaxCallsInFlight))
	}
	if n := p.calls.Add(1); n > int64(e.bounds.calls) {
		p.calls.Add(-1)
		e.inflight.Add(-1)
		return busy(fmt.Sprintf("too many calls in flight for this principal (at most %d, tasks included): wait for one to end", e.bounds.calls))
	}
	return nil
}

// endCall ends a call takeCall counted.
func (e *Endpoint) endCall(p *principal) {
	p.calls.Add(-1)
	e.inflight.Add(-1)
}

// callHooks let a task follow its call. sending, when set, is called
// once before anything is published; if it returns false the call is
// not sent (the task was cancelled first). held, when set, is called
// once if the call is held for approval.
type callHooks struct {
	sending func() bool
	held    func()
}

// invoke sends one call with s's credential and waits for its outcome,
// telling hooks when it is about to be sent and when it is held.
// Denials and holds are read from the gateway's decision notices on the
// agent's reply subject, verified as replies are (a trusted gateway's
// token addressed to the agent, bound to the notice): nothing else can
// end or extend a call. With notify_senders off at the gateway there are
// none, and a denied or held call ends at call_timeout with no_reply.
//
// Once sent, a call is the gateway's: it may be delivered (at once, or
// when an approver grants it) whatever happens here. A call that ends
// with no_reply (call_timeout, or approval_wait once held) may still be
// decided and the tool run later; the agent cannot withdraw it.
func (e *Endpoint) invoke(ctx context.Context, s *session, t *Tool, args json.RawMessage, hooks callHooks) (*sdk.CallToolResult, error) {
	if len(args) == 0 || string(args) == "null" {
		args = []byte("{}")
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(args, &obj) != nil || obj == nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "arguments must be a JSON object"}
	}
	ag, _, _ := s.credential()
	if hooks.sending != nil && !hooks.sending() {
		return nil, context.Canceled
	}
	held := hooks.held

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		reply *client.Reply
		err   error
	}
	done := make(chan result, 1)
	holds := make(chan struct{}, 1)
	// The first refusal of the call only: whoever may publish on the
	// reply subject could otherwise make any number.
	var onReject func(error)
	if e.onReject != nil {
		var once sync.Once
		onReject = func(err error) { once.Do(func() { e.onReject(t.Name, err) }) }
	}
	go func() {
		_, reply, err := ag.SendAndWait(wctx, client.Request{
			Capability: t.Capability, Target: t.Target, Sealed: args,
		}, client.WaitOptions{TrustedGateways: e.ep.TrustedGateways, OnReject: onReject, OnDecision: func(d *client.Decision) {
			if d.Route == notice.RouteApproval {
				select {
				case holds <- struct{}{}:
				default:
				}
			}
		}})
		done <- result{reply, err}
	}()
	timer := time.NewTimer(e.ep.CallTimeout)
	defer timer.Stop()
	for {
		select {
		case r := <-done:
			if denied, ok := errors.AsType[*client.DeniedError](r.err); ok {
				data, _ := json.Marshal(DeniedData{Reason: string(denied.Reason)})
				return nil, &jsonrpc.Error{Code: CodeDenied, Message: "denied: " + string(denied.Reason), Data: data}
			}
			if r.err != nil {
				if notSent(r.err) {
					return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "call not sent to the gateway"}
				}
				return nil, noReply()
			}
			return toolResult(r.reply.Payload), nil
		case <-holds:
			if held != nil {
				held()
				held = nil
			}
			timer.Reset(e.ep.ApprovalWait)
		case <-timer.C:
			cancel()
			<-done
			return nil, noReply()
		}
	}
}

// notSent reports whether err, from SendAndWait, says the envelope was
// never stored: a request or configuration the SDK refused before
// publishing, or every message id it tried already taken. Anything else
// (an attempt whose acknowledgement never came, a context ended during
// the send, a refusal after such an attempt, no reply) may have been
// stored and will then be decided, the tool perhaps run: such a call is
// reported as having no reply (CodeNoReply), never as not sent, so that
// a client does not send it again as a new call.
func notSent(err error) bool {
	return errors.Is(err, client.ErrRequest) || errors.Is(err, client.ErrConfig) || errors.Is(err, client.ErrCollision)
}

func noReply() error {
	data, _ := json.Marshal(DeniedData{Reason: "no_reply"})
	return &jsonrpc.Error{Code: CodeNoReply, Message: "no verified reply in time (the request stays at the gateway: it may still be decided and the tool run later)", Data: data}
}

// toolResult is the MCP result of a reply: the bridge's
// {"content": [...], "isError": b} as it was, any other object as
// structured content with its JSON as text.
func toolResult(payload []byte) *sdk.CallToolResult {
	var shape map[string]json.RawMessage
	_ = json.Unmarshal(payload, &shape)
	if c, ok := shape["content"]; ok && len(shape) <= 2 {
		var res sdk.CallToolResult
		if _, extra := shape["isError"]; extra || len(shape) == 1 {
			if err := json.Unmarshal(payload, &res); err == nil && c[0] == '[' {
				return &res
			}
		}
	}
	return &sdk.CallToolResult{
		Content:           []sdk.Content{&sdk.TextContent{Text: string(payload)}},
		StructuredContent: json.RawMessage(payload),
	}
}
