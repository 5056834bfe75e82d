package identity

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/agentgw/agentgw/subjects/reason"
	"github.com/nats-io/nkeys"
)

// Verifier defaults.
const (
	DefaultSkew        = 30 * time.Second
	DefaultMaxLifetime = time.Hour
	DefaultCacheSize   = 4096
)

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Audience is this gateway's audience; a credential's aud must equal
	// it exactly. Required.
	Audience string
	// Skew is the clock skew tolerated on exp, nbf and iat. Zero means
	// none; negative or over 10 minutes is invalid.
	Skew time.Duration
	// MaxLifetime caps exp - max(iat, nbf). Zero means
	// DefaultMaxLifetime (1 h); negative is invalid.
	MaxLifetime time.Duration
	// Trust maps a tenant to the public 'A' keys of the issuers that sign
	// credentials for it. An issuer trusted for one tenant is untrusted
	// for every other. Nil or empty trusts no one.
	Trust map[string][]string
	// CacheSize bounds the cache of signature-verified claims, in
	// entries. Zero means DefaultCacheSize; negative disables the cache.
	CacheSize int
}

// DefaultVerifierConfig returns a config with the default skew, maximum
// lifetime and cache size, and no audience or trust.
func DefaultVerifierConfig() VerifierConfig {
	return VerifierConfig{Skew: DefaultSkew, MaxLifetime: DefaultMaxLifetime, CacheSize: DefaultCacheSize}
}

