package exchange

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/exchange/protocol"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
)

// Defaults applied by Start to zero fields.
const (
	DefaultQueueGroup     = "agentgw-exchange"
	DefaultCredentialTTL  = 15 * time.Minute
	DefaultSkew           = 30 * time.Second
	DefaultProofMaxAge    = time.Minute
	DefaultReplayCapacity = 100_000
	DefaultMaxConcurrent  = 16
	DefaultHTTPTimeout    = 10 * time.Second
	DefaultKeysMaxAge     = 10 * time.Minute
	DefaultKeysMinRefresh = 5 * time.Second
)

// Algorithms is the signing-algorithm allowlist for IdP tokens. Anything
// else — "none", every HMAC algorithm, RSA PKCS#1 with SHA-384/512,
// RSA-PSS — is refused before any key is looked at.
var Algorithms = []string{"RS256", "ES256", "EdDSA"}

// Config configures the exchange service. It is decoded strictly as the
// `exchange:` section of the gateway config (unknown fields are errors).
// Durations are Go durations; a zero field takes the default named.
type Config struct {
	// Subject the service answers on. Zero: protocol.DefaultSubject
	// ("agentgw.exchange"). Agents need publish permission on it.
	Subject string `yaml:"subject"`
	// QueueGroup spreads requests over gateway instances. Zero:
	// "agentgw-exchange".
	QueueGroup string `yaml:"queue_group"`
	// Audience is the gateway audience written into credentials (aud) and
	// required in requests. Zero: the hosting gateway sets its own; Start
	// refuses an empty one.
	Audience string `yaml:"audience"`
	// CredentialTTL is the credential lifetime; it is further capped by
	// the IdP token's own exp. Zero: 15m. Keep it within the gateway's
	// limits.max_credential_lifetime.
	CredentialTTL time.Duration `yaml:"credential_ttl"`
	// Skew is the clock skew tolerated on IdP token times and on a
	// request's issued_at. Zero: 30s.
	Skew time.Duration `yaml:"skew"`
	// ProofMaxAge is how old a request's issued_at may be. Zero: 60s. The
	// replay set remembers a request id for ProofMaxAge + 2·Skew.
	ProofMaxAge time.Duration `yaml:"proof_max_age"`
	// ReplayCapacity bounds the replay set, in request ids. When it is
	// full of unexpired ids, new requests are refused (internal_error)
	// rather than forgetting one. One IdP identity (issuer and subject)
	// holds at most a 64th of it (at least 16 ids), so one identity's
	// requests, granted or not, cannot fill it. Zero: 100000.
	ReplayCapacity int `yaml:"replay_capacity"`
	// MaxConcurrent bounds the exchanges in flight per IdP (those past
	// the checks that need no network call); more for that IdP are
	// refused at once (exchange_idp_unavailable), so a slow IdP holds up
	// no other IdP's exchanges. Zero: 16.
	MaxConcurrent int `yaml:"max_concurrent"`
	// HTTPTimeout bounds one discovery or JWKS fetch. Zero: 10s.
	HTTPTimeout time.Duration `yaml:"http_timeout"`
	// IssuerSeeds maps a tenant to the seed file (SA…) of the issuer that
	// signs its exchanged credentials; LoadIssuers reads them. The
	// gateway must trust that issuer for the tenant.
	IssuerSeeds map[string]string `yaml:"issuer_seeds"`
	// IdPs are the trusted identity providers. At least one.
	IdPs []IdPConfig `yaml:"idps"`
}

