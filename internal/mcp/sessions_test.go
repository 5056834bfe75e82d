package mcp

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
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
	return h.signedWith(map[string]any{"sub": subject, "groups": groups})
}

// signedWith returns an IdP-signed access token for the endpoint: an
// hour's token of tenant's support group, its own jti, with claims set
// over those.
func (h *endpointHarness) signedWith(claims map[string]any) string {
	h.t.Helper()
	now := time.Now()
	all := map[string]any{
		"iss": h.idp.Issuer, "aud": []string{h.resource}, "jti": rand.Text(),
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "org": tenant, "groups": []string{"support"},
	}
	maps.Copy(all, claims)
	tok, err := h.idp.Sign(all)
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
			s.expiry = time.Now().Add(-time.Hour)
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

// TestEndpointReplayIsPerToken: a tools/call sent again as it was (same
// token, id and bytes) is refused; the same request with another token of
// the same principal is not, nor one with an old id and other bytes (a
// client restarted with its token numbers requests from 1 again). Bodies
// that another decoder could read differently are refused before the
// check.
func TestEndpointReplayIsPerToken(t *testing.T) {
	h := newEndpointHarness(t)
	one, two := h.signed("gina", "support"), h.signed("gina", "support")
	call := func(id, query string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"nonexistent","arguments":{"q":"` + query + `"}}}`
	}
	replayed := func(body string) bool { return strings.Contains(body, `"reason":"replay"`) }
	for i, c := range []struct {
		tok, body string
		replay    bool
	}{
		{one, call("7", "a"), false}, {two, call("7", "a"), false}, {one, call("7", "a"), true}, {two, call("7", "a"), true},
		{one, call("7", "b"), false}, // restarted: the old id, another request
		{one, call(`"s"`, "a"), false}, {one, call(`"s"`, "a"), true},
	} {
		if _, body := h.postRPC(c.tok, c.body); replayed(body) != c.replay {
			t.Errorf("case %d: %s; want replay=%v", i, body, c.replay)
		}
	}
	for _, body := range []string{
		call("7", "a") + ` x`, // trailing data
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"nonexistent","arguments":{"q":"a"}},"METHOD":"ping"}`,
		`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"nonexistent","arguments":{"q":"a"}},"ID":"fresh"}`,
		`{"jsonrpc":"2.0","id":7,"id":8,"method":"tools/call","params":{"name":"nonexistent","arguments":{}}}`,
	} {
		if code, resp := h.postRPC(one, body); code != http.StatusBadRequest || replayed(resp) {
			t.Errorf("%s: %d %s; want 400, not strict JSON-RPC", body, code, resp)
		}
	}
}

func TestReplaySet(t *testing.T) {
	var r replaySet
	for i, c := range []struct {
		id, body string
		want     callVerdict
	}{
		{"1", "a", callFresh}, {"1", "a", callReplayed}, {"1", "b", callFresh}, {"2", "a", callFresh},
		{`"1"`, "a", callFresh}, {"1", "b", callReplayed}, {"", "1\x00a", callFresh},
	} {
		if got := r.use([]byte(c.id), []byte(c.body)); got != c.want {
			t.Errorf("step %d: use(%s, %q) = %d; want %d", i, c.id, c.body, got, c.want)
		}
	}
	var full replaySet
	for i := range maxCallsPerToken {
		if got := full.use(fmt.Appendf(nil, "%d", i), nil); got != callFresh {
			t.Fatalf("call %d = %d", i, got)
		}
	}
	if got := full.use([]byte("x"), nil); got != callSpent {
		t.Errorf("past maxCallsPerToken = %d; want callSpent", got)
	}
	if got := full.use([]byte("0"), nil); got != callReplayed {
		t.Errorf("a known call past maxCallsPerToken = %d; want callReplayed", got)
	}
}