// Validate reports every problem in c at once.
func (c VerifierConfig) Validate() error {
	var errs []error
	if c.Audience == "" {
		errs = append(errs, errors.New("identity: verifier: audience is required"))
	}
	if c.Skew < 0 || c.Skew > 10*time.Minute {
		errs = append(errs, fmt.Errorf("identity: verifier: skew %v outside [0, 10m]", c.Skew))
	}
	if c.MaxLifetime < 0 {
		errs = append(errs, fmt.Errorf("identity: verifier: negative max lifetime %v", c.MaxLifetime))
	}
	if err := ValidateTrust(c.Trust); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ValidateTrust reports every tenant that is not a tenant token and every
// issuer that is not a public account ('A') nkey.
func ValidateTrust(trust map[string][]string) error {
	var errs []error
	for tenant, issuers := range trust {
		if !ValidTenant(tenant) {
			errs = append(errs, fmt.Errorf("identity: trust: tenant %q is not [a-z0-9_-]{1,64}", tenant))
		}
		for _, iss := range issuers {
			if !isPublic(iss, nkeys.PrefixByteAccount) {
				errs = append(errs, fmt.Errorf("identity: trust: tenant %q: issuer %q is not a public account nkey", tenant, iss))
			}
		}
	}
	return errors.Join(errs...)
}

// Revocations is the set of revoked credential ids (jti) and agent keys.
// It is safe for concurrent use, its zero value is an empty set, and
// changes take effect on the next Verify of every Verifier sharing it,
// cached or not. Load a large list with Replace, not one Revoke at a time.
type Revocations struct {
	mu         sync.RWMutex
	jtis       map[string]struct{}
	keys       map[string]struct{}
	principals map[string]struct{}
	gen        atomic.Uint64 // changes counted (Generation)
}

// Generation counts the changes to the set. A caller that judged
// something under the set, and records its judgment later, compares the
// generation it read before judging with the one after recording: a
// change in between may have been checked against everything recorded
// before it, and missed what it recorded.
func (r *Revocations) Generation() uint64 { return r.gen.Load() }

// NewRevocations returns an empty set.
func NewRevocations() *Revocations {
	return &Revocations{jtis: map[string]struct{}{}, keys: map[string]struct{}{}}
}

// RevokeJTI revokes one credential by its jti.
func (r *Revocations) RevokeJTI(jti string) {
	r.mu.Lock()
	if r.jtis == nil {
		r.jtis = map[string]struct{}{}
	}
	r.jtis[jti] = struct{}{}
	r.gen.Add(1)
	r.mu.Unlock()
}

// RevokeKey revokes every credential whose subject is the public key pub.
func (r *Revocations) RevokeKey(pub string) {
	r.mu.Lock()
	if r.keys == nil {
		r.keys = map[string]struct{}{}
	}
	r.keys[pub] = struct{}{}
	r.gen.Add(1)
	r.mu.Unlock()
}

// Replace atomically swaps the revoked jtis and keys (for a reloaded
// revocation list); a jti or key not listed is no longer revoked. The
// revoked principals are swapped by ReplacePrincipals.
func (r *Revocations) Replace(jtis, keys []string) {
	j := make(map[string]struct{}, len(jtis))
	for _, s := range jtis {
		j[s] = struct{}{}
	}
	k := make(map[string]struct{}, len(keys))
	for _, s := range keys {
		k[s] = struct{}{}
	}
	r.mu.Lock()
	r.jtis, r.keys = j, k
	r.gen.Add(1)
	r.mu.Unlock()
}

// ScopedJTI is a revocation entry that names a credential id of one
// issuer: "<issuer A key>/<jti>" (a jti holds no '/'). A jti is the
// issuer's to write, so another tenant's issuer can write the same one;
// a bare jti entry revokes the id whoever issued it.
func ScopedJTI(issuer, jti string) string { return issuer + "/" + jti }

// ValidRevokedJTI reports whether j is a jti revocation entry: a
// credential id ([A-Za-z0-9._:-]{1,128}), bare or scoped to its issuer's
// account key (ScopedJTI).
func ValidRevokedJTI(j string) bool {
	if iss, id, scoped := strings.Cut(j, "/"); scoped {
		return isPublic(iss, nkeys.PrefixByteAccount) && isSafeID(id)
	}
	return isSafeID(j)
}

// ReplacePrincipals swaps the revoked principals (Credential.Principal,
// as the token exchange writes them: "<IdP issuer>#<IdP subject>"). A
// credential naming one, as its principal or among its actors, is
// revoked, and the exchange issues none for it.
func (r *Revocations) ReplacePrincipals(ps []string) {
	m := make(map[string]struct{}, len(ps))
	for _, p := range ps {
		m[p] = struct{}{}
	}
	r.mu.Lock()
	r.principals = m
	r.gen.Add(1)
	r.mu.Unlock()
}

// PrincipalRevoked reports whether principal, or one of actors, is a
// revoked principal.
func (r *Revocations) PrincipalRevoked(principal string, actors []string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if len(r.principals) == 0 {
		return false
	}
	if _, ok := r.principals[principal]; ok && principal != "" {
		return true
	}
	for _, a := range actors {
		if _, ok := r.principals[a]; ok {
			return true
		}
	}
	return false
}

// Revoked reports whether a credential of issuer with id jti, or subject,
// is revoked: the jti revoked bare or scoped to issuer (ScopedJTI).
func (r *Revocations) Revoked(issuer, jti, subject string) bool {
	r.mu.RLock()
	_, a := r.jtis[jti]
	_, b := r.keys[subject]
	c := false
	if issuer != "" && jti != "" {
		_, c = r.jtis[ScopedJTI(issuer, jti)]
	}
	r.mu.RUnlock()
	return a || b || c
}

// Verifier verifies agentgw credentials. It is safe for concurrent use.
//
// Decoding and the Ed25519 signature check run once per distinct token:
// the result is kept in a bounded cache keyed by the SHA-256 of the token
// bytes, evicting the oldest entry when full (FIFO). Trust, revocation,
// audience and every time rule run on every call, hit or miss, so a
// cached credential is denied the moment it is revoked, expires or loses
// its issuer's trust.
type Verifier struct {
	audience  string
	skew      time.Duration
	maxLife   time.Duration
	cacheSize int
	rev       *Revocations
	state     atomic.Pointer[trustState]
}

// trustState is swapped as a whole by SetTrust: trust and the cache that
// was filled under it.
type trustState struct {
	trust map[string]map[string]struct{}
	cache *fifoCache[[sha256.Size]byte, *Credential]
}

// NewVerifier returns a Verifier for cfg (see VerifierConfig.Validate for
// the errors) checking revocations against rev; a nil rev revokes nothing.
func NewVerifier(cfg VerifierConfig, rev *Revocations) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if rev == nil {
		rev = NewRevocations()
	}
	v := &Verifier{audience: cfg.Audience, skew: cfg.Skew, maxLife: cfg.MaxLifetime, cacheSize: cfg.CacheSize, rev: rev}
	v.SetTrust(cfg.Trust)
	return v, nil
}

