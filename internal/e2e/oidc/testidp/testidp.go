// Package testidp runs a real OpenID provider on loopback for tests: the
// zitadel/oidc OP (github.com/zitadel/oidc/v3/pkg/op) over its example
// in-memory storage, with four test-only additions: service clients for
// the client-credentials grant that receive JWT access tokens carrying
// the claims the test chooses, signing-key rotation (RS256, ES256,
// EdDSA), signing of hand-crafted tokens with the current key, and
// outages: a JWKS endpoint that fails on demand (BreakKeys) and a
// provider that stops listening (Stop).
//
// Everything else — discovery, the JWKS endpoint, client authentication,
// the token endpoint, JWT creation and signing — is the library's own
// code path. Test-only: never import it from production code.
package testidp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// IdP is a running provider. Its methods are safe for concurrent use.
type IdP struct {
	// Issuer is the provider's issuer URL: http://127.0.0.1:<port>.
	Issuer string

	st   *store
	srv  *http.Server
	stop func()
	quit chan struct{} // closed by Stop: hanging JWKS answers end

	mu        sync.Mutex
	keysPath  string
	keysFault KeysFault
	keysGets  int
}

// KeysFault is how the JWKS endpoint misbehaves (BreakKeys).
type KeysFault int

const (
	// KeysServed: the library's own JWKS answer.
	KeysServed KeysFault = iota
	// KeysError: 500 Internal Server Error.
	KeysError
	// KeysGarbage: 200 with a body that is not a JSON key set.
	KeysGarbage
	// KeysHang: no answer until the client gives up.
	KeysHang
)

// Client is a service client for the client-credentials grant.
type Client struct {
	ID       string
	Secret   string
	Audience []string       // the access token's aud
	Claims   map[string]any // extra claims of its access tokens
}

// Start runs a provider on 127.0.0.1 with an RS256 key and stops it when
// the test ends.
func Start(t testing.TB) *IdP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testidp: listen: %v", err)
	}
	issuer := "http://" + ln.Addr().String()
	st := &store{Storage: storage.NewStorage(storage.NewUserStore(issuer)), clients: map[string]*Client{}}
	if err := st.Rotate(jose.RS256); err != nil {
		t.Fatal(err)
	}
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:                sha256.Sum256([]byte("testidp " + issuer)),
		DefaultLogoutRedirectURI: "/logged-out",
		CodeMethodS256:           true,
	}, st, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		t.Fatalf("testidp: provider: %v", err)
	}
	p := &IdP{Issuer: issuer, st: st, keysPath: provider.KeysEndpoint().Relative(), quit: make(chan struct{})}
	p.srv = &http.Server{Handler: p.faults(provider), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.srv.Serve(ln)
	}()
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			close(p.quit)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = p.srv.Shutdown(ctx)
			<-done
		})
	}
	t.Cleanup(p.stop)
	return p
}

// Stop shuts the provider down and closes its listener: every endpoint,
// discovery included, refuses connections from then on.
func (p *IdP) Stop() { p.stop() }

// BreakKeys makes the JWKS endpoint (the jwks_uri of discovery) answer
// with f; KeysServed restores it. Every other endpoint keeps working.
func (p *IdP) BreakKeys(f KeysFault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keysFault = f
}

// KeysFetches returns how many requests the JWKS endpoint has had,
// answered or failed.
func (p *IdP) KeysFetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keysGets
}

// faults wraps the provider's handler with the JWKS fault, if any.
func (p *IdP) faults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != p.keysPath {
			next.ServeHTTP(w, r)
			return
		}
		p.mu.Lock()
		f := p.keysFault
		p.keysGets++
		p.mu.Unlock()
		switch f {
		case KeysError:
			http.Error(w, "jwks unavailable", http.StatusInternalServerError)
		case KeysGarbage:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `<html>maintenance</html>`)
		case KeysHang:
			select {
			case <-r.Context().Done():
			case <-p.quit:
			}
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// AddClient registers (or replaces) a service client.
func (p *IdP) AddClient(c Client) {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	cc := c
	p.st.clients[c.ID] = &cc
}

// Rotate replaces the signing key with a new one for alg (RS256, ES256
// or EdDSA). The old key leaves the JWKS at once.
func (p *IdP) Rotate(alg jose.SignatureAlgorithm) error { return p.st.Rotate(alg) }

// KeyID returns the current signing key's kid.
func (p *IdP) KeyID() string {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	return p.st.key.id
}

