package mcp

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/e2e/oidc/testidp"
	"github.com/agentgw/agentgw/subjects"
)

// signed returns an IdP-signed access token for the endpoint naming
// subject, with the given groups claim.
func (h *endpointHarness) signed(subject string, groups ...string) string {
	h.t.Helper()
	now := time.Now()
	tok, err := h.idp.Sign(map[string]any{
		"iss": h.idp.Issuer, "sub": subject, "aud": []string{h.resource},
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "org": tenant, "groups": groups,
		"jti": rand.Text(), // each token its own
	})
	must(h.t, err)
	h.secrets = append(h.secrets, tok)
	return tok
}

// TestEndpointTokensKeepTheirOwnScopes: two tokens of one subject whose
// claims map to different scopes each act with the credential exchanged
// for it. A narrow token used after a broad one of the same subject was
// exchanged lists and calls only what its own claims grant.
func TestEndpointTokensKeepTheirOwnScopes(t *testing.T) {
	h := newEndpointHarness(t)
	narrow := h.connect(h.signed("carol", "support")) // kb:read
	if got := toolNames(t, narrow); !slices.Equal(got, []string{"search"}) {
		t.Fatalf("narrow token's tools = %v; want [search]", got)
	}
	broad := h.connect(h.signed("carol", "billing")) // refund:draft, pay:send, kb:read
	if got := toolNames(t, broad); !slices.Equal(got, []string{"draft_refund", "search", "send_payment"}) {
		t.Fatalf("broad token's tools = %v", got)
	}
	if got := toolNames(t, narrow); !slices.Equal(got, []string{"search"}) {
		t.Errorf("narrow token's tools after the broad one = %v; want [search]", got)
	}
	ctx, cancel := context.WithTimeout(h.ctx, 30*time.Second)
	defer cancel()
	_, err := narrow.CallTool(ctx, &sdk.CallToolParams{Name: "draft_refund", Arguments: map[string]any{"order_id": "o-n", "amount_cents": 10}})
	if r := deniedReason(t, err); r != "missing_scope" {
		t.Errorf("narrow token's draft_refund denied with %q; want missing_scope", r)
	}
	res, err := broad.CallTool(ctx, &sdk.CallToolParams{Name: "draft_refund", Arguments: map[string]any{"order_id": "o-b", "amount_cents": 10}})
	if err != nil || res.IsError {
		t.Errorf("broad token's draft_refund = %v, %v; want its result", res, err)
	}
	h.endpoint.mu.Lock()
	n := len(h.endpoint.principals)
	h.endpoint.mu.Unlock()
	if n != 1 {
		t.Errorf("%d principals for one subject; want 1 (one agent key)", n)
	}
}

// TestEndpointTokenBounds: one principal holds at most perPrincipal live
// tokens, and its tokens leave room for other principals; past the
// principal bound, a principal with no live token is forgotten to make
// room, and one with live tokens is not.
func TestEndpointTokenBounds(t *testing.T) {
	h := newEndpointHarness(t)
	h.endpoint.bounds = bounds{principals: 2, sessions: 5, perPrincipal: 3}
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	for i := range 3 {
		if code, body := h.postRPC(h.signed("dave", "support"), list); code != http.StatusOK {
			t.Fatalf("dave's token %d: %d %s", i, code, body)
		}
	}
	if code, _ := h.postRPC(h.signed("dave", "support"), list); code != http.StatusUnauthorized {
		t.Errorf("dave's fourth live token: status %d; want 401", code)
	}
	erin := h.signed("erin", "support")
	if code, body := h.postRPC(erin, list); code != http.StatusOK {
		t.Errorf("erin's token while dave holds his maximum: %d %s; want 200", code, body)
	}
	// Two principals with live tokens: a third is refused.
	if code, _ := h.postRPC(h.signed("frank", "support"), list); code != http.StatusUnauthorized {
		t.Errorf("a third principal while two hold live tokens: status %d; want 401", code)
	}
	// Erin's token expires: she is forgotten to make room for frank.
	h.endpoint.mu.Lock()
	for _, s := range h.endpoint.sessions {
		if s.p.id == h.idp.Issuer+" erin" {
			s.expiry = time.Now().Add(-time.Second)
		}
	}
	heap.Init(&h.endpoint.expiring)
	h.endpoint.mu.Unlock()
	if code, body := h.postRPC(h.signed("frank", "support"), list); code != http.StatusOK {
		t.Errorf("a third principal once one has no live token: %d %s; want 200", code, body)
	}
	h.endpoint.mu.Lock()
	var ids []string
	for id := range h.endpoint.principals {
		ids = append(ids, strings.TrimPrefix(id, h.idp.Issuer+" "))
	}
	h.endpoint.mu.Unlock()
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"dave", "frank"}) {
		t.Errorf("principals = %v; want dave and frank", ids)
	}
	if code, _ := h.postRPC(erin, list); code != http.StatusUnauthorized {
		t.Errorf("erin's expired session's token: status %d; want 401", code)
	}
}

