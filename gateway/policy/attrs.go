package policy

import (
	"slices"
	"sync"

	cedar "github.com/cedar-policy/cedar-go"
)

// maxCachedEntities bounds each attribute cache; past it the cache is
// dropped and refilled, so memory stays bounded whatever the key churn.
const maxCachedEntities = 4096

// attrCache memoizes the Cedar attribute records of principals and
// resources. Building a record hashes and copies its map (cedar-go's
// NewRecord), which is most of Decide's allocations; agents and targets
// repeat across messages. An entry is keyed by entity id and used only if
// every attribute still equals the request's, so it can never be stale.
// The zero value is ready; safe for concurrent use.
type attrCache struct {
	mu         sync.RWMutex
	principals map[string]cachedPrincipal // by agent key
	resources  map[Resource]cedar.Record  // by every attribute: a target name repeats across tenants
}

type cachedPrincipal struct {
	p   Principal
	rec cedar.Record
}

func (c *attrCache) principal(p Principal) cedar.Record {
	c.mu.RLock()
	e, ok := c.principals[p.Agent]
	c.mu.RUnlock()
	if ok {
		if e.p.Tenant == p.Tenant && e.p.Service == p.Service && e.p.Issuer == p.Issuer && slices.Equal(e.p.Scopes, p.Scopes) {
			return e.rec
		}
	}
	scopes := make([]cedar.Value, len(p.Scopes))
	for i, sc := range p.Scopes {
		scopes[i] = cedar.String(sc)
	}
	rec := cedar.NewRecord(cedar.RecordMap{
		"tenant":  cedar.String(p.Tenant),
		"service": cedar.String(p.Service),
		"issuer":  cedar.String(p.Issuer),
		"scopes":  cedar.NewSet(scopes...),
	})
	p.Scopes = slices.Clone(p.Scopes) // the caller's slice may change
	c.mu.Lock()
	if c.principals == nil || len(c.principals) >= maxCachedEntities {
		c.principals = make(map[string]cachedPrincipal)
	}
	c.principals[p.Agent] = cachedPrincipal{p: p, rec: rec}
	c.mu.Unlock()
	return rec
}

func (c *attrCache) resource(r Resource) cedar.Record {
	c.mu.RLock()
	rec, ok := c.resources[r]
	c.mu.RUnlock()
	if ok {
		return rec
	}
	rec = cedar.NewRecord(cedar.RecordMap{
		"tenant": cedar.String(r.Tenant),
		"kind":   cedar.String(r.Kind),
		"risk":   cedar.String(r.Risk),
	})
	c.mu.Lock()
	if c.resources == nil || len(c.resources) >= maxCachedEntities {
		c.resources = make(map[Resource]cedar.Record)
	}
	c.resources[r] = rec
	c.mu.Unlock()
	return rec
}
