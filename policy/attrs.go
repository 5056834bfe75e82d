package policy

import (
	"slices"
	"sync"
	"sync/atomic"

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
	principals, resources sync.Map // string -> *cachedPrincipal / *cachedResource
	np, nr                atomic.Int64
}

type cachedPrincipal struct {
	p   Principal
	rec cedar.Record
}

type cachedResource struct {
	r   Resource
	rec cedar.Record
}

func (c *attrCache) principal(p Principal) cedar.Record {
	if v, ok := c.principals.Load(p.Agent); ok {
		e := v.(*cachedPrincipal)
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
	if c.np.Add(1) > maxCachedEntities {
		c.principals.Clear()
		c.np.Store(0)
	}
	c.principals.Store(p.Agent, &cachedPrincipal{p: p, rec: rec})
	return rec
}

func (c *attrCache) resource(r Resource) cedar.Record {
	if v, ok := c.resources.Load(r.Target); ok {
		if e := v.(*cachedResource); e.r == r {
			return e.rec
		}
	}
	rec := cedar.NewRecord(cedar.RecordMap{
		"tenant": cedar.String(r.Tenant),
		"kind":   cedar.String(r.Kind),
		"risk":   cedar.String(r.Risk),
	})
	if c.nr.Add(1) > maxCachedEntities {
		c.resources.Clear()
		c.nr.Store(0)
	}
	c.resources.Store(r.Target, &cachedResource{r: r, rec: rec})
	return rec
}