// TestEndpointReplayIsPerToken: a tools/call id is refused when its token
// used it before, not when another token (of the same principal) did;
// ids the token's window has passed are refused.
func TestEndpointReplayIsPerToken(t *testing.T) {
	h := newEndpointHarness(t)
	one, two := h.signed("gina", "support"), h.signed("gina", "support")
	call := func(tok, id string) (int, string) {
		return h.postRPC(tok, `{"jsonrpc":"2.0","id":`+id+`,"method":"tools/call","params":{"name":"nonexistent","arguments":{}}}`)
	}
	replayed := func(body string) bool { return strings.Contains(body, `"reason":"replay"`) }
	for _, c := range []struct {
		tok, id string
		replay  bool
	}{
		{one, "7", false}, {two, "7", false}, {one, "7", true}, {two, "7", true},
		{one, `"a"`, false}, {one, `"a"`, true}, {two, `"a"`, false},
		{one, "5000", false}, {one, "3977", false}, {one, "3976", true}, {one, "4500", false}, {one, "4500", true},
	} {
		if _, body := call(c.tok, c.id); replayed(body) != c.replay {
			t.Errorf("id %s with token %d: %s; want replay=%v", c.id, map[string]int{one: 1, two: 2}[c.tok], body, c.replay)
		}
	}
}

func TestReplaySet(t *testing.T) {
	var r replaySet
	steps := []struct {
		id   string
		want idVerdict
	}{
		{"10", idFresh}, {"10", idReplayed}, {"9", idFresh}, {"9", idReplayed}, {"11", idFresh},
		{"1034", idFresh}, {"11", idReplayed}, {"10", idTooOld}, {"12", idFresh},
		{"5000", idFresh}, {"1034", idTooOld}, {"3977", idFresh}, {"3976", idTooOld}, {"4999", idFresh},
		{"5000", idReplayed}, {"5001", idFresh}, {"5001", idReplayed},
		{"010", idFresh}, {"010", idReplayed}, {"10.0", idFresh}, {"1e1", idFresh}, {"-0", idFresh}, {`"10"`, idFresh}, {`"10"`, idReplayed},
		{strconv.FormatInt(math.MaxInt64, 10), idFresh}, {strconv.FormatInt(math.MaxInt64-1, 10), idFresh},
		{strconv.FormatInt(math.MaxInt64, 10), idReplayed}, {"5001", idTooOld},
		{"9223372036854775808", idFresh}, // past int64: kept exactly
	}
	for i, s := range steps {
		if got := r.use([]byte(s.id)); got != s.want {
			t.Errorf("step %d: use(%s) = %d; want %d", i, s.id, got, s.want)
		}
	}

	// A negative start and a jump across zero keep positions.
	var n replaySet
	for _, s := range []struct {
		id   int64
		want idVerdict
	}{{-5, idFresh}, {-5, idReplayed}, {3, idFresh}, {-5, idReplayed}, {-6, idFresh}, {1018, idFresh}, {-6, idTooOld}, {-5, idReplayed}} {
		if got := n.use([]byte(strconv.FormatInt(s.id, 10))); got != s.want {
			t.Errorf("negative ids: use(%d) = %d; want %d", s.id, got, s.want)
		}
	}

	// Past maxOtherIDs non-integer ids, a new one is refused; known ones
	// are still replays and integers still work.
	var o replaySet
	for i := range maxOtherIDs {
		if got := o.use(fmt.Appendf(nil, "%q", fmt.Sprint("id-", i))); got != idFresh {
			t.Fatalf("other id %d = %d", i, got)
		}
	}
	if got := o.use([]byte(`"one more"`)); got != idTooMany {
		t.Errorf("past maxOtherIDs = %d; want idTooMany", got)
	}
	if got := o.use([]byte(`"id-0"`)); got != idReplayed {
		t.Errorf("known id past maxOtherIDs = %d; want idReplayed", got)
	}
	if got := o.use([]byte("1")); got != idFresh {
		t.Errorf("integer id past maxOtherIDs = %d; want idFresh", got)
	}
}

