package policy

import (
	"iter"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	cedar "github.com/cedar-policy/cedar-go"

	"github.com/agentgw/agentgw/gateway/decision"
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

// DecideContent decides req at stage content with s, given the
// authorize-stage decision of the same message. When s made authorized
// and none of its policies can tell the stages apart (see stageBlind),
// the answer is authorized itself: evaluating again could only repeat it.
func (s *Set) DecideContent(authorized Decision, req Request) Decision {
	if s.stageBlind && s.version == authorized.Version && authorized.Allow {
		return authorized
	}
	return s.Decide(req)
}

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
	ctx, notes, omitted := buildContext(req)
	d.Errors = notes
	if omitted && s.DependsOn(req).Payload {
		// Fail closed: a field left out (a value Cedar cannot hold, past
		// the element bound) would make a forbid guarded by
		// `context.payload has f` pass it. Only a policy that takes the
		// request in and reads the payload could have judged it.
		d.PolicyIDs = []string{BuiltinPayloadUnrepresentable}
		return d
	}

	dec, diag := cedar.Authorize((*setIter)(s), ents, cedar.Request{
		Principal: ents.principal.UID,
		Action:    cedar.NewEntityUID(entityAction, cedar.String(req.Action)),
		Resource:  ents.resource.UID,
		Context:   ctx,
	})

	// Cedar skips a policy whose evaluation errors. For a forbid that is
	// fail-open, so an erroring forbid denies here; so is it for a permit
	// that asks for approval (a payload value Cedar cannot hold, an
	// amount past int64, makes its condition error): a request another
	// permit allows then goes to approval.
	var forbidErrs, approvalErrs []string
	for _, e := range diag.Errors {
		d.Errors = append(d.Errors, "policy "+string(e.PolicyID)+": "+shortMessage(e.Message))
		switch m := s.meta[e.PolicyID]; {
		case m.forbid:
			forbidErrs = append(forbidErrs, string(e.PolicyID))
		case m.approval:
			approvalErrs = append(approvalErrs, string(e.PolicyID))
		}
	}
	switch {
	case dec == cedar.Allow && len(forbidErrs) == 0:
		d.Allow = true
		d.PolicyIDs = make([]string, 0, len(diag.Reasons)+len(approvalErrs))
		for _, r := range diag.Reasons {
			d.PolicyIDs = append(d.PolicyIDs, string(r.PolicyID))
			if s.meta[r.PolicyID].approval {
				d.Approval = true
			}
		}
		if len(approvalErrs) > 0 {
			d.Approval = true
			d.PolicyIDs = append(d.PolicyIDs, approvalErrs...)
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
	if len(d.PolicyIDs) > decision.MaxPolicyIDs {
		// A decision token names at most this many: the first by id.
		d.PolicyIDs = d.PolicyIDs[:decision.MaxPolicyIDs]
	}
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

// buildContext returns the context of req, the notes of payload fields
// left out, and whether one was (payloadRecord).
func buildContext(req Request) (cedar.Record, []string, bool) {
	t := req.Time.UTC()
	if len(req.Budget) == 0 && req.Payload == nil {
		if c := lastAuthorizeContext.Load(); c != nil && c.unix == t.Unix() {
			return c.rec, nil, false
		}
		rec := cedar.NewRecord(cedar.RecordMap{
			"time":   cedar.Long(t.Unix()),
			"hour":   cedar.Long(t.Hour()),
			"budget": emptyRecord,
			"stage":  stageAuthorizeValue,
		})
		lastAuthorizeContext.Store(&authorizeContext{unix: t.Unix(), rec: rec})
		return rec, nil, false
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
	omitted := false
	if req.Payload != nil {
		rm["stage"] = stageContentValue
		rm["payload"], omitted = payloadRecord(req.Payload, &notes)
	}
	return cedar.NewRecord(rm), notes, omitted
}

// Evaluation errors are reduced to their kind: cedar-go quotes some
// request values in its messages and writes others bare (an IP address
// or a datetime character it could not parse), so no part of a message
// is kept unless it is known to come from cedar-go or the policy text.
var (
	// evalKinds are cedar-go's error kinds, each the start of a message
	// or, for the entity one, its end.
	evalKinds = [...]string{
		"type error",
		"integer overflow",
		"error parsing decimal value",
		"error parsing ip value",
		"error parsing datetime value",
		"error parsing duration value",
		"duration out of range",
		"incompatible types in comparison",
		"wrong number of arguments provided to extension function",
		"function does not exist",
	}
	// typeDetail is what follows "type error": type names only.
	typeDetail = regexp.MustCompile("^: expected [a-z_ ,()\\[\\]`]+ got [a-z_]+$")
	// missingAttr is a missing attribute, named in the policy text.
	missingAttr = regexp.MustCompile("does not have the attribute `([^`]*)`$")
	attrName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
)

// shortMessage makes a Cedar evaluation error safe to log: its kind from
// evalKinds (a type error with the type names), a missing attribute with
// the attribute's name when it is a policy identifier, an entity that
// does not exist without the entity; anything else is "evaluation
// error". Request values never pass.
func shortMessage(msg string) string {
	if m := missingAttr.FindStringSubmatch(msg); m != nil {
		prefix := ""
		if strings.HasPrefix(msg, "record ") {
			prefix = "record "
		}
		if !attrName.MatchString(m[1]) {
			return "record does not have an attribute"
		}
		return prefix + "does not have the attribute `" + m[1] + "`"
	}
	if strings.HasPrefix(msg, "entity ") && strings.HasSuffix(msg, " does not exist") && !strings.HasPrefix(msg, "entity type") {
		return "entity does not exist"
	}
	for _, k := range evalKinds {
		if !strings.HasPrefix(msg, k) {
			continue
		}
		if rest := msg[len(k):]; k == "type error" && typeDetail.MatchString(rest) {
			return msg
		}
		return k
	}
	return "evaluation error"
}
