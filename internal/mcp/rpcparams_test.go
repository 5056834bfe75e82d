package mcp

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// TestReadRPCRefusesParamVariants: a case or Unicode variant of a params
// member the endpoint reads, at the depth it reads it, or any member
// twice, is refused as the top-level ones are, so that the task layer
// and the SDK never read different names, tools or task ids. Other
// members, and any member inside the tool's arguments, are data.
func TestReadRPCRefusesParamVariants(t *testing.T) {
	call := func(params string) []byte {
		return []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":` + params + `}`)
	}
	for _, body := range [][]byte{
		call(`{"name":"search","Name":"draft_refund","arguments":{}}`),
		call(`{"NAME":"draft_refund","arguments":{}}`),
		call(`{"name":"search","Arguments":{"query":"x"}}`),
		call(`{"name":"search","arguments":{},"Task":{"ttl":1}}`),
		call(`{"name":"search","arguments":{},"task":{"ttl":60000,"TTL":1}}`),
		call(`{"name":"search","arguments":{},"_META":{}}`),
		call(`{"name":"search","arguments":{},"_meta":{"io.modelcontextprotocol/clientcapabilities":{}}}`),
		call(`{"name":"search","arguments":{},"_meta":{"io.modelcontextprotocol/clientCapabilities":{"Extensions":{}}}}`),
		call(`{"name":"search","arguments":{},"taſk":{"ttl":1}}`),
		call(`{"name":"search","name":"draft_refund","arguments":{}}`),
		call(`{"name":"search","arguments":{"a":1,"a":2}}`),
		[]byte(`{"jsonrpc":"2.0","id":8,"method":"tasks/result","params":{"taskId":"a","TaskID":"b"}}`),
		[]byte(`{"jsonrpc":"2.0","id":8,"method":"tasks/get","params":{"taskid":"b"}}`),
		[]byte(`{"jsonrpc":"2.0","id":8,"method":"tasks/get","params":{"tas\u212aId":"b"}}`),
	} {
		if _, err := readRPC(body); !errors.Is(err, errNotOneMessage) {
			t.Errorf("readRPC(%s) = %v; want errNotOneMessage", body, err)
		}
	}
	for _, body := range [][]byte{
		call(`{"name":"search","arguments":{"Name":"x","TASK":1,"_Meta":2},"task":{"ttl":60000},"_meta":{"progressToken":1,"io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}}}`),
		call(`null`),
		[]byte(`{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"cursor":"c"}}`),
		[]byte(`{"jsonrpc":"2.0","id":9,"method":"tasks/get","params":{"taskId":"a"}}`),
	} {
		if _, err := readRPC(body); err != nil {
			t.Errorf("readRPC(%s) = %v; want it read", body, err)
		}
	}
}

// TestEndpointRefusesParamVariants: the endpoint answers a tools/call
// whose params name a tool twice, in two spellings, with the parse error
// readRPC's refusals get, and sends nothing to the gateway.
func TestEndpointRefusesParamVariants(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("paula", "billing")
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"search","Name":"draft_refund","arguments":{"order_id":"o-variant","amount_cents":5}}}`,
		`{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"search","Name":"draft_refund","task":{"ttl":60000},"arguments":{"order_id":"o-variant","amount_cents":5}}}`,
		`{"jsonrpc":"2.0","id":9,"method":"tasks/get","params":{"taskId":"a","TaskId":"b"}}`,
	} {
		status, resp := h.postRPC(tok, body)
		var got struct {
			Error *jsonrpc.Error `json:"error"`
		}
		if status != http.StatusBadRequest || json.Unmarshal([]byte(resp), &got) != nil || got.Error == nil || got.Error.Code != jsonrpc.CodeParseError {
			t.Errorf("POST %s = %d %s; want 400 with JSON-RPC error %d", body, status, resp, jsonrpc.CodeParseError)
		}
	}
	for _, c := range h.upstream.calls() {
		if strings.Contains(c, "o-variant") {
			t.Errorf("upstream called: %s", c)
		}
	}
}
