package mcp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/natstest"
)

func TestParseConfig(t *testing.T) {
	const good = `
tenant: tenant_a
tools:
  - name: draft_refund
    target: refunds.draft_refund
    scope: refund:draft
    input_schema: '{"type":"object"}'
    upstream: {url: "http://127.0.0.1:9/mcp", bearer_env: REFUNDS_TOKEN}
`
	c, err := ParseConfig([]byte(good))
	must(t, err)
	if tl := c.Tools[0]; tl.Capability != "tool_call" || tl.Upstream.Tool != "draft_refund" {
		t.Errorf("defaults = %q %q; want tool_call and the tool's own name", tl.Capability, tl.Upstream.Tool)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"deny/unknown-field", good + "extra: 1\n", "unknown"},
		{"deny/bad-tenant", strings.Replace(good, "tenant_a", "Tenant A", 1), "tenant"},
		{"deny/no-scope", strings.Replace(good, "scope: refund:draft", "", 1), "scope is required"},
		{"deny/bad-schema", strings.Replace(good, `'{"type":"object"}'`, `'[1]'`, 1), "input_schema"},
		{"deny/schema-of-an-array", strings.Replace(good, `'{"type":"object"}'`, `'{"type":"array"}'`, 1), "type"},
		{"deny/schema-without-type", strings.Replace(good, `'{"type":"object"}'`, `'{}'`, 1), "type"},
		{"deny/both-upstreams", strings.Replace(good, `bearer_env: REFUNDS_TOKEN`, `command: [x]`, 1), "both url and command"},
		{"deny/env-for-url", strings.Replace(good, `bearer_env: REFUNDS_TOKEN`, `env: [HOME]`, 1), "only for a command"},
		{"deny/bad-env-name", strings.Replace(good, `url: "http://127.0.0.1:9/mcp", bearer_env: REFUNDS_TOKEN`, `command: [x], env: ["A=B"]`, 1), "not a variable name"},
		{"deny/negative-concurrency", strings.Replace(good, `bearer_env: REFUNDS_TOKEN`, `concurrency: -1`, 1), "concurrency"},
		{"deny/concurrency-past-max", strings.Replace(good, `bearer_env: REFUNDS_TOKEN`, `concurrency: 1025`, 1), "concurrency"},
		{"deny/bad-capability", strings.Replace(good, "scope: refund:draft", "scope: refund:draft\n    capability: approve", 1), "capability"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.yaml))
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseConfig = %v; want ErrConfig naming %q", err, tc.want)
			}
		})
	}
	c.Endpoint = EndpointConfig{Resource: "not a uri", Catalog: "catalog.yaml", ExchangeSubject: "agentgw.in.tenant_a.exchange"}
	err = c.Endpoint.validate()
	for _, want := range []string{"resource", "authorization server", "gateway_audience", "trusted gateway", "trusted_issuers", "gateway_xkey", "catalog and policies", "exchange_subject"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("endpoint validate = %v; want it to name %s", err, want)
		}
	}
	// A trusted issuer must be an account key: a gateway's signing key
	// (an 'N' key) in its place is refused.
	gwKey, _ := identity.NewGatewayKey()
	n, _ := gwKey.PublicKey()
	c.Endpoint = EndpointConfig{TrustedIssuers: []string{n}}
	if err := c.Endpoint.validate(); err == nil || !strings.Contains(err.Error(), "is not a public account ('A') key") {
		t.Errorf("endpoint validate with an 'N' key as trusted issuer = %v; want it refused", err)
	}
}

// endpointWorld starts a nats-server and returns a connection to it and
// the keys an endpoint's configuration names: a gateway's signing and
// curve keys and an exchange issuer's.
func endpointWorld(t *testing.T) (nc *nats.Conn, gateway, gatewayX, issuer string) {
	nc = natstest.Connect(t, natstest.Start(t, natstest.Options{}))
	gwKey, _ := identity.NewGatewayKey()
	gwCurve, _ := identity.NewCurve()
	gateway, _ = gwKey.PublicKey()
	gatewayX, _ = gwCurve.PublicKey()
	return nc, gateway, gatewayX, issuerPublic(t)
}

