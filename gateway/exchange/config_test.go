package exchange

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func loadExample(t *testing.T) Config {
	t.Helper()
	data, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := yaml.UnmarshalWithOptions(data, &cfg, yaml.Strict()); err != nil {
		t.Fatalf("decode testdata/config.yaml: %v", err)
	}
	return cfg
}

func TestExampleConfigIsValid(t *testing.T) {
	if err := loadExample(t).Validate(); err != nil {
		t.Errorf("Validate(example) = %v; want nil", err)
	}
}

func TestConfigUnknownFieldRefused(t *testing.T) {
	var cfg Config
	err := yaml.UnmarshalWithOptions([]byte("idps: [{name: a, issuer: https://x, audence: typo}]"), &cfg, yaml.Strict())
	if err == nil {
		t.Error("strict decode accepted an unknown field")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want []string // substrings, every one must be reported
	}{
		{"deny/no_idps", func(c *Config) { c.IdPs = nil }, []string{"at least one idp"}},
		{"deny/hs256_allowed", func(c *Config) { c.IdPs[0].Algorithms = []string{"HS256", "none"} }, []string{`"HS256"`, `"none"`}},
		{"deny/http_issuer_off_loopback", func(c *Config) { c.IdPs[0].Issuer = "http://login.example.com" }, []string{"loopback"}},
		{"deny/no_tenants", func(c *Config) { c.IdPs[1].Tenants = nil }, []string{"tenants is required", "not in tenants"}},
		{"deny/tenant_and_claim", func(c *Config) { c.IdPs[1].TenantClaim = "org" }, []string{"exactly one of tenant and tenant_claim"}},
		{"deny/map_outside_tenants", func(c *Config) { c.IdPs[0].TenantMap["x"] = "tenant_z" }, []string{"tenant_map"}},
		{"deny/rule_both_matchers", func(c *Config) { c.IdPs[0].Rules[0].Equals = "x" }, []string{"exactly one of contains and equals"}},
		{"deny/rule_bad_scope", func(c *Config) { c.IdPs[0].Rules[0].Scopes = []string{"refund*"} }, []string{"is not a scope"}},
		{"deny/rule_no_scopes", func(c *Config) { c.IdPs[0].Rules[0].Scopes = nil }, []string{"scopes is required"}},
		{"deny/rule_more_scopes_than_a_credential_holds", func(c *Config) { c.IdPs[0].Rules[0].Scopes = scopesUnder("kb:", maxScopes+1) }, []string{
			fmt.Sprintf(`tenant "tenant_a": the rules grant %d distinct scopes`, maxScopes+2),
			fmt.Sprintf(`tenant "tenant_b": the rules grant %d distinct scopes`, maxScopes+1),
		}},
		{"deny/rules_together_more_than_a_credential_holds", func(c *Config) {
			c.IdPs[0].Rules[0].Scopes = scopesUnder("kb:", maxScopes-1)
			c.IdPs[0].Rules[1].Scopes = scopesUnder("approve:", 2) // tenant_a only
		}, []string{fmt.Sprintf(`tenant "tenant_a": the rules grant %d distinct scopes`, maxScopes+1)}},
		{"deny/issuer_with_hash", func(c *Config) { c.IdPs[0].Issuer = "https://login.example.com/#" }, []string{"holds '#'"}},
		{"deny/issuer_with_space", func(c *Config) { c.IdPs[0].Issuer = "https://login.example.com/realms/acme x" }, []string{"holds a space"}},
		{"deny/keys_min_refresh_under_a_second", func(c *Config) { c.IdPs[0].KeysMinRefresh = time.Millisecond }, []string{"keys_min_refresh 1ms is under 1s"}},
		{"deny/duplicate_issuer", func(c *Config) { c.IdPs[1].Issuer = c.IdPs[0].Issuer }, []string{"duplicate issuer"}},
		{"deny/tenant_without_issuer_seed", func(c *Config) { delete(c.IssuerSeeds, "tenant_b") }, []string{`tenant "tenant_b" has no issuer_seeds`}},
		{"deny/subject_wildcard", func(c *Config) { c.Subject = "agentgw.exchange.*" }, []string{"not a literal NATS subject"}},
		{"deny/subject_in_ingress_stream", func(c *Config) { c.Subject = "agentgw.in.tenant_a.exchange" }, []string{"stored by a gateway stream"}},
		{"deny/subject_in_audit_stream", func(c *Config) { c.Subject = "agentgw.audit.exchange" }, []string{"stored by a gateway stream"}},
		{"deny/every_problem_at_once", func(c *Config) {
			c.Skew = -1
			c.IdPs[0].Audience = ""
			c.IdPs[1].Rules = nil
		}, []string{"skew", "audience is required", "at least one rule"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadExample(t)
			tt.mod(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatal("Validate = nil; want problems")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v; want it to report %q", err, w)
				}
			}
		})
	}
}

