package mcp

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/policy"
)

// DefaultReloadInterval is how often the listing gate's files are
// checked for changes when EndpointConfig.ReloadInterval is zero (the
// gateway's default).
const DefaultReloadInterval = 2 * time.Second

// listGate decides which tools tools/list shows a principal with the
// gateway's own catalog and Cedar policies: a tool is listed when the
// catalog gate passes for it (catalog.Authorize) and the authorize-stage
// policy decision allows it or holds it for approval. It is a listing
// hint: the gateway runs every gate again on each call.
type listGate struct {
	catalogPath string
	policyPaths []string
	catalog     atomic.Pointer[catalog.Catalog]
	policy      *policy.Engine
	last        [32]byte // fingerprint of the files last loaded (reload loop only)
}

// newListGate loads the catalog and the policies; errors wrap ErrConfig.
func newListGate(catalogPath string, policyPaths []string) (*listGate, error) {
	g := &listGate{catalogPath: catalogPath, policyPaths: policyPaths}
	g.last = g.fingerprint()
	cat, err := catalog.Load(catalogPath)
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint: %w", ErrConfig, err)
	}
	set, err := policy.Load(policyPaths...)
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint: %w", ErrConfig, err)
	}
	g.catalog.Store(cat)
	g.policy = policy.NewEngine(set)
	return g, nil
}

// reload re-reads the files and swaps the catalog and the policies
// together, only when both load, as the gateway does: a broken file
// keeps both old versions.
func (g *listGate) reload() error {
	cat, errCat := catalog.Load(g.catalogPath)
	set, errPol := policy.Load(g.policyPaths...)
	if err := errors.Join(errCat, errPol); err != nil {
		return err
	}
	g.catalog.Store(cat)
	g.policy.Swap(set)
	return nil
}

// watch reloads when the files' contents change, every interval, until
// ctx is done.
func (g *listGate) watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if fp := g.fingerprint(); fp != g.last {
			g.last = fp
			_ = g.reload() // the old versions stay in service
		}
	}
}

// fingerprint digests the files' contents; a missing file contributes
// its absence.
func (g *listGate) fingerprint() [32]byte {
	h := sha256.New()
	for _, f := range append([]string{g.catalogPath}, g.policyPaths...) {
		data, err := os.ReadFile(f)
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(data))
		if err == nil {
			h.Write(data)
		}
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// allows reports whether t would pass the catalog gate and the
// authorize-stage policy decision for who, in tenant, at now.
func (g *listGate) allows(t *Tool, tenant string, who policy.Principal, now time.Time) bool {
	cred := identity.Credential{Scopes: who.Scopes}
	target, err := g.catalog.Load().Authorize(t.Target, t.Capability, tenant, cred.HasScope)
	if err != nil {
		return false
	}
	d := g.policy.Decide(policy.Request{
		Principal: who,
		Action:    string(t.Capability),
		Resource:  policy.Resource{Target: target.Name, Tenant: tenant, Kind: target.Kind, Risk: target.Risk},
		Time:      now,
	})
	return d.Allow // Allow holds for approval too (d.Approval)
}

// credentialPrincipal is the Cedar principal of an exchanged credential,
// read from its claims as the gateway reads them after verifying it, and
// the principal it was issued for (nats.principal: the IdP issuer and
// subject the exchange verified).
func credentialPrincipal(tok identity.Token) (policy.Principal, string, error) {
	j, err := identity.ParseJWT(tok.Reveal())
	if err != nil {
		return policy.Principal{}, "", err
	}
	var c struct {
		Issuer  string `json:"iss"`
		Subject string `json:"sub"`
		Nats    struct {
			Tenant    string   `json:"tenant"`
			Service   string   `json:"service"`
			Scopes    []string `json:"scopes"`
			Principal string   `json:"principal"`
		} `json:"nats"`
	}
	if err := jsonv2.Unmarshal(j.Payload, &c); err != nil || c.Issuer == "" || c.Subject == "" || c.Nats.Tenant == "" {
		return policy.Principal{}, "", errors.New("credential claims lack iss, sub or tenant")
	}
	return policy.Principal{Agent: c.Subject, Tenant: c.Nats.Tenant, Service: c.Nats.Service, Issuer: c.Issuer, Scopes: c.Nats.Scopes}, c.Nats.Principal, nil
}