// TestValidConfigStartsTheEndpoint: every input_schema Validate accepts
// is one the MCP SDK takes; one it refuses ('{"type":"array"}', '{}')
// made NewEndpoint panic on start.
func TestValidConfigStartsTheEndpoint(t *testing.T) {
	nc, n, x, a := endpointWorld(t)
	for _, schema := range []string{`{"type":"object"}`, `{"type":"array"}`, `{}`, `{"type":"object","properties":{"q":{"type":"string"}}}`} {
		t.Run(schema, func(t *testing.T) {
			c := &Config{Tenant: tenant, Tools: []Tool{{Name: "search", Target: "kb.search", Scope: "kb:read", InputSchema: schema}},
				Endpoint: EndpointConfig{Resource: "http://127.0.0.1:1/mcp", AuthorizationServers: []string{"http://127.0.0.1:2"},
					GatewayAudience: gwAudience, TrustedGateways: []string{n}, GatewayXKey: x, TrustedIssuers: []string{a}}}
			if c.Validate() != nil {
				return // refused before the endpoint starts
			}
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("NewEndpoint panicked on a config Validate accepted: %v", r)
					}
				}()
				e, err := NewEndpoint(nc, c)
				must(t, err)
				must(t, e.Close())
			}()
		})
	}
}

// TestToolScopeMustBeTheCatalogs: with the gateway's catalog configured,
// a tool whose scope is not the one the catalog requires for its target
// (a looser one would let a narrow token read the results of tasks a
// broader token of the principal started) stops the endpoint at start.
func TestToolScopeMustBeTheCatalogs(t *testing.T) {
	nc, n, x, a := endpointWorld(t)
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yaml")
	pol := filepath.Join(dir, "policy.cedar")
	must(t, os.WriteFile(cat, fmt.Appendf(nil, testCatalog, x), 0o600))
	must(t, os.WriteFile(pol, []byte(testPolicy), 0o600))
	for _, tc := range []struct {
		scope   string
		refused bool
	}{{"kb:read", false}, {"kb:*", true}, {"refund:draft", true}} {
		c := &Config{Tenant: tenant, Tools: []Tool{{Name: "search", Target: "kb.search", Scope: tc.scope}},
			Endpoint: EndpointConfig{Resource: "http://127.0.0.1:1/mcp", AuthorizationServers: []string{"http://127.0.0.1:2"},
				GatewayAudience: gwAudience, TrustedGateways: []string{n}, GatewayXKey: x, TrustedIssuers: []string{a}, Catalog: cat, Policies: []string{pol}, ReloadInterval: -1}}
		must(t, c.Validate())
		e, err := NewEndpoint(nc, c)
		if tc.refused {
			if err == nil || !errors.Is(err, ErrConfig) {
				t.Errorf("scope %q: NewEndpoint = %v; want a config error", tc.scope, err)
			}
			if e != nil {
				must(t, e.Close())
			}
			continue
		}
		must(t, err)
		must(t, e.Close())
	}
}

// TestListGateReloadsCatalogAndPolicyTogether: a reload whose policy
// file does not compile keeps the old catalog too, as the gateway's
// reload does.
func TestListGateReloadsCatalogAndPolicyTogether(t *testing.T) {
	curve, err := identity.NewCurve()
	must(t, err)
	x, _ := curve.PublicKey()
	dir := t.TempDir()
	cat := filepath.Join(dir, "catalog.yaml")
	pol := filepath.Join(dir, "policy.cedar")
	must(t, os.WriteFile(cat, fmt.Appendf(nil, testCatalog, x), 0o600))
	must(t, os.WriteFile(pol, []byte(testPolicy), 0o600))
	g, err := newListGate(cat, []string{pol})
	must(t, err)
	without := strings.Replace(fmt.Sprintf(testCatalog, x), "  - name: kb.search\n", "  - name: kb.other\n", 1)
	must(t, os.WriteFile(cat, []byte(without), 0o600))
	must(t, os.WriteFile(pol, []byte("permit (principal, action, resource) when { 1 + };"), 0o600))
	if err := g.reload(); err == nil {
		t.Fatal("reload accepted a policy file that does not compile")
	}
	if _, ok := g.catalog.Load().Lookup("kb.search"); !ok {
		t.Error("a reload whose policy failed swapped in the new catalog")
	}
}

// issuerPublic is a fresh issuer's public account ('A') key.
func issuerPublic(t testing.TB) string {
	t.Helper()
	kp, err := identity.NewIssuer()
	must(t, err)
	pub, err := kp.PublicKey()
	must(t, err)
	return pub
}