// TestEndpointTokenSpent: past maxCallsPerToken calls a token is refused
// with 401 (the client gets a fresh one); another token is served.
func TestEndpointTokenSpent(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("ivan", "support")
	if code, body := h.postRPC(tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`); code != http.StatusOK {
		t.Fatalf("tools/list: %d %s", code, body)
	}
	h.endpoint.mu.Lock()
	for _, s := range h.endpoint.sessions {
		for i := range maxCallsPerToken {
			s.calls.use(fmt.Appendf(nil, "%d", i), []byte("earlier"))
		}
	}
	h.endpoint.mu.Unlock()
	body := `{"jsonrpc":"2.0","id":99999,"method":"tools/call","params":{"name":"search","arguments":{"query":"x"}}}`
	if code, resp := h.postRPC(tok, body); code != http.StatusUnauthorized {
		t.Errorf("a spent token's call: %d %s; want 401", code, resp)
	}
	if code, resp := h.postRPC(h.signed("ivan", "support"), body); code != http.StatusOK || strings.Contains(resp, `"reason":"replay"`) {
		t.Errorf("a fresh token's call: %d %s; want it served", code, resp)
	}
}

// TestEndpointLookalikeSubject: a token whose claims hold "sub" and a
// Unicode case variant of it ("ſub") is filed under the subject the
// exchange verifies ("sub"), never the look-alike's: it cannot sign with
// another principal's agent key or see its tasks.
func TestEndpointLookalikeSubject(t *testing.T) {
	h := newEndpointHarness(t)
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	if code, body := h.postRPC(h.signed("victim", "support"), list); code != http.StatusOK {
		t.Fatalf("victim: %d %s", code, body)
	}
	tok := h.signedWith(map[string]any{"sub": "mallory", "\u017fub": "victim"})
	code, body := h.postRPC(tok, list)
	h.endpoint.mu.Lock()
	defer h.endpoint.mu.Unlock()
	for _, s := range h.endpoint.sessions {
		if name := strings.TrimPrefix(s.p.id, h.idp.Issuer+" "); s.sum == sha256.Sum256([]byte(tok)) && name != "mallory" {
			t.Errorf("the look-alike token (%d %s) is filed under %q; want mallory", code, body, name)
		}
	}
}

// TestEndpointForgedTokenForgetsNoOne: with the principal table full and
// a principal idle, a forged token naming a new subject is refused and
// the idle principal is kept; a verified token of a new subject then
// takes its place.
func TestEndpointForgedTokenForgetsNoOne(t *testing.T) {
	h := newEndpointHarness(t)
	h.endpoint.bounds = bounds{principals: 1, sessions: 10, perPrincipal: 5}
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	if code, body := h.postRPC(h.signed("amy", "support"), list); code != http.StatusOK {
		t.Fatalf("amy: %d %s", code, body)
	}
	h.endpoint.mu.Lock()
	for _, s := range h.endpoint.sessions {
		s.expiry = time.Now().Add(-time.Hour)
	}
	heap.Init(&h.endpoint.expiring)
	h.endpoint.expireLocked(time.Now())
	h.endpoint.mu.Unlock()
	parts := strings.Split(h.signed("zed", "support"), ".")
	forged := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString([]byte("not a signature"))
	if code, _ := h.postRPC(forged, list); code != http.StatusUnauthorized {
		t.Errorf("forged token: %d; want 401", code)
	}
	h.endpoint.mu.Lock()
	_, kept := h.endpoint.principals[h.idp.Issuer+" amy"]
	h.endpoint.mu.Unlock()
	if !kept {
		t.Error("a forged token made the idle principal be forgotten")
	}
	if code, body := h.postRPC(h.signed("zed", "support"), list); code != http.StatusOK {
		t.Errorf("zed's verified token: %d %s; want 200 (amy forgotten)", code, body)
	}
}

// TestEndpointTasksFollowTokenScopes: of one principal's tokens, only
// those whose credential holds a task's tool scope see the task.
func TestEndpointTasksFollowTokenScopes(t *testing.T) {
	h := newEndpointHarness(t)
	broad, narrow := h.signed("carol", "billing"), h.signed("carol", "support")
	_, resp := h.postRPC(broad, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"draft_refund","task":{"ttl":60000},"arguments":{"order_id":"o-t","amount_cents":5}}}`)
	var created struct {
		Result struct {
			Task Task `json:"task"`
		} `json:"result"`
	}
	if json.Unmarshal([]byte(resp), &created) != nil || created.Result.Task.TaskID == "" {
		t.Fatalf("task-augmented call: %s", resp)
	}
	id := created.Result.Task.TaskID
	get := `{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"taskId":"` + id + `"}}`
	if _, resp := h.postRPC(narrow, get); !strings.Contains(resp, "unknown task") {
		t.Errorf("the narrow token's tasks/get of the broad one's task: %s; want unknown task", resp)
	}
	if _, resp := h.postRPC(narrow, `{"jsonrpc":"2.0","id":3,"method":"tasks/list"}`); strings.Contains(resp, id) {
		t.Errorf("the narrow token's tasks/list: %s; want without the broad one's task", resp)
	}
	if _, resp := h.postRPC(broad, get); !strings.Contains(resp, id) {
		t.Errorf("the broad token's tasks/get: %s; want its task", resp)
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

// TestEndpointSessionOutlivesToken: a session stays sessionGrace past
// its token's expiry (the token itself is refused from its expiry on), so
// a clock stepped back within that time finds the requests the token
// made, and a replay is still refused.
func TestEndpointSessionOutlivesToken(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("kim", "support")
	if code, body := h.postRPC(tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`); code != http.StatusOK {
		t.Fatalf("kim: %d %s", code, body)
	}
	sum := sha256.Sum256([]byte(tok))
	h.endpoint.mu.Lock()
	defer h.endpoint.mu.Unlock()
	exp := h.endpoint.sessions[sum].expiry
	h.endpoint.expireLocked(exp.Add(time.Minute))
	if h.endpoint.sessions[sum] == nil {
		t.Error("session dropped a minute after its token's expiry; want kept for two")
	}
	h.endpoint.expireLocked(exp.Add(3 * time.Minute))
	if h.endpoint.sessions[sum] != nil {
		t.Error("session kept three minutes after its token's expiry; want dropped after two")
	}
}

// TestEndpointShortTokenExchangedOnce: a token that expires within the
// endpoint's renewal margin gets a credential as long as itself, and its
// requests do not each ask the exchange for another.
func TestEndpointShortTokenExchangedOnce(t *testing.T) {
	h := newEndpointHarness(t)
	asks, err := h.nc.SubscribeSync("agentgw.exchange")
	must(t, err)
	defer asks.Unsubscribe()
	tok := h.signedWith(map[string]any{"sub": "lou", "exp": time.Now().Add(20 * time.Second).Unix()})
	for i := range 3 {
		if code, body := h.postRPC(tok, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list"}`, i)); code != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
	}
	must(t, h.nc.Flush())
	n, _, _ := asks.Pending()
	if n != 1 {
		t.Errorf("%d exchanges for three requests with a 20 s token; want 1", n)
	}
}