// TestConfigScopeBoundPerTenant: the bound is on what one token can be
// granted, the scopes of the rules of its tenant; duplicates count once.
func TestConfigScopeBoundPerTenant(t *testing.T) {
	cfg := loadExample(t)
	cfg.IdPs[0].Rules[0].Tenants = []string{"tenant_b"}
	cfg.IdPs[0].Rules[0].Scopes = append(scopesUnder("kb:", maxScopes), "kb:0000")
	cfg.IdPs[0].Rules[1].Scopes = scopesUnder("approve:", maxScopes) // tenant_a only
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate(%d scopes for each tenant) = %v; want nil", maxScopes, err)
	}
}

func TestNewNeedsIssuerPerTenant(t *testing.T) {
	cfg := loadExample(t)
	cfg.Audience = "gw"
	_, err := New(cfg, nil, nil)
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "no issuer key for tenant tenant_a") {
		t.Errorf("New(no issuers) = %v; want ErrConfig naming tenant_a", err)
	}
	// Without the gateway's curve key no xkey_proof could be checked.
	if err == nil || !strings.Contains(err.Error(), "curve key is required") {
		t.Errorf("New(no curve key) = %v; want ErrConfig saying the gateway's curve key is required", err)
	}
}

// TestConfigURLErrorsHideSecrets: an issuer or jwks_url refused for the
// password, access token or fragment it holds is named in the error
// without them (the error reaches agentgw serve's output).
func TestConfigURLErrorsHideSecrets(t *testing.T) {
	const secret = "Hunter2canary"
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"issuer_with_password", func(c *Config) { c.IdPs[0].Issuer = "https://svc:" + secret + "@login.example.com" }, `"https://login.example.com" (credentials removed)`},
		{"issuer_with_user", func(c *Config) { c.IdPs[0].Issuer = "https://" + secret + "@login.example.com/realms" }, `"https://login.example.com/realms" (credentials removed)`},
		{"jwks_with_token", func(c *Config) { c.IdPs[0].JWKSURL = "https://login.example.com/keys?access_token=" + secret }, `"https://login.example.com/keys" (query removed)`},
		{"jwks_with_fragment", func(c *Config) { c.IdPs[0].JWKSURL = "https://login.example.com/keys#" + secret }, `(fragment removed)`},
		{"http_with_password", func(c *Config) { c.IdPs[0].Issuer = "http://svc:" + secret + "@login.example.com" }, `(credentials removed)`},
		{"opaque", func(c *Config) { c.IdPs[0].Issuer = "https:" + secret + "@login.example.com" }, "without a host"},
		{"space_and_password", func(c *Config) { c.IdPs[0].Issuer = "https://svc:" + secret + "@login.example.com/a b" }, "holds a space"},
		{"unparsable", func(c *Config) { c.IdPs[0].JWKSURL = "https://svc:" + secret + "@[::1" }, "does not parse"},
		{"no_host_backslash", func(c *Config) { c.IdPs[0].Issuer = `https:/\svc:` + secret + "@idp.example.com" }, "without a host"},
		{"no_host_triple_slash", func(c *Config) { c.IdPs[0].Issuer = "https:///svc:" + secret + "@idp.example.com" }, "without a host"},
		{"duplicate_issuer", func(c *Config) {
			c.IdPs[0].Issuer = "https://svc:" + secret + "@login.example.com"
			c.IdPs[1].Issuer = c.IdPs[0].Issuer
		}, `duplicate issuer "https://login.example.com" (credentials removed)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadExample(t)
			tt.mod(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatal("Validate = nil; want the URL refused")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Validate's error holds the secret: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v; want it to name the URL as %s", err, tt.want)
			}
		})
	}
}