// IdPConfig is one trusted OpenID provider and the rules that map its
// tokens' claims to a tenant and scopes.
type IdPConfig struct {
	// Name names the IdP in rule ids, logs and audit: [a-z0-9_-]{1,64}.
	Name string `yaml:"name"`
	// Issuer is the exact iss of its tokens; discovery is fetched from
	// Issuer + "/.well-known/openid-configuration". https, or http on a
	// loopback host only; no '#', so a credential's principal
	// "<issuer>#<subject>" names one issuer and one subject.
	Issuer string `yaml:"issuer"`
	// JWKSURL, when set, skips discovery. Same scheme rule as Issuer.
	JWKSURL string `yaml:"jwks_url"`
	// Audience must be one of the token's aud values. Required.
	Audience string `yaml:"audience"`
	// Algorithms narrows the allowlist (RS256, ES256, EdDSA). Zero: all
	// three.
	Algorithms []string `yaml:"algorithms"`
	// Tenants this IdP may speak for. Required: a token whose tenant is
	// not listed is refused (exchange_untrusted_idp).
	Tenants []string `yaml:"tenants"`
	// Tenant fixes the tenant of every token. Exactly one of Tenant and
	// TenantClaim.
	Tenant string `yaml:"tenant"`
	// TenantClaim names the claim (a dotted path) holding the tenant,
	// e.g. "org".
	TenantClaim string `yaml:"tenant_claim"`
	// TenantMap maps TenantClaim values to tenants. Zero: the value is
	// the tenant itself.
	TenantMap map[string]string `yaml:"tenant_map"`
	// RequiredClaims must be present and non-empty, besides iss, sub,
	// aud, exp and iat which always are. Present: false and 0 count, so
	// a claim such as email_verified is not required to be true by
	// naming it here.
	RequiredClaims []string `yaml:"required_claims"`
	// ServiceClaim names a claim copied into the credential's service
	// (it must be [A-Za-z0-9._:-]{1,128}). Zero: no service.
	ServiceClaim string `yaml:"service_claim"`
	// AllowAct accepts tokens that already carry an RFC 8693 act claim
	// (a delegated token). Zero: they are refused. See the package doc:
	// the credential names the token's sub as its principal and the
	// actors in nats.actors, and neither may approve its requests.
	AllowAct bool `yaml:"allow_act"`
	// MaxTokenAge refuses tokens whose iat is older. Zero: no limit
	// beyond exp.
	MaxTokenAge time.Duration `yaml:"max_token_age"`
	// KeysMaxAge is how long fetched signing keys are trusted before the
	// JWKS is fetched again, so a key the IdP removed is refused at most
	// this long after. Zero: 10m.
	KeysMaxAge time.Duration `yaml:"keys_max_age"`
	// KeysMinRefresh is the least time between two JWKS fetches caused
	// by an unknown kid, at least 1s. Zero: 5s.
	KeysMinRefresh time.Duration `yaml:"keys_min_refresh"`
	// Rules map claims to scopes. A token is granted the union of the
	// scopes of the rules it matches, and nothing else.
	Rules []Rule `yaml:"rules"`
}

// Rule grants Scopes when the claim at Claim (a dotted path such as
// "groups" or "realm_access.roles") matches. Exactly one of Contains and
// Equals: Contains matches a string element of an array claim, or one
// word of a string claim split at its spaces (U+0020 only, the OAuth
// "scope" form; other white space is part of a word). A free-text claim
// such as "Domain Admins" matches "Admins" too, so point Contains at an
// array claim or a scope claim. Equals matches a string claim exactly.
// Tenants, when set, restricts the rule to those tenants.
type Rule struct {
	ID       string   `yaml:"id"`
	Claim    string   `yaml:"claim"`
	Contains string   `yaml:"contains"`
	Equals   string   `yaml:"equals"`
	Tenants  []string `yaml:"tenants"`
	Scopes   []string `yaml:"scopes"`
}

func (c Config) withDefaults() Config {
	if c.Subject == "" {
		c.Subject = protocol.DefaultSubject
	}
	if c.QueueGroup == "" {
		c.QueueGroup = DefaultQueueGroup
	}
	if c.CredentialTTL == 0 {
		c.CredentialTTL = DefaultCredentialTTL
	}
	if c.Skew == 0 {
		c.Skew = DefaultSkew
	}
	if c.ProofMaxAge == 0 {
		c.ProofMaxAge = DefaultProofMaxAge
	}
	if c.ReplayCapacity == 0 {
		c.ReplayCapacity = DefaultReplayCapacity
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = DefaultHTTPTimeout
	}
	c.IdPs = slices.Clone(c.IdPs)
	for i := range c.IdPs {
		p := &c.IdPs[i]
		if len(p.Algorithms) == 0 {
			p.Algorithms = Algorithms
		}
		if p.KeysMaxAge == 0 {
			p.KeysMaxAge = DefaultKeysMaxAge
		}
		if p.KeysMinRefresh == 0 {
			p.KeysMinRefresh = DefaultKeysMinRefresh
		}
	}
	return c
}

