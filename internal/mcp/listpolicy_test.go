package mcp

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// supportNoKB forbids kb.search to a principal without refund:draft:
// bob's credential holds kb:read (the catalog's scope for kb.search) and
// not refund:draft, so his scopes allow the tool and policy forbids it.
const supportNoKB = testPolicy + `
@id("kb-billing-only")
forbid (principal, action == Action::"read", resource == Target::"kb.search")
when { !principal.scopes.contains("refund:draft") };
`

// TestEndpointListAsksPolicy: with the gateway's catalog and policies
// configured, tools/list hides a tool that Cedar forbids the principal
// although its scopes allow it, while another principal still sees it;
// calling the hidden tool still reaches the gateway, which denies it
// (policy_denied), so the listing is a hint and not the gate.
func TestEndpointListAsksPolicy(t *testing.T) {
	h := newEndpointHarnessWith(t, endpointOptions{policy: supportNoKB, gate: true})
	alice := h.connect(h.token("alice-ide", "s3cret-alice"))
	bob := h.connect(h.token("bob-ide", "s3cret-bob"))
	ctx, cancel := context.WithTimeout(h.ctx, 60*time.Second)
	defer cancel()

	if got, want := toolNames(t, bob), []string{}; !slices.Equal(got, want) {
		t.Errorf("bob's tools = %v; want %v (kb-billing-only forbids him search)", got, want)
	}
	if got, want := toolNames(t, alice), []string{"draft_refund", "search", "send_payment"}; !slices.Equal(got, want) {
		t.Errorf("alice's tools = %v; want %v", got, want)
	}

	_, err := bob.CallTool(ctx, &sdk.CallToolParams{Name: "search", Arguments: map[string]any{"query": "refunds"}})
	if d := denied(t, err); d.Reason != "policy_denied" {
		t.Errorf("bob's call to the hidden search denied with %+v; want policy_denied by kb-billing-only", d)
	}
	res, err := alice.CallTool(ctx, &sdk.CallToolParams{Name: "search", Arguments: map[string]any{"query": "refunds"}})
	must(t, err)
	if res.IsError || len(res.Content) != 1 {
		t.Errorf("alice's search = %+v; want the tool's result", res)
	}

	// Lifting the forbid in the files the gateway and the endpoint read
	// lists search to bob again once the endpoint has reloaded them.
	tmp := filepath.Join(h.dir, "policy.cedar.new")
	must(t, os.WriteFile(tmp, []byte(testPolicy), 0o600))
	must(t, os.Rename(tmp, h.policies[0]))
	for deadline := time.Now().Add(30 * time.Second); !slices.Contains(toolNames(t, bob), "search"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("bob's tools = %v after the forbid was lifted; want search listed after a reload", toolNames(t, bob))
		}
	}
	h.scanSecrets()
}