// TestEndpointRefusesRespelledToken: a token whose signature's last
// character is changed only in the bits base64url leaves unused decodes
// to the same bytes and would verify, but as a token not seen before it
// would get a session and a replay set of its own: a captured tools/call
// could be sent again once per spelling. Only the canonical spelling is
// accepted.
func TestEndpointRefusesRespelledToken(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("gina", "support")
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	if len(sig)%4 == 0 {
		t.Fatalf("the signature's %d characters leave no unused bits to change", len(sig))
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, sig[len(sig)-1])
	respelled := tok[:len(tok)-1] + string(alphabet[last^1])
	a, errA := base64.RawURLEncoding.DecodeString(sig)
	b, errB := base64.RawURLEncoding.DecodeString(respelled[strings.LastIndexByte(respelled, '.')+1:])
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Fatalf("the respelled signature decodes to other bytes (%v, %v)", errA, errB)
	}
	call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"nonexistent","arguments":{"q":"a"}}}`
	if code, body := h.postRPC(tok, call); code != http.StatusOK || strings.Contains(body, `"reason":"replay"`) {
		t.Fatalf("the call with its token: %d %s", code, body)
	}
	if code, body := h.postRPC(respelled, call); code != http.StatusUnauthorized {
		t.Errorf("the same call with the token respelled: %d %s; want 401", code, body)
	}
}

// TestEndpointRespelledSignatureSharesReplays: an ES256 signature (r, s)
// verifies as (r, n-s) too, and an IdP may sign the same claims twice;
// each is another spelling of one token that the exchange accepts. All
// spellings share one session and its record of calls, so a captured
// tools/call sent again under a respelled signature is still a replay;
// a forged signature joins nothing, and spellings are bounded.
func TestEndpointRespelledSignatureSharesReplays(t *testing.T) {
	h := newEndpointHarness(t)
	must(t, h.idp.Rotate(jose.ES256))
	now := time.Now()
	claims := map[string]any{"sub": "gina", "groups": []string{"billing"}, "jti": "one-token",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	tok := h.signedWith(claims)
	dot := strings.LastIndexByte(tok, '.')
	respell := func(edit func(s *big.Int)) string {
		sig, err := base64.RawURLEncoding.Strict().DecodeString(tok[dot+1:])
		if err != nil || len(sig) != 64 {
			t.Fatalf("ES256 signature of %d bytes (%v)", len(sig), err)
		}
		s := new(big.Int).SetBytes(sig[32:])
		edit(s)
		out := tok[:dot+1] + base64.RawURLEncoding.EncodeToString(append(sig[:32:32], s.FillBytes(make([]byte, 32))...))
		h.secrets = append(h.secrets, out)
		return out
	}
	n := elliptic.P256().Params().N
	negated := respell(func(s *big.Int) { s.Sub(n, s) })
	forged := respell(func(s *big.Int) { s.Add(s, big.NewInt(1)) })
	call := func(id, order string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"draft_refund","arguments":{"order_id":"` + order + `","amount_cents":500}}}`
	}
	replayed := func(body string) bool { return strings.Contains(body, `"reason":"replay"`) }
	for i, c := range []struct {
		tok, body string
		code      int
		replay    bool
	}{
		{tok, call("7", "o-1"), http.StatusOK, false},
		{negated, call("7", "o-1"), http.StatusBadRequest, true}, // captured, respelled
		{negated, call("8", "o-2"), http.StatusOK, false},        // the spelling is the token's own
		{tok, call("8", "o-2"), http.StatusBadRequest, true},
		{h.signedWith(claims), call("7", "o-1"), http.StatusBadRequest, true}, // the same claims signed again
		{forged, call("9", "o-3"), http.StatusUnauthorized, false},
		{h.signedWith(claims), call("9", "o-3"), http.StatusOK, false}, // a fourth spelling
		{h.signedWith(claims), call("10", "o-4"), http.StatusUnauthorized, false},
	} {
		if code, body := h.postRPC(c.tok, c.body); code != c.code || replayed(body) != c.replay {
			t.Errorf("case %d: %d %s; want %d, replay=%v", i, code, body, c.code, c.replay)
		}
	}
	if calls := h.upstream.calls(); len(calls) != 3 {
		t.Errorf("upstream calls %q; want the three fresh ones", calls)
	}
	h.endpoint.mu.Lock()
	defer h.endpoint.mu.Unlock()
	if len(h.endpoint.sessions) != 4 || len(h.endpoint.signed) != 1 || h.endpoint.sessions[sha256.Sum256([]byte(forged))] != nil {
		t.Errorf("%d spellings filed for %d tokens; want the four verified ones for one", len(h.endpoint.sessions), len(h.endpoint.signed))
	}
	h.endpoint.expireLocked(now.Add(time.Hour + 3*time.Minute))
	if len(h.endpoint.sessions) != 0 || len(h.endpoint.signed) != 0 {
		t.Errorf("after the token's expiry %d spellings and %d tokens kept; want none", len(h.endpoint.sessions), len(h.endpoint.signed))
	}
}
