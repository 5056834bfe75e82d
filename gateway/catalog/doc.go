// Package catalog owns the capability catalog: the targets agents may ask
// for, what each requires (capability kind, scope, tenants), how risky it
// is, whether it needs approval, which payloads it accepts (sealed only or
// plain too, and a JSON Schema), the consumer key payloads are re-sealed
// to, and which payload fields policy and approvers may see.
//
// Visible (and sensitive) fields are matched by exact name, so a member
// differing from one only in case would slip past policy, approvers or
// redaction while a case-insensitive decoder downstream reads it as the
// field. Two rules close that: a target with such fields needs a schema
// closed at its top level that declares them (checked at load), and
// ValidateObject and ValidateResponse deny a member that case-folds
// (strings.EqualFold) to one of them without being it.
//
// A target is the aud of its decision tokens and its scope their scope
// (a reply token's scope is RespondScopePrefix + target), so Parse
// refuses a target or scope that decision.ValidClaimID refuses: the
// limit is the token's, stated there once, and broken at load time
// rather than when a request to the target has been allowed.
//
// A payload or response schema may not refer back to itself (a $ref
// cycle, $recursiveRef, $dynamicRef): an acyclic schema has a fixed
// depth, so validation costs time linear in a payload's size, where a
// recursive one under oneOf or anyOf costs time exponential in its
// nesting (recursion.go).
//
// A Catalog is compiled once (schemas compiled, names validated) and is
// immutable; reloading builds a new one. It knows nothing of NATS, Cedar
// or the ledger.
package catalog
