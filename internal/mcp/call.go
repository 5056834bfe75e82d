package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects"
)

// outcome is what the gateway did with a call before any reply: denied
// (a denied-stream record) or held (an approval request).
type outcome struct {
	denied *DeniedData
	held   bool
}

// callTool turns one tools/call into a signed envelope whose arguments
// are sealed to the gateway, sent as the principal's agent, and waits
// for the verified reply. A denial of the call (a record on the denied
// stream with this call's trace id and agent) ends the wait at once
// with a CodeDenied error; a hold for approval extends it to
// approval_wait.
func (e *Endpoint) callTool(ctx context.Context, t *Tool, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
	s, err := sessionOf(req)
	if err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: err.Error()}
	}
	return e.invoke(ctx, s, t, req.Params.Arguments, nil)
}

// invoke sends one call with s's credential and waits for its outcome; held, when set,
// is called once if the call is held for approval.
func (e *Endpoint) invoke(ctx context.Context, s *session, t *Tool, args json.RawMessage, held func()) (*sdk.CallToolResult, error) {
	if len(args) == 0 || string(args) == "null" {
		args = []byte("{}")
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(args, &obj) != nil || obj == nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "arguments must be a JSON object"}
	}
	ag, _, _ := s.credential()

	traceID := envelope.NewTraceID()
	outcomes := make(chan outcome, 4)
	watch := func(m *nats.Msg) {
		if m.Header.Get(header.TraceID) != traceID || m.Header.Get(header.Agent) != ag.PublicKey() {
			return
		}
		o := outcome{held: true}
		if _, code, err := subjects.ParseDenied(m.Subject); err == nil {
			o = outcome{denied: &DeniedData{Reason: string(code), Stage: m.Header.Get(header.Stage), Policy: m.Header.Get(header.Policy)}}
		}
		select {
		case outcomes <- o:
		default:
		}
	}
	var subs []*nats.Subscription
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	approvalSubj, err := subjects.Approval(e.cfg.Tenant, t.Target)
	if err != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "tool target is not a valid subject token"}
	}
	for _, subj := range []string{subjects.Root + ".denied." + e.cfg.Tenant + ".>", approvalSubj} {
		s, err := e.nc.Subscribe(subj, watch)
		if err != nil {
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "gateway unavailable"}
		}
		subs = append(subs, s)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		reply *client.Reply
		err   error
	}
	done := make(chan result, 1)
	go func() {
		_, reply, err := ag.SendAndWait(wctx, client.Request{
			Capability: t.Capability, Target: t.Target, Sealed: args, TraceID: traceID,
		}, client.WaitOptions{TrustedGateways: e.ep.TrustedGateways})
		done <- result{reply, err}
	}()
	timer := time.NewTimer(e.ep.CallTimeout)
	defer timer.Stop()
	for {
		select {
		case r := <-done:
			if r.err != nil {
				if errors.Is(r.err, client.ErrNoReply) {
					return nil, noReply()
				}
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "call not sent to the gateway"}
			}
			return toolResult(r.reply.Payload), nil
		case o := <-outcomes:
			if o.denied != nil {
				cancel()
				<-done
				data, _ := json.Marshal(o.denied)
				return nil, &jsonrpc.Error{Code: CodeDenied, Message: "denied: " + o.denied.Reason, Data: data}
			}
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

func noReply() error {
	data, _ := json.Marshal(DeniedData{Reason: "no_reply"})
	return &jsonrpc.Error{Code: CodeNoReply, Message: "no verified reply in time", Data: data}
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
