package policy

import (
	"slices"
	"strconv"
	"strings"
	"sync"

	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
)

// Decision memo. A Cedar evaluation is a pure function of its entities,
// request and policies. When no policy reads context.time (or uses
// context other than by reading attributes), and a request carries no
// budget state and no payload fields, the context is the same for every
// request of one stage within one UTC hour; the decision then depends
// only on the principal's and resource's attributes, the action, the
// stage and the hour, and the set memoizes it per set (a reload starts
// an empty memo). Agents, targets and actions repeat across messages, so
// the common case skips cedar.Authorize and its ~45 allocations.

// memoContextAttrs are the context attributes whose value is fixed by a
// memo key: hour (in the key), stage (in the key), budget and payload
// (empty whenever the memo is used).
var memoContextAttrs = map[string]bool{"hour": true, "stage": true, "budget": true, "payload": true}

// memoizable reports whether every use of context in p reads or tests an
// attribute in memoContextAttrs: p cannot see context.time.
func memoizable(p *xast.Policy) bool {
	return contextUsesOnly(p, memoContextAttrs)
}

// contextUsesOnly reports whether every use of the context variable in p
// is a read (or has-test) of an attribute in attrs. Conservative: context
// used any other way (passed whole, compared) does not qualify.
func contextUsesOnly(p *xast.Policy, attrs map[string]bool) bool {
	uses, safe := 0, 0
	for _, c := range p.Conditions {
		xast.Inspect(xast.NewNode(c.Body), func(n xast.IsNode) bool {
			switch n := n.(type) {
			case xast.NodeTypeVariable:
				if n.Name == "context" {
					uses++
				}
			case xast.NodeTypeAccess:
				if isContext(n.Arg) && attrs[string(n.Value)] {
					safe++
				}
			case xast.NodeTypeHas:
				if isContext(n.Arg) && attrs[string(n.Value)] {
					safe++
				}
			}
			return true
		})
	}
	return uses == safe
}

// memoKey is everything a memoizable request's decision depends on.
type memoKey struct {
	agent, tenant, service, issuer string
	scopes                         string // length-prefixed, in order
	action                         string
	resource                       Resource
	hour                           int
	content                        bool // stage content (with an empty payload)
}

// maxMemo bounds a set's memo; past it the memo is dropped and refilled.
const maxMemo = 8192

type decisionMemo struct {
	mu sync.RWMutex
	m  map[memoKey]Decision
}

// key returns req's memo key, or false when req cannot be memoized.
func (s *Set) memoKey(req Request) (memoKey, bool) {
	if !s.memoOK || len(req.Budget) > 0 || (req.Payload != nil && len(req.Payload) > 0) {
		return memoKey{}, false
	}
	p := req.Principal
	var sc strings.Builder
	for _, v := range p.Scopes {
		sc.WriteString(strconv.Itoa(len(v)))
		sc.WriteByte(':')
		sc.WriteString(v)
	}
	return memoKey{
		agent: p.Agent, tenant: p.Tenant, service: p.Service, issuer: p.Issuer, scopes: sc.String(),
		action: req.Action, resource: req.Resource,
		hour: req.Time.UTC().Hour(), content: req.Payload != nil,
	}, true
}

func (m *decisionMemo) get(k memoKey) (Decision, bool) {
	m.mu.RLock()
	d, ok := m.m[k]
	m.mu.RUnlock()
	return d, ok
}

func (m *decisionMemo) put(k memoKey, d Decision) {
	// Clipped: an append by a caller copies instead of writing into the
	// shared backing array.
	d.PolicyIDs, d.Errors = slices.Clip(d.PolicyIDs), slices.Clip(d.Errors)
	m.mu.Lock()
	if m.m == nil || len(m.m) >= maxMemo {
		m.m = make(map[memoKey]Decision)
	}
	m.m[k] = d
	m.mu.Unlock()
}
