package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// maxJWKSBytes bounds a JWKS (or discovery) document.
const maxJWKSBytes = 1 << 20

// Key-set errors. errUnknownKey: the keys were obtained and none has the
// token's kid, a verdict on the token (exchange_token_invalid).
// errKeysFetch: the keys needed could not be obtained, so the token was
// not checked (exchange_idp_unavailable). go-oidc wraps what
// VerifySignature returns with %v, so callers read it from the KeySet
// (verifyKeys), not from the verifier's error.
var (
	errUnknownKey = errors.New("exchange: no current IdP signing key has the token's kid")
	errKeysFetch  = errors.New("exchange: IdP signing keys unavailable")
)

// keySet is an oidc.KeySet over an IdP's jwks_uri with a bounded cache.
//
// It replaces go-oidc's RemoteKeySet for two reasons. RemoteKeySet keeps
// keys until a token with an unknown kid shows up, so a key the IdP has
// withdrawn stays trusted for as long as nobody presents a new one; here
// keys older than maxAge are fetched again before use. And RemoteKeySet
// fetches on every unknown kid, so any caller of the (unauthenticated)
// exchange subject could make the gateway hit the IdP once per request;
// here an unknown kid causes at most one fetch per minRefresh, and
// because every fetch loads the whole set, a legitimate new kid is never
// starved by junk kids: the next fetch, whoever caused it, brings it in.
//
// Algorithm checks stay with go-oidc's verifier (it parses with the
// allowlist before calling VerifySignature); this type re-parses with
// the same allowlist and also refuses a key whose own "alg" differs from
// the token's. It is safe for concurrent use.
type keySet struct {
	url        string
	client     *http.Client
	now        func() time.Time
	maxAge     time.Duration
	minRefresh time.Duration
	skew       time.Duration // the IdP's clock may be this far behind ours
	algs       []jose.SignatureAlgorithm

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // when keys were fetched; zero: never
	started time.Time // when the fetch that brought them started
	tried   time.Time // last fetch attempt, success or not
	// fetching is closed when the fetch in flight ends; nil when none.
	fetching chan struct{}
	lastErr  error
}

func newKeySet(url string, client *http.Client, now func() time.Time, maxAge, minRefresh, skew time.Duration, algs []string) *keySet {
	ks := &keySet{url: url, client: client, now: now, maxAge: maxAge, minRefresh: minRefresh, skew: skew}
	for _, a := range algs {
		ks.algs = append(ks.algs, jose.SignatureAlgorithm(a))
	}
	return ks
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, token string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(token, k.algs)
	if err != nil {
		return nil, fmt.Errorf("exchange: token is not a compact JWS with an allowed algorithm: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("exchange: token must have exactly one signature")
	}
	hdr := jws.Signatures[0].Header
	kid, alg := hdr.KeyID, hdr.Algorithm

	keys, from, err := k.current(ctx, false)
	if err != nil {
		return nil, err
	}
	if !hasKid(keys, kid) {
		own := from.own // keys this call fetched, or newer ones
		if keys, from, err = k.current(ctx, true); err != nil {
			return nil, err
		}
		from.own = from.own || own
	}
	for i := range keys {
		key := &keys[i]
		if kid != "" && key.KeyID != kid {
			continue
		}
		if key.Algorithm != "" && key.Algorithm != alg {
			continue
		}
		if payload, err := jws.Verify(key); err == nil {
			return payload, nil
		}
	}
	if !hasKid(keys, kid) {
		// A kid missing from keys fetched after the token was issued is
		// a verdict on the token. A fetch this call made started after
		// the token was in hand. Otherwise (cached keys, or a fetch that
		// was in flight when the call came and that it waited for) the
		// token's iat says: a token issued before the fetch started had
		// its key published then, if ever. One that may have been issued
		// after (by the IdP's clock, within the skew) may be signed with
		// a key the IdP published since, a rotation, and no new fetch is
		// allowed within keys_min_refresh, so it is not judged yet.
		if !from.own && issuedAfter(jws, from.started.Add(-k.skew)) {
			return nil, fmt.Errorf("%w: kid not among the keys fetched before the token was issued; no new fetch within keys_min_refresh", errKeysFetch)
		}
		return nil, errUnknownKey
	}
	return nil, errors.New("exchange: token signature does not verify with the IdP key")
}

// issuedAfter reports whether the token may have been issued after t:
// its (unverified) iat, a whole second, is not before t's second. It only
// chooses between two refusals, so an iat the caller invents buys
// nothing.
func issuedAfter(jws *jose.JSONWebSignature, t time.Time) bool {
	var c struct {
		IssuedAt any `json:"iat"`
	}
	if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c) != nil {
		return false
	}
	iat, ok := numericDate(c.IssuedAt)
	return ok && iat.Add(time.Second).After(t)
}

