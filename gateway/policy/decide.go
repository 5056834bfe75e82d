package policy

import (
	"iter"
	"slices"
	"strings"
	"sync/atomic"

	cedar "github.com/cedar-policy/cedar-go"
)

// Entity types of the Cedar mapping.
const (
	entityAgent  cedar.EntityType = "Agent"
	entityTarget cedar.EntityType = "Target"
	entityAction cedar.EntityType = "Action"
)

// Interned values: building them once keeps Decide's allocations to the
// records that really vary per request.
var (
	stageAuthorizeValue = cedar.String(StageAuthorize)
	stageContentValue   = cedar.String(StageContent)
	emptyRecord         = cedar.NewRecord(nil)
)

// Decide evaluates req against the set. It never panics on input and
// never allows on doubt: the tenant guard, forbids and forbid errors all
// deny. Safe for concurrent use.
func (s *Set) Decide(req Request) Decision {
	d := Decision{Version: s.version}
	if req.Principal.Tenant == "" || req.Principal.Tenant != req.Resource.Tenant {
		d.PolicyIDs = []string{BuiltinTenantIsolation}
		return d
	}
	key, memo := s.memoKey(req)
	if memo {
		if d, ok := s.memo.get(key); ok {
			return d
		}
	}
	d = s.evaluate(req)
	if memo {
		s.memo.put(key, d)
	}
	return d
}

// evaluate is Decide past the tenant guard, without the memo.
func (s *Set) evaluate(req Request) Decision {
	d := Decision{Version: s.version}

	ents := &entities{
		principal: cedar.Entity{
			UID:        cedar.NewEntityUID(entityAgent, cedar.String(req.Principal.Agent)),
			Attributes: s.attrs.principal(req.Principal),
		},
		resource: cedar.Entity{
			UID:        cedar.NewEntityUID(entityTarget, cedar.String(req.Resource.Target)),
			Attributes: s.attrs.resource(req.Resource),
		},
	}
	ctx, notes := buildContext(req)
	d.Errors = notes

	dec, diag := cedar.Authorize((*setIter)(s), ents, cedar.Request{
		Principal: ents.principal.UID,
		Action:    cedar.NewEntityUID(entityAction, cedar.String(req.Action)),
		Resource:  ents.resource.UID,
		Context:   ctx,
	})

	// Cedar skips a policy whose evaluation errors. For a forbid that is
	// fail-open, so an erroring forbid denies here.
	var forbidErrs []string
	for _, e := range diag.Errors {
		d.Errors = append(d.Errors, "policy "+string(e.PolicyID)+": "+shortMessage(e.Message))
		if s.meta[e.PolicyID].forbid {
			forbidErrs = append(forbidErrs, string(e.PolicyID))
		}
	}
	switch {
	case dec == cedar.Allow && len(forbidErrs) == 0:
		d.Allow = true
		d.PolicyIDs = make([]string, 0, len(diag.Reasons))
		for _, r := range diag.Reasons {
			d.PolicyIDs = append(d.PolicyIDs, string(r.PolicyID))
			if s.meta[r.PolicyID].approval {
				d.Approval = true
			}
		}
	case dec == cedar.Allow:
		d.PolicyIDs = forbidErrs
	default:
		// On deny, Reasons are the matching forbids (none on default deny).
		for _, r := range diag.Reasons {
			d.PolicyIDs = append(d.PolicyIDs, string(r.PolicyID))
		}
		d.PolicyIDs = append(d.PolicyIDs, forbidErrs...)
	}
	slices.Sort(d.PolicyIDs)
	return d
}

// setIter walks a Set's policies in load order for cedar.Authorize
// without exposing an All method on Set.
type setIter Set

func (s *setIter) All() iter.Seq2[cedar.PolicyID, *cedar.Policy] {
	return func(yield func(cedar.PolicyID, *cedar.Policy) bool) {
		for _, e := range s.entries {
			if !yield(e.id, e.p) {
				return
			}
		}
	}
}

// entities is the two-entity store of one request: no map, no parents.
type entities struct {
	principal, resource cedar.Entity
}

func (e *entities) Get(uid cedar.EntityUID) (cedar.Entity, bool) {
	switch uid {
	case e.principal.UID:
		return e.principal, true
	case e.resource.UID:
		return e.resource, true
	}
	return cedar.Entity{}, false
}

// authorizeContext caches the context of stage authorize for requests
// without budget state: it changes once a second, and building a record
// hashes and copies its map.
type authorizeContext struct {
	unix int64
	rec  cedar.Record
}

var lastAuthorizeContext atomic.Pointer[authorizeContext]

func buildContext(req Request) (cedar.Record, []string) {
	t := req.Time.UTC()
	if len(req.Budget) == 0 && req.Payload == nil {
		if c := lastAuthorizeContext.Load(); c != nil && c.unix == t.Unix() {
			return c.rec, nil
		}
		rec := cedar.NewRecord(cedar.RecordMap{
			"time":   cedar.Long(t.Unix()),
			"hour":   cedar.Long(t.Hour()),
			"budget": emptyRecord,
			"stage":  stageAuthorizeValue,
		})
		lastAuthorizeContext.Store(&authorizeContext{unix: t.Unix(), rec: rec})
		return rec, nil
	}
	budget := emptyRecord
	if len(req.Budget) > 0 {
		bm := make(cedar.RecordMap, len(req.Budget))
		for k, v := range req.Budget {
			bm[cedar.String(k)] = cedar.Long(v)
		}
		budget = cedar.NewRecord(bm)
	}
	rm := cedar.RecordMap{
		"time":   cedar.Long(t.Unix()),
		"hour":   cedar.Long(t.Hour()),
		"budget": budget,
		"stage":  stageAuthorizeValue,
	}
	var notes []string
	if req.Payload != nil {
		rm["stage"] = stageContentValue
		rm["payload"] = payloadRecord(req.Payload, &notes)
	}
	return cedar.NewRecord(rm), notes
}

// maxMessage bounds one evaluation error message, in bytes.
const maxMessage = 200

// shortMessage makes a Cedar evaluation error safe to log: quoted spans
// (which may hold request values, e.g. the operands of an overflow or the
// argument of decimal("...")) are elided, except an attribute name, which
// comes from the policy text. The result is at most maxMessage bytes.
func shortMessage(msg string) string {
	var b strings.Builder
	for len(msg) > 0 && b.Len() < maxMessage {
		i := strings.IndexAny(msg, "`\"")
		if i < 0 {
			b.WriteString(msg)
			break
		}
		q := msg[i]
		b.WriteString(msg[:i+1])
		rest := msg[i+1:]
		j := strings.IndexByte(rest, q)
		if j < 0 {
			b.WriteString("…")
			break
		}
		if q == '`' && strings.HasSuffix(msg[:i], "attribute ") {
			b.WriteString(rest[:j])
		} else {
			b.WriteString("…")
		}
		b.WriteByte(q)
		msg = rest[j+1:]
	}
	out := b.String()
	if len(out) > maxMessage {
		out = strings.ToValidUTF8(out[:maxMessage], "") + "…"
	}
	return out
}
