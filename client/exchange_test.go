package client

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/gateway/identity"
)

// answerExchange answers every request on the exchange subject with
// token, as anyone allowed to subscribe there could.
func answerExchange(t *testing.T, nc *nats.Conn, token identity.Token) {
	t.Helper()
	sub, err := nc.Subscribe(protocol.DefaultSubject, func(m *nats.Msg) {
		body, _ := json.Marshal(protocol.Response{
			AccessToken: token.Reveal(), IssuedTokenType: protocol.TokenTypeAgentgw, TokenType: "N_A", ExpiresIn: 1800,
		})
		_ = m.Respond(body)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestExchangeRefusesCredentialNotAskedFor: an answer on agentgw.exchange
// is taken only if it is the credential the agent asked for: its
// audience, its tenant when one is configured, no scope it did not
// request, and with TrustedIssuers a trusted issuer's valid signature. A
// rogue responder handing out another tenant's credential for the
// agent's own keys is refused.
func TestExchangeRefusesCredentialNotAskedFor(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant)
	rogue := mustKey(t, identity.NewIssuer)
	trusted, _ := w.issuer.PublicKey()
	issue := func(issuer nkeys.KeyPair, tenant, aud string, scopes ...string) identity.Token {
		tok, err := identity.Issue(issuer, identity.IssueRequest{
			Subject: a.pub, Audience: aud, Tenant: tenant, Scopes: scopes, XKey: a.xkey, TTL: 30 * time.Minute,
		}, testClock)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	// A credential naming the trusted issuer but signed by the rogue one.
	forged := func() identity.Token {
		j, err := identity.ParseJWT(issue(rogue, testTenant, testAudience).Reveal())
		if err != nil {
			t.Fatal(err)
		}
		rpub, _ := rogue.PublicKey()
		s, err := identity.NewSigner(rogue)
		if err != nil {
			t.Fatal(err)
		}
		return identity.SignJWT(s, []byte(strings.Replace(string(j.Payload), rpub, trusted, 1)))
	}()
	pinned := func(c *ExchangeConfig) { c.TrustedIssuers = []string{trusted} }
	for name, tc := range map[string]struct {
		answer  identity.Token
		mod     func(*ExchangeConfig)
		wantErr error
	}{
		"deny/other_tenant":         {answer: issue(w.issuer, "tenant_b", testAudience), mod: func(c *ExchangeConfig) { c.Tenant = testTenant }, wantErr: ErrExchange},
		"deny/rogue_issuer":         {answer: issue(rogue, "tenant_b", testAudience), mod: pinned, wantErr: ErrExchange},
		"deny/forged_signature":     {answer: forged, mod: pinned, wantErr: ErrExchange},
		"deny/other_audience":       {answer: issue(w.issuer, testTenant, "other-gateway"), wantErr: ErrExchange},
		"deny/unrequested_scope":    {answer: issue(w.issuer, testTenant, testAudience, "kb:read", "admin:*"), mod: func(c *ExchangeConfig) { c.Scopes = []string{"kb:read"} }, wantErr: ErrExchange},
		"allow/asked_for":           {answer: issue(w.issuer, testTenant, testAudience, "kb:read"), mod: func(c *ExchangeConfig) { pinned(c); c.Tenant = testTenant; c.Scopes = []string{"kb:read", "kb:write"} }},
		"allow/any_tenant_unpinned": {answer: issue(rogue, "tenant_b", testAudience)},
	} {
		t.Run(name, func(t *testing.T) {
			nc := connectTo(t, w)
			answerExchange(t, nc, tc.answer)
			cfg := ExchangeConfig{
				Audience: testAudience, Key: a.kp, Curve: a.curve, GatewayXKey: w.gwCurve.PublicKey(), Timeout: 2 * time.Second,
				Token: func(context.Context) (string, error) { return "idp-token", nil },
			}
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			got, err := Exchange(ctxT(t), w.nc, cfg, WithClock(func() time.Time { return testClock }))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("Exchange = %v, %v; want %v", got, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), tc.answer.Reveal()) {
				t.Errorf("error quotes the credential")
			}
		})
	}
}

func connectTo(t *testing.T, w *world) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(w.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestCredentialSourceFallbackJudgedAfterExchange: when a renewal fails,
// the current credential is returned only if it is still valid once the
// exchange has failed, not at the instant the renewal began: an exchange
// can take its whole timeout, and the credential may expire meanwhile.
func TestCredentialSourceFallbackJudgedAfterExchange(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant)
	tok := a.token // what the exchange answers: a credential for a's keys
	answerExchange(t, connectTo(t, w), tok)
	var (
		now   = testClock
		calls int
	)
	src, err := NewCredentialSource(w.nc, ExchangeConfig{
		Audience: testAudience, Key: a.kp, Curve: a.curve, GatewayXKey: w.gwCurve.PublicKey(), Timeout: 2 * time.Second,
		Token: func(context.Context) (string, error) {
			if calls++; calls == 1 {
				return "idp-token", nil
			}
			// The renewal fails, and only after the credential expired.
			now = testClock.Add(30*time.Minute + time.Second)
			return "", errors.New("idp unreachable")
		},
	}, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Credential(ctxT(t)); err != nil {
		t.Fatalf("Credential = %v", err)
	}
	now = testClock.Add(30*time.Minute - time.Second) // due for renewal, still valid
	if c, err := src.Credential(ctxT(t)); !errors.Is(err, ErrExchange) {
		t.Errorf("Credential = %v, %v; want %v: the credential expired during the renewal", c, err, ErrExchange)
	}
}

// TestExchangeProvesXKey: the request the SDK sends names the curve
// key's public key as its xkey and carries a proof the gateway's curve
// key opens for this agent key and request id; a config without the
// agent's curve key pair or the gateway's curve key is refused before
// anything is sent.
func TestExchangeProvesXKey(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant)
	tok := a.token // what the exchange answers: a credential for a's keys
	got := make(chan error, 1)
	answerer := connectTo(t, w)
	sub, err := answerer.Subscribe(protocol.DefaultSubject, func(m *nats.Msg) {
		req, err := protocol.Parse(m.Data)
		if err == nil && req.XKey != a.xkey {
			err = errors.New("xkey is not the curve key's")
		}
		if err == nil {
			err = protocol.VerifyXKeyProof(w.gwCurve, req)
		}
		got <- err
		body, _ := json.Marshal(protocol.Response{AccessToken: tok.Reveal(), IssuedTokenType: protocol.TokenTypeAgentgw, TokenType: "N_A", ExpiresIn: 1800})
		_ = m.Respond(body)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	// The server has the subscription before the request comes from
	// another connection.
	if err := answerer.Flush(); err != nil {
		t.Fatal(err)
	}
	cfg := ExchangeConfig{
		Audience: testAudience, Key: a.kp, Curve: a.curve, GatewayXKey: w.gwCurve.PublicKey(), Timeout: 2 * time.Second,
		Token: func(context.Context) (string, error) { return "idp-token", nil },
	}
	if _, err := Exchange(ctxT(t), w.nc, cfg, WithClock(func() time.Time { return testClock })); err != nil {
		t.Fatalf("Exchange = %v", err)
	}
	if err := <-got; err != nil {
		t.Errorf("the request's xkey proof: %v", err)
	}

	for name, edit := range map[string]func(*ExchangeConfig){
		"no_curve_key":          func(c *ExchangeConfig) { c.Curve = nil },
		"user_key_as_curve_key": func(c *ExchangeConfig) { c.Curve = a.kp },
		"no_gateway_xkey":       func(c *ExchangeConfig) { c.GatewayXKey = "" },
		"gateway_signing_key":   func(c *ExchangeConfig) { c.GatewayXKey = w.gwSign.PublicKey() },
	} {
		c := cfg
		edit(&c)
		if _, err := Exchange(ctxT(t), w.nc, c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Exchange = %v; want %v", name, err, ErrConfig)
		}
	}
	select {
	case err := <-got:
		t.Errorf("a refused config sent a request (%v)", err)
	default:
	}
}

// TestCredentialSourceRenewalHoldsNoOne: while one caller's renewal hangs
// in the IdP, the others are handed the current credential, still valid,
// at once; once the renewal has failed, calls in the next few seconds are
// handed it too, without asking the IdP again.
func TestCredentialSourceRenewalHoldsNoOne(t *testing.T) {
	w := newWorld(t)
	a := w.newActor(testTenant)
	answerExchange(t, connectTo(t, w), a.token)
	var (
		mu    sync.Mutex
		now   = testClock
		calls int
	)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	src, err := NewCredentialSource(w.nc, ExchangeConfig{
		Audience: testAudience, Key: a.kp, Curve: a.curve, GatewayXKey: w.gwCurve.PublicKey(), Timeout: 2 * time.Second,
		Token: func(context.Context) (string, error) {
			mu.Lock()
			calls++
			n := calls
			mu.Unlock()
			if n == 1 {
				return "idp-token", nil
			}
			entered <- struct{}{}
			<-release
			return "", errors.New("idp unreachable")
		},
	}, WithClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return now }))
	if err != nil {
		t.Fatal(err)
	}
	first, err := src.Credential(ctxT(t))
	if err != nil {
		t.Fatalf("Credential = %v", err)
	}
	mu.Lock()
	now = testClock.Add(29 * time.Minute) // due for renewal, still valid
	mu.Unlock()
	renewed := make(chan error, 1)
	go func() { _, err := src.Credential(ctxT(t)); renewed <- err }()
	<-entered // that renewal hangs in the IdP
	others := make(chan *ExchangedCredential, 3)
	for range 3 {
		go func() {
			c, _ := src.Credential(ctxT(t))
			others <- c
		}()
	}
	for range 3 {
		select {
		case c := <-others:
			if c != first {
				t.Errorf("a caller beside the renewal got %v; want the current credential", c)
			}
		case <-time.After(5 * time.Second):
			t.Error("a caller waited for the renewal in flight")
		}
	}
	close(release)
	if err := <-renewed; err != nil {
		t.Fatalf("the renewing caller = %v; want the current credential, still valid", err)
	}
	if c, err := src.Credential(ctxT(t)); err != nil || c != first {
		t.Errorf("Credential right after the failed renewal = %v, %v; want the current credential", c, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("the IdP was asked %d times; want 2 (the first credential, one renewal)", calls)
	}
}

// idpScene is a CredentialSource of a fresh actor on a fake clock: its
// exchange answers the actor's credential (issued at testClock, for 30
// minutes), and its IdP counts the tokens asked of it and fails the calls
// fail names.
type idpScene struct {
	src   *CredentialSource
	a     *actor
	mu    sync.Mutex
	now   time.Time
	calls int
}

func newIdPScene(t *testing.T, start time.Time, renewBefore time.Duration, fail func(call int) bool) *idpScene {
	t.Helper()
	w := newWorld(t)
	s := &idpScene{a: w.newActor(testTenant), now: start}
	answerExchange(t, connectTo(t, w), s.a.token)
	var err error
	s.src, err = NewCredentialSource(w.nc, ExchangeConfig{
		Audience: testAudience, Key: s.a.kp, Curve: s.a.curve, GatewayXKey: w.gwCurve.PublicKey(), Timeout: 2 * time.Second,
		RenewBefore: renewBefore,
		Token: func(context.Context) (string, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.calls++; fail != nil && fail(s.calls) {
				return "", errors.New("idp unreachable")
			}
			return "idp-token", nil
		},
	}, WithClock(func() time.Time { s.mu.Lock(); defer s.mu.Unlock(); return s.now }))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *idpScene) advance(d time.Duration) { s.mu.Lock(); s.now = s.now.Add(d); s.mu.Unlock() }

// asked is how many tokens the IdP was asked for.
func (s *idpScene) asked() int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls }

// TestCredentialSourceDueAtOnceRenewsOnceAWhile: a credential that comes
// back from the exchange already due for renewal (RenewBefore at least
// its lifetime, or a clock ahead of the gateway's by more than its
// lifetime) is handed out, and renewed at most once every few seconds,
// not exchanged again on every call.
func TestCredentialSourceDueAtOnceRenewsOnceAWhile(t *testing.T) {
	for name, tc := range map[string]struct {
		renewBefore time.Duration
		ahead       time.Duration // how far the agent's clock runs ahead of the credential's issue
	}{
		"RenewBefore longer than the lifetime":  {renewBefore: 45 * time.Minute},
		"clock ahead by more than the lifetime": {ahead: 31 * time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			s := newIdPScene(t, testClock.Add(tc.ahead), tc.renewBefore, nil)
			for i := range 10 {
				if c, err := s.src.Credential(ctxT(t)); err != nil || c.Token != s.a.token {
					t.Fatalf("Credential #%d = %v, %v; want the exchanged credential", i+1, c, err)
				}
			}
			if n := s.asked(); n != 1 {
				t.Errorf("10 calls within a second exchanged %d times; want once", n)
			}
			s.advance(renewRetry + time.Second)
			if _, err := s.src.Credential(ctxT(t)); err != nil {
				t.Fatalf("Credential after %s = %v", renewRetry, err)
			}
			if n := s.asked(); n != 2 {
				t.Errorf("a call %s later exchanged %d times in all; want 2: still due, it renews again", renewRetry+time.Second, n)
			}
		})
	}
}

// TestCredentialSourceDueAtOnceNotPastExpiry: a credential due for
// renewal on arrival but not yet expired by the agent's clock is handed
// out until it expires, not a moment after: a credential with little
// life left (a short credential_ttl, an IdP token near its own expiry)
// is renewed once it has expired, whatever the few seconds a credential
// expired on arrival is kept.
func TestCredentialSourceDueAtOnceNotPastExpiry(t *testing.T) {
	s := newIdPScene(t, testClock.Add(30*time.Minute-2*time.Second), 0, nil) // 2 s of life left on arrival
	for range 3 {
		if _, err := s.src.Credential(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.asked(); n != 1 {
		t.Errorf("calls before its expiry exchanged %d times; want once", n)
	}
	s.advance(3 * time.Second) // expired, and within renewRetry of the exchange
	if _, err := s.src.Credential(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if n := s.asked(); n != 2 {
		t.Errorf("a call after its expiry exchanged %d times in all; want 2: renewed, not handed out expired", n)
	}
}

// TestCredentialSourceFailedRenewalWaitsToRetry: with the agent's clock
// ahead of the gateway's, the credential counts as expired here, and a
// renewal the IdP fails is not tried again by every call: for a few
// seconds each is handed the failure at once, then one renewal is tried.
func TestCredentialSourceFailedRenewalWaitsToRetry(t *testing.T) {
	s := newIdPScene(t, testClock.Add(31*time.Minute), 0, func(call int) bool { return call > 1 }) // ahead by more than its lifetime
	if _, err := s.src.Credential(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	s.advance(renewRetry + time.Second)
	for i := range 10 {
		if c, err := s.src.Credential(ctxT(t)); !errors.Is(err, ErrExchange) {
			t.Fatalf("Credential #%d after the IdP failed = %v, %v; want its failure", i+1, c, err)
		}
	}
	if n := s.asked(); n != 2 {
		t.Errorf("10 calls after a failed renewal asked the IdP %d times in all; want 2 (the first credential, one renewal)", n)
	}
	s.advance(renewRetry + time.Second)
	_, _ = s.src.Credential(ctxT(t))
	if n := s.asked(); n != 3 {
		t.Errorf("a call %s after the failure asked the IdP %d times in all; want 3: it tries again", renewRetry+time.Second, n)
	}
}