// Validate reports every problem in c at once. An empty Audience is not
// a problem here (the host fills it); Start checks it.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("exchange: "+format, args...)) }
	if c.Subject != "" && !subjects.ValidLiteral(c.Subject) {
		add("subject %q is not a literal NATS subject", c.Subject)
	} else if subjects.Stored(c.Subject) {
		add("subject %q is stored by a gateway stream: every request, IdP token included, would be kept", c.Subject)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"credential_ttl", c.CredentialTTL}, {"proof_max_age", c.ProofMaxAge}, {"http_timeout", c.HTTPTimeout}} {
		if d.v < 0 || (d.v > 0 && d.v < time.Second) {
			add("%s %v is negative or under 1s", d.name, d.v)
		}
	}
	if c.Skew < 0 || c.Skew > 10*time.Minute {
		add("skew %v outside [0, 10m]", c.Skew)
	}
	if c.ReplayCapacity < 0 || c.MaxConcurrent < 0 {
		add("replay_capacity and max_concurrent must not be negative")
	}
	for tenant, path := range c.IssuerSeeds {
		if !identity.ValidTenant(tenant) {
			add("issuer_seeds: tenant %q is not [a-z0-9_-]{1,64}", tenant)
		}
		if path == "" {
			add("issuer_seeds: tenant %q: empty path", tenant)
		}
	}
	if len(c.IdPs) == 0 {
		add("at least one idp is required")
	}
	names := map[string]bool{}
	issuers := map[string]bool{}
	for i, p := range c.IdPs {
		for _, err := range p.validate() {
			add("idps[%d] (%s): %v", i, p.Name, err)
		}
		if names[p.Name] {
			add("idps[%d]: duplicate name %q", i, p.Name)
		}
		if issuers[p.Issuer] {
			add("idps[%d]: duplicate issuer %s: one config per issuer", i, shownURL(p.Issuer))
		}
		names[p.Name], issuers[p.Issuer] = true, true
		for _, t := range p.Tenants {
			if c.IssuerSeeds != nil && c.IssuerSeeds[t] == "" {
				add("idps[%d] (%s): tenant %q has no issuer_seeds entry", i, p.Name, t)
			}
		}
	}
	return errors.Join(errs...)
}

func (p *IdPConfig) validate() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !validName(p.Name) {
		add("name is not [a-z0-9_-]{1,64}")
	}
	if err := checkURL(p.Issuer); err != nil {
		add("issuer: %v", err)
	} else if len(p.Issuer) > 512 {
		add("issuer longer than 512 bytes")
	} else if strings.Contains(p.Issuer, "#") {
		add("issuer %q holds '#', which separates issuer and subject in a credential's principal", p.Issuer)
	}
	if p.JWKSURL != "" {
		if err := checkURL(p.JWKSURL); err != nil {
			add("jwks_url: %v", err)
		}
	}
	if p.Audience == "" {
		add("audience is required")
	}
	for _, a := range p.Algorithms {
		if !slices.Contains(Algorithms, a) {
			add("algorithm %q is not one of %v", a, Algorithms)
		}
	}
	if len(p.Tenants) == 0 {
		add("tenants is required: the tenants this IdP may speak for")
	}
	for _, t := range p.Tenants {
		if !identity.ValidTenant(t) {
			add("tenant %q is not [a-z0-9_-]{1,64}", t)
		}
	}
	switch {
	case (p.Tenant == "") == (p.TenantClaim == ""):
		add("exactly one of tenant and tenant_claim is required")
	case p.Tenant != "" && !slices.Contains(p.Tenants, p.Tenant):
		add("tenant %q is not in tenants", p.Tenant)
	case p.TenantClaim != "" && !validClaimPath(p.TenantClaim):
		add("tenant_claim %q is not a claim path", p.TenantClaim)
	}
	for v, t := range p.TenantMap {
		if !slices.Contains(p.Tenants, t) {
			add("tenant_map: %q maps to %q, which is not in tenants", v, t)
		}
	}
	if p.TenantMap != nil && p.TenantClaim == "" {
		add("tenant_map needs tenant_claim")
	}
	for _, c := range p.RequiredClaims {
		if !validClaimPath(c) {
			add("required claim %q is not a claim path", c)
		}
	}
	if p.ServiceClaim != "" && !validClaimPath(p.ServiceClaim) {
		add("service_claim %q is not a claim path", p.ServiceClaim)
	}
	if p.MaxTokenAge < 0 || p.KeysMaxAge < 0 || p.KeysMinRefresh < 0 {
		add("max_token_age, keys_max_age and keys_min_refresh must not be negative")
	}
	if p.KeysMinRefresh > 0 && p.KeysMinRefresh < time.Second {
		// Below that, tokens naming junk kids would make the gateway
		// fetch the IdP's keys for nearly every request.
		add("keys_min_refresh %v is under 1s", p.KeysMinRefresh)
	}
	if len(p.Rules) == 0 {
		add("at least one rule is required")
	}
	ids := map[string]bool{}
	for j, r := range p.Rules {
		if !validName(r.ID) {
			add("rules[%d]: id is not [a-z0-9_-]{1,64}", j)
		}
		if ids[r.ID] {
			add("rules[%d]: duplicate id %q", j, r.ID)
		}
		ids[r.ID] = true
		if !validClaimPath(r.Claim) {
			add("rules[%d]: claim %q is not a claim path", j, r.Claim)
		}
		if (r.Contains == "") == (r.Equals == "") {
			add("rules[%d]: exactly one of contains and equals is required", j)
		}
		if len(r.Scopes) == 0 {
			add("rules[%d]: scopes is required", j)
		}
		for _, s := range r.Scopes {
			if !validScope(s) {
				add("rules[%d]: scope %q is not a scope", j, s)
			}
		}
		for _, t := range r.Tenants {
			if !slices.Contains(p.Tenants, t) {
				add("rules[%d]: tenant %q is not in the IdP's tenants", j, t)
			}
		}
	}
	// A token can match every rule that applies to its tenant, and is
	// then granted the union of their scopes: it must fit in one
	// credential.
	for _, t := range p.Tenants {
		union := map[string]bool{}
		for _, r := range p.Rules {
			if len(r.Tenants) == 0 || slices.Contains(r.Tenants, t) {
				for _, s := range r.Scopes {
					union[s] = true
				}
			}
		}
		if len(union) > maxScopes {
			add("tenant %q: the rules grant %d distinct scopes together; a credential holds at most %d", t, len(union), maxScopes)
		}
	}
	return errs
}

