package mcp

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/agentgw/agentgw/subjects/reason"
)

// renewalHarness is an endpoint harness with one session begun for tok,
// whose token exchange is then a responder of the test's: answer, called
// for each exchange request (nil: none is answered). exchanges counts the
// requests it got.
type renewalHarness struct {
	*endpointHarness
	tok       string
	s         *session
	exchange  string // the endpoint's exchange subject before the test's
	exchanges atomic.Int64
}

func newRenewalHarness(t *testing.T, answer func(*nats.Msg)) *renewalHarness {
	t.Helper()
	h := &renewalHarness{endpointHarness: newEndpointHarness(t)}
	h.tok = h.signed("dora", "billing")
	if code, body := h.postRPC(h.tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`); code != http.StatusOK {
		t.Fatalf("first tools/list: %d %s", code, body)
	}
	e := h.endpoint
	e.mu.Lock()
	h.s = e.sessions[sha256.Sum256([]byte(h.tok))]
	e.mu.Unlock()
	if h.s == nil {
		t.Fatal("no session for the token after its first request")
	}
	const subject = "test.renewal.exchange"
	sub, err := h.nc.Subscribe(subject, func(m *nats.Msg) {
		h.exchanges.Add(1)
		if answer != nil {
			answer(m)
		}
	})
	must(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	must(t, h.nc.Flush())
	// Every credential is now due for renewal, through the test's
	// responder. No request is in flight: the next ones see both.
	h.exchange, e.ep.ExchangeSubject = e.ep.ExchangeSubject, subject
	e.renewBefore = 24 * time.Hour
	return h
}

// expireIn sets the session's credential to end d from now.
func (h *renewalHarness) expireIn(d time.Duration) {
	h.s.mu.Lock()
	h.s.credExpiry = time.Now().Add(d)
	h.s.mu.Unlock()
}

// concurrently posts bodies at once with the harness's token and returns
// their statuses and responses.
func (h *renewalHarness) concurrently(bodies ...string) (codes []int, resps []string) {
	codes, resps = make([]int, len(bodies)), make([]string, len(bodies))
	var wg sync.WaitGroup
	for i, b := range bodies {
		wg.Go(func() { codes[i], resps[i] = h.postRPC(h.tok, b) })
	}
	wg.Wait()
	return codes, resps
}

// TestEndpointRenewalKeepsValidCredential: while a session's credential
// is due for renewal and the token exchange does not answer, the
// session's requests (tools/list, tasks/list, tools/call) are served with
// the credential it holds, which is still valid: one request exchanges,
// the others do not wait for it, and after the failed renewal the next
// request does not exchange again at once.
func TestEndpointRenewalKeepsValidCredential(t *testing.T) {
	h := newRenewalHarness(t, nil) // an exchange that never answers
	h.expireIn(10 * time.Minute)
	codes, resps := h.concurrently(
		`{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tasks/list","params":{}}`,
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"search","arguments":{"query":"renewal"}}}`,
	)
	for i, code := range codes {
		if code != http.StatusOK || strings.Contains(resps[i], `"error"`) {
			t.Errorf("request %d with a valid credential, exchange silent: %d %s; want served", i, code, resps[i])
		}
	}
	if !strings.Contains(resps[2], "articles about renewal") {
		t.Errorf("tools/call = %s; want the tool's answer", resps[2])
	}
	if n := h.exchanges.Load(); n != 1 {
		t.Errorf("%d exchange requests for three concurrent requests; want one renewal at a time", n)
	}
	// Right after the failed renewal: served, and no new exchange.
	if code, resp := h.postRPC(h.tok, `{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{}}`); code != http.StatusOK {
		t.Errorf("tools/list after the failed renewal: %d %s; want served", code, resp)
	}
	if n := h.exchanges.Load(); n != 1 {
		t.Errorf("%d exchange requests after a request that followed a failed renewal; want none before the retry delay", n)
	}
}

// TestEndpointRenewalRefusedIs401: a renewal the exchange refuses (a
// typed denial: the token judged) is a 401, though the credential is
// still valid, for that request and the ones that follow it.
func TestEndpointRenewalRefusedIs401(t *testing.T) {
	h := newRenewalHarness(t, func(m *nats.Msg) {
		r := nats.NewMsg(m.Reply)
		r.Header.Set(micro.ErrorHeader, string(reason.ExchangeTokenInvalid))
		r.Header.Set(micro.ErrorCodeHeader, "401")
		_ = m.RespondMsg(r)
	})
	h.expireIn(10 * time.Minute)
	for i := range 2 {
		code, resp := h.postRPC(h.tok, fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list","params":{}}`, 2+i))
		if code != http.StatusUnauthorized {
			t.Errorf("request %d after the exchange refused the renewal: %d %s; want 401", i, code, resp)
		}
	}
	if n := h.exchanges.Load(); n < 1 {
		t.Errorf("the exchange got no request: the refusal was not the renewal's")
	}
}