// SetTrust atomically replaces the per-tenant issuer trust and empties
// the cache. Tenants or keys that ValidateTrust rejects can never match a
// credential, so they trust nothing (fail closed); validate before
// calling to report them.
func (v *Verifier) SetTrust(trust map[string][]string) {
	st := &trustState{trust: make(map[string]map[string]struct{}, len(trust))}
	for tenant, issuers := range trust {
		set := make(map[string]struct{}, len(issuers))
		for _, iss := range issuers {
			set[iss] = struct{}{}
		}
		st.trust[tenant] = set
	}
	if v.cacheSize > 0 {
		st.cache = newFIFOCache[[sha256.Size]byte, *Credential](v.cacheSize)
	}
	v.state.Store(st)
}

// Verify checks token at now and returns its credential, or a
// *reason.Denial with the first rule it breaks, in this order:
//
//   - MalformedCredential: not a compact JWT of at most MaxTokenSize bytes
//     with header exactly {typ JWT, alg ed25519-nkey}; claims that are not
//     strict JSON of the credential shape; claim type not
//     agentgw-credential or version not 2; a missing or ill-formed jti,
//     iss ('A' key), sub ('U' key), xkey ('X' key), tenant, iat or exp, or
//     exp not after iat and nbf; or a signature that does not verify.
//     A bad signature is reported as MalformedCredential, not
//     BadSignature: bad_signature means the envelope signature, and a
//     forged credential is simply not an agentgw credential.
//   - UntrustedIssuer: iss is not trusted for the credential's tenant
//     (checked before the signature, so untrusted junk costs no Ed25519
//     verify).
//   - Revoked: the jti or the subject key is revoked.
//   - WrongAudience: aud is not the configured audience.
//   - CredentialExpired: now > exp + skew.
//   - CredentialNotYetValid: now + skew < nbf, or now + skew < iat.
//   - CredentialTooLong: exp - max(iat, nbf) > MaxLifetime.
//
// It is VerifyUntimed, then CheckValidity at now. The returned Credential
// is the caller's own copy. Denial details name the credential by jti and
// never contain the token.
func (v *Verifier) Verify(token string, now time.Time) (*Credential, error) {
	c, err := v.VerifyUntimed(token)
	if err != nil {
		return nil, err
	}
	if err := v.CheckValidity(c, now); err != nil {
		return nil, err
	}
	return c, nil
}

// VerifyUntimed runs the rules of Verify that do not read the clock, up to
// WrongAudience (see Verify for the order and the denials), and returns
// the credential. The caller judges it at the instant it is used with
// CheckValidity, before relying on it: a caller that verifies ahead of
// that instant (the gateway verifies a batch while it waits for its
// decision) would otherwise judge its times too early. The returned
// Credential is the caller's own copy.
func (v *Verifier) VerifyUntimed(token string) (*Credential, error) {
	if token == "" {
		return nil, reason.Deny(reason.MalformedCredential, "empty credential")
	}
	if len(token) > MaxTokenSize {
		return nil, reason.Deny(reason.MalformedCredential, "credential of %d bytes exceeds %d", len(token), MaxTokenSize)
	}
	st := v.state.Load()
	var (
		key [sha256.Size]byte
		c   *Credential
		hit bool
		jwt *JWT
	)
	if st.cache != nil {
		// The bytes are only read: hashing a string without copying it.
		key = sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
		c, hit = st.cache.get(key)
	}
	if !hit {
		var err error
		if jwt, err = ParseJWT(token); err != nil {
			return nil, reason.Deny(reason.MalformedCredential, "%v", err)
		}
		if c, err = decodeCredential(jwt.Payload); err != nil {
			return nil, reason.Deny(reason.MalformedCredential, "%v", err)
		}
	}
	if _, ok := st.trust[c.Tenant][c.Issuer]; !ok {
		return nil, reason.Deny(reason.UntrustedIssuer, "jti %s: issuer %s is not trusted for tenant %s", c.ID, c.Issuer, c.Tenant)
	}
	if !hit {
		if !jwt.VerifySignature(c.Issuer, nkeys.PrefixByteAccount) {
			return nil, reason.Deny(reason.MalformedCredential, "jti %s: signature does not verify with issuer %s", c.ID, c.Issuer)
		}
		if st.cache != nil {
			st.cache.put(key, c)
		}
	}
	if err := v.admit(c); err != nil {
		return nil, err
	}
	out := *c
	out.Scopes = slices.Clip(slices.Clone(c.Scopes))
	out.Actors = slices.Clip(slices.Clone(c.Actors))
	return &out, nil
}

