package store

import (
	"errors"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

// Errors returned by the store. Pebble's errors never cross the package
// edge: they are wrapped with one of these sentinels (and their text).
var (
	// ErrCorrupt: the store on disk is damaged (unreadable MANIFEST, missing
	// or damaged table, undecodable value). The ledger refuses to run on it;
	// an operator must restore or remove the directory.
	ErrCorrupt = errors.New("store: ledger is corrupt")
	// ErrLocked: another Ledger (in this or another process) has the
	// directory open.
	ErrLocked = errors.New("store: ledger is in use")
	// ErrClosed: the Ledger was closed.
	ErrClosed = errors.New("store: ledger is closed")
	// ErrIO: a read or write failed. After a failed write the ledger reopens
	// its database before the next operation; the failed batch may or may not
	// be durable. A failed log write may end the process instead (package
	// doc, Failures).
	ErrIO = errors.New("store: storage failure")
	// ErrInvalid: an argument cannot be stored (empty or oversized key
	// component, NUL byte, time out of range, batch already finished).
	ErrInvalid = errors.New("store: invalid argument")
)

// Route is where a decision sent a message.
type Route string

// Routes (docs/design.md §4).
const (
	RouteAllow    Route = "allow"
	RouteApproval Route = "approval"
	RouteDeny     Route = "deny"
)

// Decision is what the gateway decided for one ingress message; it is
// recorded so that a redelivery re-emits exactly the same outputs.
type Decision struct {
	Route         Route
	Reason        reason.Code // "" for a plain allow
	Target        string
	Capability    string
	PolicyIDs     []string
	PolicyVersion string
	// OutputMsgID is the gateway-derived Nats-Msg-Id of the output, so a
	// re-emit is deduplicated by the output stream.
	OutputMsgID string
}

// ReplayKey names a message: its nonce is unique per (tenant, agent).
type ReplayKey struct{ Tenant, Agent, MessageID string }

// ReplayEntry is the ledger's record of a message.
type ReplayEntry struct {
	Seq        uint64    // ingress stream sequence, ≥ 1
	Expires    time.Time // envelope expires_at
	BodyDigest [32]byte
	Decision   Decision
	Acked      bool // outputs acknowledged by JetStream (MarkAcked)
}

// IdemKey names an idempotent request.
type IdemKey struct{ Tenant, Agent, Key string }

// IdemEntry is the ledger's record of the first request with an
// idempotency key.
type IdemEntry struct {
	PayloadDigest [32]byte
	MessageID     string // the first message that used the key
	Expires       time.Time
	Decision      Decision
}

// Hold is a durable record with a deadline (DueHolds).
type Hold struct {
	ID       string
	Deadline time.Time
	Value    []byte
}

// PruneStats reports one Prune run.
type PruneStats struct {
	Generations int    // generations deleted
	Entries     uint64 // approximate entries they held (from metadata)
	Held        int    // generations past their end but kept: unacknowledged entries
	Markers     int    // expired markers deleted
	MoreMarkers bool   // the marker limit was hit; call Prune again
}

// Stats is a cheap summary from in-memory metadata and Pebble's metrics.
type Stats struct {
	Generations   int    // generations on disk
	ApproxEntries uint64 // replay and idempotency entries written to them (a rewrite counts again)
	AckFloor      uint64 // highest ack floor passed to Prune
	DiskBytes     uint64 // Pebble's disk space usage
	Corruptions   uint64 // corrupt blocks met by reads since Open (each read failed with ErrCorrupt)
	// Lookups since Open, per generation probed: answered by the
	// generation's key filter without reading the database, and read
	// from Pebble.
	FilteredProbes, PebbleProbes uint64
	FilterBytes                  uint64 // the key filters' memory
	// L0Sublevels is the depth of Pebble's L0: the overlapping tables a
	// lookup that reaches Pebble checks first. Pebble compacts L0 at half
	// l0CompactionThreshold (8) and stalls writes at l0StopWritesThreshold (48).
	L0Sublevels int
}