// LoadIssuers reads the issuer seed files of cfg.IssuerSeeds; resolve maps
// a configured path to the file to open (the gateway's Config.Path, or
// nil for paths as written). Every key must be an account ('A') key.
func LoadIssuers(cfg Config, resolve func(string) string) (map[string]nkeys.KeyPair, error) {
	out := make(map[string]nkeys.KeyPair, len(cfg.IssuerSeeds))
	tenants := make([]string, 0, len(cfg.IssuerSeeds))
	for t := range cfg.IssuerSeeds {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	var errs []error
	for _, t := range tenants {
		path := cfg.IssuerSeeds[t]
		if resolve != nil {
			path = resolve(path)
		}
		kp, err := identity.ReadSeedFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("exchange: issuer seed for %s: %w", t, err))
			continue
		}
		if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicAccountKey(pub) {
			errs = append(errs, fmt.Errorf("exchange: issuer seed for %s is not an account ('SA') seed", t))
			continue
		}
		out[t] = kp
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validClaimPath: dot-separated names of [A-Za-z0-9_:-], at most 8 deep.
func validClaimPath(s string) bool {
	parts := strings.Split(s, ".")
	if s == "" || len(s) > 256 || len(parts) > 8 {
		return false
	}
	for _, p := range parts {
		if p == "" {
			return false
		}
		for i := 0; i < len(p); i++ {
			c := p[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == ':' || c == '-') {
				return false
			}
		}
	}
	return true
}

// validScope mirrors identity's scope form: 1–256 of [A-Za-z0-9._:-],
// optionally ending in a pattern '*' right after '.' or ':'.
func validScope(g string) bool {
	if g == "" || len(g) > 256 {
		return false
	}
	body := g
	if n := len(g); g[n-1] == '*' {
		if n < 2 || (g[n-2] != '.' && g[n-2] != ':') {
			return false
		}
		body = g[:n-1]
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// checkURL accepts https, or http to a loopback host (tests, a local IdP).
// Its errors show the URL as shownURL does: a URL refused for holding
// credentials or a query would otherwise print them.
func checkURL(raw string) error {
	// No spaces or control characters (url.Parse keeps spaces in the
	// path): an issuer is half of a principal's name, which a space
	// could make ambiguous.
	if strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f || unicode.IsSpace(r) }) {
		return fmt.Errorf("%s holds a space or a control character", shownURL(raw))
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s is not an absolute URL without query or credentials", shownURL(raw))
	}
	raw = shownURL(raw)
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if h == "localhost" {
			return nil
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%s: http is allowed only on a loopback host", raw)
	}
	return fmt.Errorf("%s: scheme must be https", raw)
}

// shownURL is raw as an error may show it: quoted, without its user
// information, query and fragment (where a password or an access token
// would be), each replaced by a word saying it was there; a URL that does
// not parse, or whose remainder holds a space or a control character,
// by its length alone.
func shownURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Sprintf("a URL of %d bytes that does not parse", len(raw))
	}
	if u.Opaque != "" || u.Host == "" {
		return fmt.Sprintf("a URL of %d bytes without a host", len(raw))
	}
	var removed []string
	if u.User != nil {
		removed = append(removed, "credentials")
	}
	if u.RawQuery != "" || u.ForceQuery {
		removed = append(removed, "query")
	}
	if u.Fragment != "" || u.RawFragment != "" {
		removed = append(removed, "fragment")
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	rest := u.String()
	if strings.ContainsFunc(rest, func(r rune) bool { return r <= ' ' || r == 0x7f || unicode.IsSpace(r) }) {
		return fmt.Sprintf("a URL of %d bytes with a space or a control character", len(raw))
	}
	if len(removed) == 0 {
		return strconv.Quote(rest)
	}
	return strconv.Quote(rest) + " (" + strings.Join(removed, ", ") + " removed)"
}
