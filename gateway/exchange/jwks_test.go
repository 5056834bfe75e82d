package exchange

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// jwksServer serves a JWKS the test swaps, counting fetches.
type jwksServer struct {
	srv     *httptest.Server
	fetches atomic.Int32
	fail    atomic.Bool // answer 500
	mu      sync.Mutex
	keys    []jose.JSONWebKey
}

func newJWKSServer(t *testing.T) *jwksServer {
	j := &jwksServer{}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		if j.fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		j.mu.Lock()
		defer j.mu.Unlock()
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: j.keys})
	}))
	t.Cleanup(j.srv.Close)
	return j
}

type testKey struct {
	kid  string
	priv *ecdsa.PrivateKey
}

func newTestKey(t *testing.T, kid string) testKey {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid, priv}
}

func (k testKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: "ES256", Use: "sig"}
}

func (k testKey) sign(t *testing.T) string { return k.signPayload(t, []byte(`{"iss":"x"}`)) }

func (k testKey) signPayload(t *testing.T, payload []byte) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func (j *jwksServer) publish(keys ...testKey) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.keys = nil
	for _, k := range keys {
		j.keys = append(j.keys, k.public())
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// newTestKeySet is a key set of url on a fake clock: maxAge a minute,
// minRefresh and skew five seconds.
func newTestKeySet(t *testing.T, url string) (*keySet, *fakeClock) {
	clk := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return newKeySet(url, &http.Client{Transport: tr}, clk.now, time.Minute, 5*time.Second, 5*time.Second, Algorithms), clk
}

// TestKeySetRefreshRules: an unknown kid causes at most one fetch per
// minRefresh (junk kids cannot amplify), any fetch brings in every
// current key, and keys older than maxAge are fetched again before use
// so a withdrawn key stops verifying.
func TestKeySetRefreshRules(t *testing.T) {
	j := newJWKSServer(t)
	k1, k2 := newTestKey(t, "k1"), newTestKey(t, "k2")
	j.publish(k1)
	ks, clk := newTestKeySet(t, j.srv.URL)
	ctx := context.Background()

	if _, err := ks.VerifySignature(ctx, k1.sign(t)); err != nil {
		t.Fatalf("k1: %v", err)
	}
	junk := newTestKey(t, "junk")
	for range 10 {
		if _, err := ks.VerifySignature(ctx, junk.sign(t)); !errors.Is(err, errUnknownKey) {
			t.Fatalf("junk kid = %v; want errUnknownKey", err)
		}
	}
	if n := j.fetches.Load(); n != 1 {
		t.Errorf("fetches after 10 junk kids within minRefresh = %d; want 1 (the first use)", n)
	}

	j.publish(k2) // rotation: k1 withdrawn
	if _, err := ks.VerifySignature(ctx, k1.sign(t)); err != nil {
		t.Errorf("k1 within maxAge, before any refetch = %v; want still cached", err)
	}
	clk.t = clk.t.Add(6 * time.Second)
	if _, err := ks.VerifySignature(ctx, junk.sign(t)); !errors.Is(err, errUnknownKey) {
		t.Fatalf("junk kid = %v", err)
	}
	// That junk-caused fetch brought k2 in: accepted with no further fetch.
	before := j.fetches.Load()
	if _, err := ks.VerifySignature(ctx, k2.sign(t)); err != nil {
		t.Errorf("k2 after a fetch = %v; want accepted", err)
	}
	if j.fetches.Load() != before {
		t.Error("k2 caused another fetch; want it from the cache")
	}
	if _, err := ks.VerifySignature(ctx, k1.sign(t)); !errors.Is(err, errUnknownKey) {
		t.Errorf("k1 after it left the JWKS = %v; want errUnknownKey", err)
	}

	// Past maxAge keys are fetched again before use.
	j.publish(k1)
	clk.t = clk.t.Add(61 * time.Second)
	if _, err := ks.VerifySignature(ctx, k2.sign(t)); !errors.Is(err, errUnknownKey) {
		t.Errorf("k2 withdrawn, keys past maxAge = %v; want errUnknownKey", err)
	}
}

func TestKeySetUnavailableFailsClosed(t *testing.T) {
	j := newJWKSServer(t)
	k1 := newTestKey(t, "k1")
	j.publish(k1)
	ks, clk := newTestKeySet(t, j.srv.URL)
	if _, err := ks.VerifySignature(context.Background(), k1.sign(t)); err != nil {
		t.Fatal(err)
	}
	j.srv.Close()
	clk.t = clk.t.Add(2 * time.Minute)
	if _, err := ks.VerifySignature(context.Background(), k1.sign(t)); !errors.Is(err, errKeysFetch) {
		t.Errorf("expired keys, IdP down = %v; want errKeysFetch", err)
	}
}

// TestKeySetUnknownKidDuringOutage: a kid the cache lacks while the
// fetch that could bring it fails, or failed last within minRefresh, is
// errKeysFetch (the token cannot be judged), never errUnknownKey; a
// cached kid still verifies; once a fetch succeeds a kid it lacks is
// errUnknownKey again.
func TestKeySetUnknownKidDuringOutage(t *testing.T) {
	j := newJWKSServer(t)
	k1, k2 := newTestKey(t, "k1"), newTestKey(t, "k2")
	j.publish(k1)
	ks, clk := newTestKeySet(t, j.srv.URL)
	ctx := context.Background()
	if _, err := ks.VerifySignature(ctx, k1.sign(t)); err != nil {
		t.Fatal(err)
	}

	j.publish(k1, k2)
	j.fail.Store(true)
	clk.t = clk.t.Add(6 * time.Second)
	if _, err := ks.VerifySignature(ctx, k2.sign(t)); !errors.Is(err, errKeysFetch) || errors.Is(err, errUnknownKey) {
		t.Errorf("new kid, fetch failing = %v; want errKeysFetch", err)
	}
	if _, err := ks.VerifySignature(ctx, k2.sign(t)); !errors.Is(err, errKeysFetch) {
		t.Errorf("new kid within minRefresh of a failed fetch = %v; want errKeysFetch", err)
	}
	if _, err := ks.VerifySignature(ctx, k1.sign(t)); err != nil {
		t.Errorf("cached kid within maxAge, fetch failing = %v; want accepted", err)
	}

	j.fail.Store(false)
	clk.t = clk.t.Add(6 * time.Second)
	if _, err := ks.VerifySignature(ctx, k2.sign(t)); err != nil {
		t.Errorf("new kid, fetch working = %v; want accepted", err)
	}
	junk := newTestKey(t, "junk")
	if _, err := ks.VerifySignature(ctx, junk.sign(t)); !errors.Is(err, errUnknownKey) {
		t.Errorf("unpublished kid after a successful fetch = %v; want errUnknownKey", err)
	}
}

// TestKeySetFetchErrorsNameTheURLOnly: a failed fetch names the JWKS URL
// and the failure, never the body it got.
func TestKeySetFetchErrorsNameTheURLOnly(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"keys": "secret-looking-body"`))
	}))
	t.Cleanup(srv.Close)
	ks, clk := newTestKeySet(t, srv.URL+"/jwks")
	_, err := ks.VerifySignature(context.Background(), newTestKey(t, "k1").sign(t))
	if !errors.Is(err, errKeysFetch) || !strings.Contains(err.Error(), srv.URL+"/jwks") || strings.Contains(err.Error(), "secret-looking-body") {
		t.Errorf("unparsable JWKS = %v; want errKeysFetch naming the URL and not the body", err)
	}
	srv.Close()
	clk.t = clk.t.Add(6 * time.Second)
	_, _, err = ks.current(context.Background(), false)
	if !errors.Is(err, errKeysFetch) || strings.Count(err.Error(), srv.URL) != 1 || !strings.Contains(err.Error(), "refused") {
		t.Errorf("JWKS refusing connections = %v; want errKeysFetch naming the URL once", err)
	}
}

// signAt signs a token issued at iat.
func (k testKey) signAt(t *testing.T, iat time.Time) string {
	return k.signPayload(t, fmt.Appendf(nil, `{"iss":"x","iat":%d}`, iat.Unix()))
}

// TestKeySetRotationWithinMinRefresh: the IdP rotates just after a fetch.
// A token with the new kid, issued after the keys were fetched, arrives
// while no new fetch is allowed: it is not judged (errKeysFetch, retry),
// never refused as a bad token; once a fetch is allowed it verifies. A
// token with a kid missing from keys fetched after it was issued is
// refused (errUnknownKey) as before.
func TestKeySetRotationWithinMinRefresh(t *testing.T) {
	j := newJWKSServer(t)
	k1, k2 := newTestKey(t, "k1"), newTestKey(t, "k2")
	j.publish(k1)
	ks, clk := newTestKeySet(t, j.srv.URL)
	ctx := context.Background()
	if _, err := ks.VerifySignature(ctx, k1.signAt(t, clk.t)); err != nil {
		t.Fatalf("k1: %v", err)
	}
	old := newTestKey(t, "old").signAt(t, clk.t.Add(-10*time.Second)) // before the fetch, beyond the skew
	j.publish(k1, k2)
	clk.t = clk.t.Add(2 * time.Second)
	if _, err := ks.VerifySignature(ctx, k2.signAt(t, clk.t)); !errors.Is(err, errKeysFetch) {
		t.Errorf("new kid issued after the fetch, within minRefresh = %v; want errKeysFetch", err)
	}
	// By an IdP clock 3 s behind ours (within the skew) it was issued
	// before the fetch: still not judged.
	if _, err := ks.VerifySignature(ctx, k2.signAt(t, clk.t.Add(-3*time.Second))); !errors.Is(err, errKeysFetch) {
		t.Errorf("new kid, IdP clock behind within the skew = %v; want errKeysFetch", err)
	}
	if _, err := ks.VerifySignature(ctx, old); !errors.Is(err, errUnknownKey) {
		t.Errorf("kid absent from keys fetched after its token was issued = %v; want errUnknownKey", err)
	}
	clk.t = clk.t.Add(5 * time.Second)
	if _, err := ks.VerifySignature(ctx, k2.signAt(t, clk.t.Add(-5*time.Second))); err != nil {
		t.Errorf("new kid once a fetch is allowed = %v; want verified", err)
	}
}

// TestDiscoveryErrorHoldsNoBody: a discovery document answered non-200
// is reported by its status; the answer's body, which go-oidc puts in
// its error, reaches no detail.
func TestDiscoveryErrorHoldsNoBody(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		want   string
	}{
		{"non-200", func(w http.ResponseWriter) { http.Error(w, "body-of-the-answer", http.StatusBadGateway) }, "502"},
		// Statuses Go's client takes but has no text for.
		{"600", func(w http.ResponseWriter) { w.WriteHeader(600); _, _ = w.Write([]byte("body-of-the-answer")) }, "600"},
		{"999", func(w http.ResponseWriter) { w.WriteHeader(999); _, _ = w.Write([]byte("body-of-the-answer")) }, "999"},
		{"issuer-mismatch", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"issuer":"body-of-the-answer","jwks_uri":"https://x/keys"}`))
		}, "another issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tc.answer(w) }))
			t.Cleanup(srv.Close)
			tr := &http.Transport{}
			t.Cleanup(tr.CloseIdleConnections)
			p := newIdP(IdPConfig{Name: "x", Issuer: srv.URL}, &http.Client{Transport: tr}, time.Now, time.Second, 1)
			_, err := p.ensure(context.Background())
			if err == nil || strings.Contains(err.Error(), "body-of-the-answer") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("discovery error = %v; want %q and nothing of the body", err, tc.want)
			}
		})
	}
}