func hasKid(keys []jose.JSONWebKey, kid string) bool {
	if kid == "" {
		return len(keys) > 0
	}
	return slices.ContainsFunc(keys, func(k jose.JSONWebKey) bool { return k.KeyID == kid })
}

// current returns the cached keys, fetching first when there are none,
// they are older than maxAge, or unknown is set (a token named a kid not
// in the cache) and the last attempt is at least minRefresh old.
// Concurrent callers share one fetch. Its errors wrap errKeysFetch: with
// unknown set that includes a last attempt that failed, since the kid may
// be in the key set that attempt did not obtain.
//
// from says whether the call fetched the keys itself, and when the
// fetch that brought them started.
func (k *keySet) current(ctx context.Context, unknown bool) (_ []jose.JSONWebKey, from keysFrom, _ error) {
	refresh := unknown
	for {
		k.mu.Lock()
		now := k.now()
		stale := k.fetched.IsZero() || now.Sub(k.fetched) >= k.maxAge
		if ch := k.fetching; ch != nil && (stale || unknown) {
			// A fetch is in flight: it is the one this call needs, even
			// though it makes a new attempt too early to start.
			k.mu.Unlock()
			select {
			case <-ch:
				unknown = false // that fetch was the refresh we wanted
				continue
			case <-ctx.Done():
				return nil, keysFrom{}, fmt.Errorf("%w: waiting for a fetch: %w", errKeysFetch, ctx.Err())
			}
		}
		canRetry := k.tried.IsZero() || now.Sub(k.tried) >= k.minRefresh
		need := (stale || unknown) && canRetry
		if !need {
			keys, fetched, started, lastErr := k.keys, k.fetched, k.started, k.lastErr
			k.mu.Unlock()
			if stale && (fetched.IsZero() || now.Sub(fetched) >= k.maxAge) {
				// Expired keys are never used, even when a refetch is
				// rate-limited.
				if lastErr == nil {
					lastErr = errors.New("keys expired")
				}
				return nil, keysFrom{}, fmt.Errorf("%w: %v", errKeysFetch, lastErr)
			}
			if refresh && lastErr != nil {
				// The kid is not cached and the latest fetch, which could
				// have brought it, failed: the token cannot be judged.
				return nil, keysFrom{}, fmt.Errorf("%w: %v", errKeysFetch, lastErr)
			}
			// Cached, or waited for: the keys are the last successful
			// fetch's, and started is theirs.
			return keys, keysFrom{started: started}, nil
		}
		ch := make(chan struct{})
		k.fetching, k.tried = ch, now
		k.mu.Unlock()
		started := now

		keys, err := k.fetch(ctx)

		k.mu.Lock()
		if err == nil {
			k.keys, k.fetched, k.started, k.lastErr = keys, k.now(), started, nil
		} else {
			k.lastErr = err
		}
		k.fetching = nil
		close(ch)
		k.mu.Unlock()
		if err != nil {
			return nil, keysFrom{}, fmt.Errorf("%w: %v", errKeysFetch, err)
		}
		return keys, keysFrom{own: true, started: started}, nil
	}
}

// keysFrom says where the keys current returns come from.
type keysFrom struct {
	own     bool      // fetched by the call itself
	started time.Time // when the fetch that brought the keys started, read with them
}

// fetch GETs the JWKS. Keys whose alg is outside the allowlist, whose use
// is not "sig", that are not public, or whose type go-jose does not know
// are skipped, as RFC 7517 §5 asks.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	body, err := httpGet(ctx, k.client, k.url)
	if err != nil {
		return nil, err
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("GET %s: not a JSON key set", k.url)
	}
	var out []jose.JSONWebKey
	for _, r := range raw.Keys {
		var meta struct {
			Alg string `json:"alg"`
			Use string `json:"use"`
		}
		if json.Unmarshal(r, &meta) != nil {
			continue
		}
		if meta.Alg != "" && !slices.Contains(k.algs, jose.SignatureAlgorithm(meta.Alg)) {
			continue
		}
		if meta.Use != "" && meta.Use != "sig" {
			continue
		}
		var key jose.JSONWebKey
		if err := json.Unmarshal(r, &key); err != nil || !key.Valid() || !key.IsPublic() {
			continue
		}
		out = append(out, key)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("GET %s: no usable signing key", k.url)
	}
	return out, nil
}

// httpGet fetches u with ctx, refusing a non-200 answer and a body
// larger than maxJWKSBytes. Errors name u (checkURL: no credentials, no
// query) once, and never quote the body.
func httpGet(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			if err = ue.Err; ue.Timeout() { // ue repeats the URL
				err = fmt.Errorf("timed out: %w", err)
			}
		}
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("GET %s: body over %d bytes", u, maxJWKSBytes)
	}
	return body, nil
}
