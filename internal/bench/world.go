package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
)

// Names the bench's world uses.
const (
	audience     = "agentgw-bench"
	plainTarget  = "bench.plain"
	sealedTarget = "bench.sealed"
	// envelopeTTL is the lifetime of pre-signed envelopes: the gateway's
	// max_ttl, so a corpus stays fresh for a whole scenario.
	envelopeTTL = 5 * time.Minute
)

// catalogYAML has a plain read target and a sealed tool target with a
// payload schema and a policy-visible field, so a sealed message runs
// every gate: open, schema, content policy, re-seal, decision token.
const catalogYAML = `approval_risks: [critical]
targets:
  - name: bench.plain
    kind: read
    scope: bench:read
    tenants: [%[2]s]
    risk: low
    plain: true
  - name: bench.sealed
    kind: tool_call
    scope: bench:call
    tenants: [%[2]s]
    risk: medium
    consumer_xkey: %[1]s
    payload_schema: '{"type":"object","required":["order_id","amount_cents","note"],"properties":{"order_id":{"type":"string"},"amount_cents":{"type":"integer","minimum":1},"note":{"type":"string"}},"additionalProperties":false}'
    policy_visible: [amount_cents]
`

// policyCedar permits same-tenant use of low and medium risk targets by
// their kind and caps amounts at the content stage.
const policyCedar = `@id("bench.same_tenant_kind")
permit (principal, action in [Action::"read", Action::"tool_call"], resource)
when {
  principal.tenant == resource.tenant &&
  ["low", "medium"].contains(resource.risk) &&
  ((action == Action::"read" && resource.kind == "read") ||
   (action == Action::"tool_call" && resource.kind == "tool_call"))
};

@id("bench.amount_ceiling")
forbid (principal, action == Action::"tool_call", resource == Target::"bench.sealed")
when { context has payload && context.payload has amount_cents && context.payload.amount_cents > 100000 };
`

// agent is one test identity with everything needed to sign and seal.
type agent struct {
	tenant  string
	pub     string
	subject string // ingress subject
	signer  *identity.Signer
	xkey    string
	box     *identity.Box
	token   string // credential JWT
	// noNotice: its messages ask for no decision notice
	// (Agentgw-Notify: none), as an agent that reads none does.
	noNotice bool
}

// world is the fixed identity material of a run: issuers, agents, the
// gateway's keys and the files a gateway config points at.
type world struct {
	dir        string
	tenants    []string
	issuers    map[string]string // tenant -> issuer public key
	agents     []*agent
	gwSigning  string // seed file
	gwCurve    string // seed file
	gwCurvePub string
	consumer   string // consumer xkey of the sealed target
	catalog    string // file
	policy     string // file
}

func newWorld(dir string, tenants, agents int, now time.Time) (*world, error) {
	w := &world{dir: filepath.Join(dir, "material"), issuers: map[string]string{}}
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	issuerKPs := map[string]nkeys.KeyPair{}
	for i := range tenants {
		t := fmt.Sprintf("bench_%c", 'a'+i%26)
		if i >= 26 {
			t = fmt.Sprintf("bench_%d", i)
		}
		kp, err := identity.NewIssuer()
		if err != nil {
			return nil, err
		}
		pub, _ := kp.PublicKey()
		w.tenants = append(w.tenants, t)
		w.issuers[t] = pub
		issuerKPs[t] = kp
	}
	signing, err := identity.NewGatewayKey()
	if err != nil {
		return nil, err
	}
	curve, err := identity.NewCurve()
	if err != nil {
		return nil, err
	}
	w.gwCurvePub, _ = curve.PublicKey()
	w.gwSigning = filepath.Join(w.dir, "gateway-signing.nk")
	w.gwCurve = filepath.Join(w.dir, "gateway-curve.nk")
	if err := writeSeed(w.gwSigning, signing); err != nil {
		return nil, err
	}
	if err := writeSeed(w.gwCurve, curve); err != nil {
		return nil, err
	}
	consumer, err := identity.NewCurve()
	if err != nil {
		return nil, err
	}
	w.consumer, _ = consumer.PublicKey()

	for i := range agents {
		t := w.tenants[i%len(w.tenants)]
		a, err := newAgent(issuerKPs[t], t, now)
		if err != nil {
			return nil, fmt.Errorf("bench: agent %d: %w", i, err)
		}
		w.agents = append(w.agents, a)
	}

	tenantList := ""
	for i, t := range w.tenants {
		if i > 0 {
			tenantList += ", "
		}
		tenantList += t
	}
	w.catalog = filepath.Join(w.dir, "catalog.yaml")
	if err := os.WriteFile(w.catalog, fmt.Appendf(nil, catalogYAML, w.consumer, tenantList), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	w.policy = filepath.Join(w.dir, "policy.cedar")
	if err := os.WriteFile(w.policy, []byte(policyCedar), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return w, nil
}

func newAgent(issuer nkeys.KeyPair, tenant string, now time.Time) (*agent, error) {
	kp, err := identity.NewAgent()
	if err != nil {
		return nil, err
	}
	s, err := identity.NewSigner(kp)
	if err != nil {
		return nil, err
	}
	ck, err := identity.NewCurve()
	if err != nil {
		return nil, err
	}
	box, err := identity.NewBox(ck)
	if err != nil {
		return nil, err
	}
	a := &agent{tenant: tenant, pub: s.PublicKey(), signer: s, box: box}
	a.xkey, _ = ck.PublicKey()
	if a.subject, err = subjects.Ingress(tenant, a.pub); err != nil {
		return nil, err
	}
	tok, err := identity.Issue(issuer, identity.IssueRequest{
		Subject: a.pub, Audience: audience, Tenant: tenant, Service: "bench-agent", Name: "bench agent",
		Scopes: []string{"bench:read", "bench:call"}, XKey: a.xkey, TTL: 2 * time.Hour,
	}, now)
	if err != nil {
		return nil, err
	}
	a.token = tok.Reveal()
	return a, nil
}

func writeSeed(path string, kp nkeys.KeyPair) error {
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	defer clear(seed)
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// gatewayConfig is the gateway's configuration for one scenario: the
// defaults, this world's material and a fresh ledger directory.
func (w *world) gatewayConfig(dataDir string, cfg *Config) gateway.Config {
	gc := gateway.DefaultConfig()
	gc.Audience = audience
	gc.DataDir = dataDir
	gc.Catalog = w.catalog
	gc.Policies = []string{w.policy}
	gc.Keys = gateway.KeysConfig{Signing: w.gwSigning, Curve: w.gwCurve}
	gc.Tenants = map[string]gateway.TenantConfig{}
	for t, iss := range w.issuers {
		gc.Tenants[t] = gateway.TenantConfig{Issuers: []string{iss}}
	}
	if cfg.Batch > 0 {
		gc.Consumer.Batch = cfg.Batch
	}
	gc.Consumer.Workers = cfg.Workers
	gc.Consumer.Partitions = cfg.partitions()
	gc.Consumer.FairTenants = cfg.FairTenants
	gc.NotifySenders = !cfg.NoNotices
	// Polling the files is not part of the hot path being measured.
	gc.ReloadInterval = 0
	return gc
}