// TestWaitedFetchStartedBeforeTokenNotAVerdict: a token that waits for
// a fetch already in flight, started before the token was issued (by its
// iat), is not judged by that fetch's keys: the IdP may have published
// its kid after the fetch read the set (a rotation), so the token is
// errKeysFetch, not refused for an unknown kid.
func TestWaitedFetchStartedBeforeTokenNotAVerdict(t *testing.T) {
	k1, k2 := newTestKey(t, "k1"), newTestKey(t, "k2")
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k1.public()}} // the set as the fetch read it
		if n.Add(1) == 2 {
			arrived <- struct{}{}
			<-release
		}
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	ks, clk := newTestKeySet(t, srv.URL)
	ctx := context.Background()
	if _, err := ks.VerifySignature(ctx, k1.signAt(t, clk.t)); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(6 * time.Second) // past keys_min_refresh
	junk := newTestKey(t, "junk").signAt(t, clk.t)
	go func() { _, _ = ks.VerifySignature(ctx, junk) }() // starts fetch F
	<-arrived
	tok := k2.signAt(t, clk.t.Add(time.Second)) // the IdP rotated; issued after F started
	res := make(chan error, 1)
	go func() { _, err := ks.VerifySignature(ctx, tok); res <- err }()
	time.Sleep(200 * time.Millisecond) // the token now waits for F
	close(release)
	if err := <-res; !errors.Is(err, errKeysFetch) {
		t.Errorf("a token issued after the fetch it waited for started = %v; want errKeysFetch (not judged)", err)
	}
}
