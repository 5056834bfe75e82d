// Package policy owns agentgw's configurable authorization: Cedar policies
// (github.com/cedar-policy/cedar-go) evaluated after the built-in gates
// (signature, credential, scope, tenant, catalog), which it never replaces.
//
// It knows nothing of NATS, envelopes, keys or the catalog: the gateway
// hands it a Request made of plain strings and maps, and gets back a
// Decision naming the policies that decided and the version of the set
// they came from.
//
// # Cedar mapping
//
//	principal  Agent::"<agent key>"   {tenant, service, issuer: String, scopes: Set<String>}
//	action     Action::"<capability>" read, delegate, tool_call, workflow_command, approve, respond
//	resource   Target::"<target>"     {tenant, kind, risk: String}
//	context    {
//	  time:    Long   unix seconds of the gateway's clock
//	  hour:    Long   UTC hour 0..23
//	  stage:   String "authorize" (payload still sealed) or "content" (after opening)
//	  budget:  Record of Long, e.g. {agent_remaining, tenant_remaining, target_remaining}; {} when unknown
//	  payload: Record of the policy-visible payload fields; ABSENT at stage "authorize"
//	}
//
// Entities carry no parents, so `principal in X` and `resource in X` match
// only X itself; use attributes (principal.tenant, resource.kind) instead.
//
// # Decisions
//
// Forbid wins; with no determining permit the answer is deny (Cedar's
// semantics). Three agentgw rules sit on top of Cedar:
//
//   - Tenant isolation: if the principal's tenant is empty or differs from
//     the resource's, the decision is deny with PolicyIDs
//     ["builtin:tenant_isolation"], whatever the policies say. The gateway
//     checks this earlier too; this is the second lock.
//   - Forbids fail closed: Cedar skips a policy whose evaluation errors,
//     which for a forbid means "not forbidden". Here a forbid that errors
//     denies, and its id is listed among the deciders with the error in
//     Decision.Errors. A permit that errors is skipped (it grants nothing),
//     but one that carries @approval("required") still asks for it: a
//     request another permit allows then needs approval, and the erroring
//     permit's id is listed among the deciders. Otherwise an amount of a
//     type the condition cannot compare would make "approval above an
//     amount" vanish.
//   - Payloads fail closed: when a policy-visible field had to be left
//     out of the policy's view (Payload values, below) and a policy that
//     takes the request in reads the payload, the decision is deny with
//     PolicyIDs ["builtin:payload_unrepresentable"], whatever the
//     policies say: a forbid guarded by `context.payload has` the field
//     would otherwise pass it.
//
// A Decision's Approval is set when any determining permit carries
// @approval("required"), or an erroring one does; routing a high-risk target to approval by its
// catalog risk class is the gateway's job, not this package's.
//
// # Two stages and the payload idiom
//
// The gateway decides twice: at stage "authorize" before the payload is
// opened (Request.Payload == nil, so context has no payload attribute),
// and at stage "content" afterwards (Request.Payload non-nil, possibly
// empty, holding only the fields the catalog marks policy-visible). Both
// must allow. Write content rules as forbids guarded by `context has
// payload`:
//
//	@id("refunds.max_amount")
//	forbid (principal, action == Action::"tool_call", resource == Target::"refunds.draft_refund")
//	when { context has payload && context.payload.amount_cents > 100000 };
//
// At authorize the guard is false: no forbid, no error. At content the
// guard is true and the comparison runs; if amount_cents is missing or not
// a Long, the forbid errors and therefore denies (fail closed). Do not
// add `context.payload has amount_cents &&` unless a missing field really
// should pass. A permit that reads the payload cannot permit at authorize
// (its guard is false there), so the request would be denied before its
// payload is ever opened: express payload conditions as forbids. Load
// rejects a policy that reads context.payload without any
// `context has payload` test in it.
//
// # Payload values
//
// Strings, booleans, objects (Records) and arrays (Sets: unordered,
// duplicates merged) map directly. A JSON number (float64 or json.Number)
// that is integral and fits int64 becomes a Long; a non-integral one with
// at most four fractional digits within Cedar's decimal range becomes a
// Decimal (compare it with .greaterThan etc.); anything else (more
// precision, out of range, null, another Go type, nesting deeper than
// maxPayloadDepth) is omitted and noted in Decision.Errors by field name
// only; so is a field whose array elements and object members would take
// the payload past maxPayloadElements (256, counted at every depth and
// across fields): cedar-go's sets probe linearly on colliding hashes, so
// conversion stops at the bound. When a field was left out (a null field
// is absent, and hides nothing) and a policy that takes the request in
// reads the payload, the payload is denied whole at stage content
// (BuiltinPayloadUnrepresentable): a field left out would pass a forbid
// guarded by `context.payload has` it. A json.Number is read from its decimal text exactly, whatever its
// spelling: 150, 150.0, 1.5e2 and 15000e-2 are all Long 150, and
// 100000.00000000000000001e0 is omitted as 100000.00000000000000001 is
// (a float64 is taken as the shortest decimal that reads back as it).
// Omitting rather than rounding keeps a policy from deciding on a value
// the agent did not send, and the payload is denied (the third rule,
// above). What is omitted is always a whole top-level field: an object
// or array holding a value that cannot be represented, at any depth, is
// omitted with it, so a condition never judges a Set or Record with
// elements left out (an allow-list's containsAll would pass the rest).
//
// # Sets, versions and reloads
//
// A Set is immutable. Each policy's id comes from its @id("...")
// annotation, else "<file>:<index>" (base name, 0-based index in file).
// Ids are unique across the set. Version is "sha256:" + hex of the
// canonical concatenation of the files: sorted by base name, each written
// as name, NUL, decimal length, NUL, bytes. It changes when any byte of
// any file (or a file's name) changes and is stable otherwise.
//
// Engine holds the current Set in an atomic pointer: Decide is lock-free
// and sees either the old or the new set, never a mix. Watch polls the
// files and reloads on change or on Reload(); a broken file keeps the old
// set. Load and Check report every problem at once, each naming file,
// line and column; nothing is partially loaded.
package policy