// PublicKeyPEMish returns bytes an attacker can know about the current
// key: the JWKS JSON of its public half (used as an HMAC secret in the
// HS256 confusion test).
func (p *IdP) PublicJWK() []byte {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	b, _ := json.Marshal(jose.JSONWebKey{Key: p.st.key.pub, KeyID: p.st.key.id, Algorithm: string(p.st.key.alg), Use: "sig"})
	return b
}

// PublicKey returns the current key's public half.
func (p *IdP) PublicKey() crypto.PublicKey {
	p.st.mu.Lock()
	defer p.st.mu.Unlock()
	return p.st.key.pub
}

// Token runs the client-credentials grant over HTTP against the token
// endpoint (found through discovery) and returns the access token.
func (p *IdP) Token(ctx context.Context, clientID, secret string, scopes ...string) (string, error) {
	var disc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := getJSON(ctx, p.Issuer+oidc.DiscoveryEndpoint, &disc); err != nil {
		return "", err
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, disc.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("testidp: token endpoint: %s: %s", resp.Status, body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return "", errors.New("testidp: no access token in the response")
	}
	return tr.AccessToken, nil
}

// Sign signs claims with the current key (kid and alg in the header) and
// returns the compact JWT: for tokens the OP would not issue itself
// (expired, act chains).
func (p *IdP) Sign(claims map[string]any) (string, error) {
	p.st.mu.Lock()
	k := p.st.key
	p.st.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.id}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("testidp: GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}

// store is the example storage with rotating keys and claim-bearing
// service clients.
type store struct {
	*storage.Storage

	mu      sync.Mutex
	key     *signingKey
	n       int
	clients map[string]*Client
}

type signingKey struct {
	id   string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
	pub  crypto.PublicKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k *signingKey) Algorithm() jose.SignatureAlgorithm          { return k.alg }
func (k *signingKey) Key() any                                    { return k.priv }
func (k *signingKey) ID() string                                  { return k.id }
func (k *signingKey) Use() string                                 { return "sig" }

type publicKey struct{ *signingKey }

func (k publicKey) Key() any { return k.pub }

func (s *store) Rotate(alg jose.SignatureAlgorithm) error {
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return fmt.Errorf("testidp: unsupported alg %s", alg)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	s.key = &signingKey{id: fmt.Sprintf("k%d-%s", s.n, strings.ToLower(string(alg))), alg: alg, priv: priv, pub: priv.Public()}
	return nil
}

func (s *store) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key, nil
}

func (s *store) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []jose.SignatureAlgorithm{s.key.alg}, nil
}

func (s *store) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return []op.Key{publicKey{s.key}}, nil
}

func (s *store) client(id string) *Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[id]
}

func (s *store) ClientCredentials(ctx context.Context, clientID, clientSecret string) (op.Client, error) {
	c := s.client(clientID)
	if c == nil || c.Secret != clientSecret {
		return nil, errors.New("wrong client or secret")
	}
	return serviceClient{c}, nil
}

func (s *store) ClientCredentialsTokenRequest(ctx context.Context, clientID string, scopes []string) (op.TokenRequest, error) {
	c := s.client(clientID)
	if c == nil {
		return nil, errors.New("wrong client")
	}
	return &oidc.JWTTokenRequest{Subject: c.ID, Audience: c.Audience, Scopes: scopes}, nil
}

func (s *store) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	if c := s.client(clientID); c != nil {
		return c.Claims, nil
	}
	return s.Storage.GetPrivateClaimsFromScopes(ctx, userID, clientID, scopes)
}

// serviceClient is a confidential client allowed the client-credentials
// grant only, receiving JWT access tokens.
type serviceClient struct{ c *Client }

func (c serviceClient) GetID() string                      { return c.c.ID }
func (serviceClient) RedirectURIs() []string               { return nil }
func (serviceClient) PostLogoutRedirectURIs() []string     { return nil }
func (serviceClient) ApplicationType() op.ApplicationType  { return op.ApplicationTypeWeb }
func (serviceClient) AuthMethod() oidc.AuthMethod          { return oidc.AuthMethodBasic }
func (serviceClient) ResponseTypes() []oidc.ResponseType   { return nil }
func (serviceClient) LoginURL(string) string               { return "" }
func (serviceClient) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeJWT }
func (serviceClient) IDTokenLifetime() time.Duration       { return 5 * time.Minute }
func (serviceClient) DevMode() bool                        { return false }
func (serviceClient) IsScopeAllowed(string) bool           { return true }
func (serviceClient) IDTokenUserinfoClaimsAssertion() bool { return false }
func (serviceClient) ClockSkew() time.Duration             { return 0 }
func (serviceClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeClientCredentials}
}
func (serviceClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (serviceClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
