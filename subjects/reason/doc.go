// Package reason owns the one table of decision reasons that agentgw uses
// everywhere: in denied-stream subjects, metrics labels, audit events and
// the errors returned by every verification function.
//
// The table is append-only. A reason's string form is a stable,
// snake_case identifier that operators match on; renaming one is a
// breaking change. Package reason knows nothing of NATS, JSON or crypto.
package reason