// Standing reports whether a credential verified earlier (named by its
// tenant, issuer, jti and subject key) would still pass the rules that
// can change after the fact: its issuer's trust for its tenant
// (UntrustedIssuer) and the revocation of its jti or subject key
// (Revoked). Time rules are not applied: the caller decides at which
// instant the credential was used. An empty issuer is never trusted.
func (v *Verifier) Standing(tenant, issuer, jti, subject string) error {
	if _, ok := v.state.Load().trust[tenant][issuer]; !ok || issuer == "" {
		return reason.Deny(reason.UntrustedIssuer, "jti %s: issuer %s is not trusted for tenant %s", jti, issuer, tenant)
	}
	if v.rev.Revoked(issuer, jti, subject) {
		return reason.Deny(reason.Revoked, "jti %s of subject %s is revoked", jti, subject)
	}
	return nil
}

// CredentialStanding is Standing for a credential at hand, which also
// names its principal and actors: a revoked principal revokes it too.
func (v *Verifier) CredentialStanding(c *Credential) error {
	if err := v.Standing(c.Tenant, c.Issuer, c.ID, c.Subject); err != nil {
		return err
	}
	return v.principalStanding(c)
}

// principalStanding denies c when it names a revoked principal, as its
// own or among its actors.
func (v *Verifier) principalStanding(c *Credential) error {
	if v.rev.PrincipalRevoked(c.Principal, c.Actors) {
		return reason.Deny(reason.Revoked, "jti %s: the principal it was issued for, or one of its actors, is revoked", c.ID)
	}
	return nil
}

// admit runs the rules that depend on the revocations and the config.
func (v *Verifier) admit(c *Credential) error {
	if v.rev.Revoked(c.Issuer, c.ID, c.Subject) {
		return reason.Deny(reason.Revoked, "jti %s of subject %s is revoked", c.ID, c.Subject)
	}
	if err := v.principalStanding(c); err != nil {
		return err
	}
	if c.Audience != v.audience {
		return reason.Deny(reason.WrongAudience, "jti %s: audience %s is not this gateway's", c.ID, safeText(c.Audience))
	}
	return nil
}

// CheckValidity runs the rules of Verify that follow WrongAudience on c, a
// credential VerifyUntimed returned, at now: CredentialExpired, then
// CredentialNotYetValid (the rules that read the clock), then
// CredentialTooLong, in Verify's order. Errors are *reason.Denial.
func (v *Verifier) CheckValidity(c *Credential, now time.Time) error {
	if now.After(c.Expires.Add(v.skew)) {
		return reason.Deny(reason.CredentialExpired, "jti %s expired at %s", c.ID, c.Expires.Format(time.RFC3339))
	}
	start := c.IssuedAt
	if c.NotBefore.After(start) {
		start = c.NotBefore
	}
	if now.Add(v.skew).Before(start) {
		return reason.Deny(reason.CredentialNotYetValid, "jti %s is not valid before %s", c.ID, start.Format(time.RFC3339))
	}
	if life := c.Expires.Sub(start); life > v.maxLife {
		return reason.Deny(reason.CredentialTooLong, "jti %s lifetime %s exceeds %s", c.ID, life, v.maxLife)
	}
	return nil
}

// cached reports the number of cached credentials (tests).
func (v *Verifier) cached() int {
	if st := v.state.Load(); st.cache != nil {
		return st.cache.len()
	}
	return 0
}