// TestEndpointIdPOutageIsNotAnInvalidToken: while the IdP's signing keys
// cannot be fetched, a good token is answered 500 (retry), not 401 (a
// 401 has the client discard the token), and works once they can.
func TestEndpointIdPOutageIsNotAnInvalidToken(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("hank", "support")
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	h.idp.BreakKeys(testidp.KeysError)
	if code, body := h.postRPC(tok, list); code != http.StatusInternalServerError || !strings.Contains(body, "token exchange unavailable") {
		t.Errorf("during the outage: %d %s; want 500, token exchange unavailable", code, body)
	}
	h.idp.BreakKeys(testidp.KeysServed)
	var code int
	var body string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if code, body = h.postRPC(tok, list); code == http.StatusOK {
			break
		}
	}
	if code != http.StatusOK {
		t.Errorf("after the outage: %d %s; want 200", code, body)
	}
}

// TestEndpointForgedDenialEndsNothing: a record on the tenant's denied
// subject with a held call's trace id and agent key, published by anyone
// allowed to publish there, neither ends the call nor reaches the MCP
// client: only the gateway's verified decision notices do.
func TestEndpointForgedDenialEndsNothing(t *testing.T) {
	h := newEndpointHarness(t)
	alice := h.connect(h.token("alice-ide", "s3cret-alice"))
	requests, err := h.nc.SubscribeSync(subjects.Root + ".approval." + tenant + ".>")
	must(t, err)
	defer requests.Unsubscribe()
	forged := make(chan error, 1)
	go func() {
		m, err := requests.NextMsg(20 * time.Second)
		if err != nil {
			forged <- err
			return
		}
		f := nats.NewMsg(subjects.Root + ".denied." + tenant + ".policy_denied")
		for _, k := range []string{header.TraceID, header.Agent, header.MessageID} {
			f.Header.Set(k, m.Header.Get(k))
		}
		f.Header.Set(header.Stage, "authorize")
		f.Data = []byte("{}")
		if err := h.nc.PublishMsg(f); err != nil {
			forged <- err
			return
		}
		if err := h.nc.Flush(); err != nil {
			forged <- err
			return
		}
		time.Sleep(500 * time.Millisecond) // the forgery's chance to end the call
		forged <- nil
	}()
	h.approve(func(approval.Request) string {
		if err := <-forged; err != nil {
			t.Errorf("forging a denial: %v", err)
		}
		return approval.Grant
	})
	ctx, cancel := context.WithTimeout(h.ctx, 40*time.Second)
	defer cancel()
	res, err := alice.CallTool(ctx, &sdk.CallToolParams{Name: "send_payment", Arguments: map[string]any{"amount_cents": 4300, "to": "acct-9"}})
	if err != nil {
		t.Fatalf("held call with a forged denial record: %v; want the granted call's result", err)
	}
	if got, _ := json.Marshal(res.StructuredContent); string(got) != `{"payment_id":"p-4300"}` {
		t.Errorf("held call's result = %s; want the tool's", got)
	}
}