// TestAuthorizationServerWithSpaceRefused: a principal is named by its
// issuer, a space and its subject; an issuer holding a space could name
// another issuer's principal (issuer "I w", subject "s" against issuer
// "I", subject "w s") and take its keys. Such an authorization server is
// refused, as the exchange refuses such an IdP issuer.
func TestAuthorizationServerWithSpaceRefused(t *testing.T) {
	for _, a := range []string{"https://idp.example/realms/acme x", "https://idp.example/\tx", "not a url"} {
		e := EndpointConfig{AuthorizationServers: []string{a}}
		if err := e.validate(); err == nil || !strings.Contains(err.Error(), "is not an absolute URL without spaces") {
			t.Errorf("authorization server %q: validate = %v; want it refused", a, err)
		}
	}
	e := EndpointConfig{AuthorizationServers: []string{"https://idp.example/realms/acme"}}
	if err := e.validate(); err != nil && strings.Contains(err.Error(), "authorization server") {
		t.Errorf("a plain issuer URL refused: %v", err)
	}
}

// TestEndpointRefusesOpenKeyDir: principals' keys are read back from
// key_dir under names anyone can compute, so a key_dir another user can
// write (here: mode 0777) stops the endpoint at start, as the
// development server's and deploy init's directories do.
func TestEndpointRefusesOpenKeyDir(t *testing.T) {
	nc, n, x, a := endpointWorld(t)
	dir := t.TempDir()
	must(t, os.Chmod(dir, 0o700))
	c := &Config{Tenant: tenant, Tools: []Tool{{Name: "search", Target: "kb.search", Scope: "kb:read"}},
		Endpoint: EndpointConfig{Resource: "http://127.0.0.1:1/mcp", AuthorizationServers: []string{"http://127.0.0.1:2"},
			GatewayAudience: gwAudience, TrustedGateways: []string{n}, GatewayXKey: x, TrustedIssuers: []string{a}, KeyDir: dir}}
	must(t, c.Validate())
	e, err := NewEndpoint(nc, c)
	must(t, err)
	must(t, e.Close())
	must(t, os.Chmod(dir, 0o777))
	e, err = NewEndpoint(nc, c)
	if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "key_dir") {
		t.Errorf("NewEndpoint with key_dir mode 0777 = %v; want a config error naming key_dir", err)
	}
	if e != nil {
		must(t, e.Close())
	}
	// A key_dir that does not exist yet, in a directory anyone may
	// write (/tmp): the endpoint makes it, 0700, so that another user
	// cannot make it later and plant keys in it.
	shared := t.TempDir()
	must(t, os.Chmod(shared, 0o1777))
	c.Endpoint.KeyDir = filepath.Join(shared, "agentgw-keys")
	e, err = NewEndpoint(nc, c)
	must(t, err)
	must(t, e.Close())
	fi, err := os.Stat(c.Endpoint.KeyDir)
	must(t, err)
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("key_dir made by the endpoint: %v; want a directory, mode 0700", fi.Mode())
	}
}

// TestKeyDirPinnedAtStart: key_dir is opened once, at the start, and
// every key file is read through what was opened. A key_dir path that
// someone else controls (here a symlink in a directory anyone may
// write, swapped after the start to a directory of their own holding a
// principal's key file) does not lead the endpoint to their keys.
func TestKeyDirPinnedAtStart(t *testing.T) {
	nc, n, x, a := endpointWorld(t)
	shared := t.TempDir() // stands for /tmp
	must(t, os.Chmod(shared, 0o1777))
	mine := t.TempDir()
	must(t, os.Chmod(mine, 0o700))
	theirs := t.TempDir()
	keyDir := filepath.Join(shared, "agentgw-keys")
	must(t, os.Symlink(mine, keyDir))
	c := &Config{Tenant: tenant, Tools: []Tool{{Name: "search", Target: "kb.search", Scope: "kb:read"}},
		Endpoint: EndpointConfig{Resource: "http://127.0.0.1:1/mcp", AuthorizationServers: []string{"http://127.0.0.1:2"},
			GatewayAudience: gwAudience, TrustedGateways: []string{n}, GatewayXKey: x, TrustedIssuers: []string{a}, KeyDir: keyDir}}
	must(t, c.Validate())
	e, err := NewEndpoint(nc, c)
	must(t, err)
	defer e.Close()

	const id = "https://idp.example.com victim"
	planted, err := identity.NewAgent()
	must(t, err)
	curve, err := identity.NewCurve()
	must(t, err)
	ps, _ := planted.Seed()
	cs, _ := curve.Seed()
	must(t, os.WriteFile(filepath.Join(theirs, keyName(id)), append(append(append(ps, '\n'), cs...), '\n'), 0o600))
	must(t, os.Remove(keyDir))
	must(t, os.Symlink(theirs, keyDir))

	key, _, err := e.keys(id)
	must(t, err)
	got, _ := key.PublicKey()
	if want, _ := planted.PublicKey(); got == want {
		t.Errorf("after key_dir's path was swapped, the principal's agent key is read from the new target: %s", got)
	}
}