// TestEndpointRenewalFailsOnceExpired: with the credential expired, a
// renewal the exchange does not answer fails the request (500: the token
// was not judged), and a request meanwhile shares that renewal's outcome
// rather than exchanging again, as does one right after it; once the
// exchange answers again, a request after the retry delay renews.
func TestEndpointRenewalFailsOnceExpired(t *testing.T) {
	h := newRenewalHarness(t, nil)
	h.expireIn(-time.Second)
	codes, resps := h.concurrently(
		`{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tasks/list","params":{}}`,
	)
	for i, code := range codes {
		if code != http.StatusInternalServerError {
			t.Errorf("request %d with an expired credential, exchange silent: %d %s; want 500", i, code, resps[i])
		}
	}
	if code, resp := h.postRPC(h.tok, `{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{}}`); code != http.StatusInternalServerError {
		t.Errorf("request after the failed renewal, credential expired: %d %s; want 500", code, resp)
	}
	if n := h.exchanges.Load(); n != 1 {
		t.Errorf("%d exchange requests; want one (the others share its outcome)", n)
	}

	h.endpoint.ep.ExchangeSubject = h.exchange // the gateway's again; no request in flight
	deadline := time.Now().Add(time.Minute)
	for {
		code, resp := h.postRPC(h.tok, `{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{}}`)
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tools/list with the exchange answering again: %d %s; want a renewed credential", code, resp)
		}
		time.Sleep(500 * time.Millisecond)
	}
	h.s.mu.Lock()
	renewed := time.Now().Before(h.s.credExpiry)
	h.s.mu.Unlock()
	if !renewed {
		t.Error("served without a renewed credential")
	}
}

// TestEndpointTasksListChecksMcpMethod: tasks/list, which the endpoint
// answers itself, is refused with 400 (-32020) when Mcp-Method is missing
// at revision 2026-07-28, or names another method at any revision.
func TestEndpointTasksListChecksMcpMethod(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("erin", "billing")
	post := func(version, method string) (int, string) {
		req, err := http.NewRequest(http.MethodPost, h.resource, strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tasks/list","params":{}}`))
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("MCP-Protocol-Version", version)
		if method != "" {
			req.Header.Set("Mcp-Method", method)
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct {
		version, method string
		want            int
	}{
		{"2026-07-28", "", http.StatusBadRequest},
		{"2026-07-28", "tools/list", http.StatusBadRequest},
		{"2025-11-25", "tools/list", http.StatusBadRequest},
		{"2026-07-28", "tasks/list", http.StatusOK},
		{"2025-11-25", "", http.StatusOK},
	} {
		code, resp := post(c.version, c.method)
		if code != c.want {
			t.Errorf("tasks/list at %s with Mcp-Method %q: %d %s; want %d", c.version, c.method, code, resp, c.want)
			continue
		}
		if c.want == http.StatusBadRequest && !strings.Contains(resp, `"code":-32020`) {
			t.Errorf("tasks/list at %s with Mcp-Method %q: %s; want the header-mismatch error -32020", c.version, c.method, resp)
		}
		if c.want == http.StatusOK && !strings.Contains(resp, `"tasks":[]`) {
			t.Errorf("tasks/list at %s with Mcp-Method %q: %s; want the task list", c.version, c.method, resp)
		}
	}
}

// TestEndpointToolsListCachePrivate: tools/list is narrowed to the
// principal, so its result is marked for the requesting user's cache
// only (cacheScope "private"), not "public".
func TestEndpointToolsListCachePrivate(t *testing.T) {
	h := newEndpointHarness(t)
	tok := h.signed("fay", "support")
	req, err := http.NewRequest(http.MethodPost, h.resource, strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"x","version":"1"},"io.modelcontextprotocol/clientCapabilities":{}}}}`))
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/list")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"tools":[`) {
		t.Fatalf("tools/list: %d %s", resp.StatusCode, b)
	}
	if !strings.Contains(string(b), `"cacheScope":"private"`) {
		t.Errorf("tools/list = %s; want cacheScope private", b)
	}
}
