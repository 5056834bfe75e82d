// Package catalog owns the capability catalog: the targets agents may ask
// for, what each requires (capability kind, scope, tenants), how risky it
// is, whether it needs approval, which payloads it accepts (sealed only or
// plain too, and a JSON Schema), the consumer key payloads are re-sealed
// to, and which payload fields policy and approvers may see.
//
// A Catalog is compiled once (schemas compiled, names validated) and is
// immutable; reloading builds a new one. It knows nothing of NATS, Cedar
// or the ledger.
package catalog
