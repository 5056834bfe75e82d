package journal

import (
	"errors"
	"fmt"
	"time"
)

// Op says what a record does to the ledger. The values are part of the
// wire format: append only, never renumber.
type Op uint8

// Record operations (format version 1).
const (
	// OpReplay records a replay entry: (Tenant, Agent, ID = message id) →
	// Seq (ingress stream sequence), Expires, Digest (body digest),
	// Decision.
	OpReplay Op = 1
	// OpIdem records an idempotency entry: (Tenant, Agent, ID =
	// idempotency key) → Digest (payload digest), FirstMessageID,
	// Expires, Decision.
	OpIdem Op = 2
	// OpMarker sets the single-use marker (MarkerKind, ID) until Expires.
	OpMarker Op = 3
	// OpHold puts hold ID with deadline Expires and Value, replacing any
	// hold with that ID.
	OpHold Op = 4
	// OpHoldDelete removes hold ID.
	OpHoldDelete Op = 5
	// OpOutcome records the exact outputs (Value, opaque here) of ingress
	// sequence Seq, so a new owner re-emits them on redelivery instead of
	// deciding again.
	OpOutcome Op = 6

	// opFence is written by Writer.Claim; Replay never passes it on.
	opFence Op = 127
)

func (o Op) String() string {
	switch o {
	case OpReplay:
		return "replay"
	case OpIdem:
		return "idem"
	case OpMarker:
		return "marker"
	case OpHold:
		return "hold"
	case OpHoldDelete:
		return "hold_delete"
	case OpOutcome:
		return "outcome"
	case opFence:
		return "fence"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Decision mirrors the ledger's record of what the gateway decided, as
// strings: the journal does not interpret it.
type Decision struct {
	Route         string
	Reason        string
	Target        string
	Capability    string
	PolicyIDs     []string
	PolicyVersion string
	OutputMsgID   string
}

// Record is one thing the ledger must not forget. Op says which fields
// it uses (see the Op constants); every other field must be zero, so that
// nothing is silently dropped on the way. Times are kept to the
// nanosecond and come back from Replay in UTC without a monotonic reading.
type Record struct {
	Op             Op
	Tenant         string    // replay, idem
	Agent          string    // replay, idem
	ID             string    // replay: message id; idem: idempotency key; marker, hold, hold delete: id
	MarkerKind     string    // marker
	Seq            uint64    // replay, outcome: ingress stream sequence
	Expires        time.Time // replay, idem, marker: expiry; hold: deadline
	Digest         [32]byte  // replay: body digest; idem: payload digest
	FirstMessageID string    // idem
	Decision       Decision  // replay, idem
	Value          []byte    // hold: value; outcome: the outputs
}

// Limits of one record's parts, checked by Validate.
const (
	MaxIDBytes    = 1024    // each string field
	MaxValueBytes = 8 << 20 // Value (a message must still fit MaxMessageBytes)
	maxPolicyIDs  = 1024
)

// Validate reports what is wrong with r, or nil. Errors wrap ErrInvalid.
func (r Record) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("journal: %s record: "+format+": %w", append([]any{r.Op}, append(args, ErrInvalid)...)...))
	}
	need := func(name, v string) {
		if v == "" {
			add("%s is required", name)
		}
	}
	none := func(name string, zero bool) {
		if !zero {
			add("%s is not part of this record", name)
		}
	}
	for _, f := range [...]struct{ name, v string }{
		{"tenant", r.Tenant}, {"agent", r.Agent}, {"id", r.ID}, {"marker kind", r.MarkerKind}, {"first message id", r.FirstMessageID},
	} {
		if len(f.v) > MaxIDBytes {
			add("%s is %d bytes, max %d", f.name, len(f.v), MaxIDBytes)
		}
	}
	if len(r.Value) > MaxValueBytes {
		add("value is %d bytes, max %d", len(r.Value), MaxValueBytes)
	}
	if !r.Expires.IsZero() && (r.Expires.Year() < 1970 || r.Expires.Year() > 2261) {
		add("time %s outside 1970-2261", r.Expires)
	}
	decisionZero := r.Decision.Route == "" && r.Decision.Reason == "" && r.Decision.Target == "" && r.Decision.Capability == "" &&
		len(r.Decision.PolicyIDs) == 0 && r.Decision.PolicyVersion == "" && r.Decision.OutputMsgID == ""
	if len(r.Decision.PolicyIDs) > maxPolicyIDs {
		add("%d policy ids, max %d", len(r.Decision.PolicyIDs), maxPolicyIDs)
	}
	for _, s := range append([]string{r.Decision.Route, r.Decision.Reason, r.Decision.Target, r.Decision.Capability, r.Decision.PolicyVersion, r.Decision.OutputMsgID}, r.Decision.PolicyIDs...) {
		if len(s) > MaxIDBytes {
			add("a decision field is %d bytes, max %d", len(s), MaxIDBytes)
			break
		}
	}
	switch r.Op {
	case OpReplay, OpIdem:
		need("tenant", r.Tenant)
		need("agent", r.Agent)
		need("id", r.ID)
		if r.Expires.IsZero() {
			add("expires is required")
		}
		none("marker kind", r.MarkerKind == "")
		none("value", r.Value == nil)
		if r.Op == OpReplay {
			if r.Seq == 0 {
				add("seq is required")
			}
			none("first message id", r.FirstMessageID == "")
		} else {
			need("first message id", r.FirstMessageID)
			none("seq", r.Seq == 0)
		}
	case OpMarker:
		need("marker kind", r.MarkerKind)
		need("id", r.ID)
		if r.Expires.IsZero() {
			add("expires is required")
		}
		none("tenant", r.Tenant == "")
		none("agent", r.Agent == "")
		none("seq", r.Seq == 0)
		none("digest", r.Digest == [32]byte{})
		none("first message id", r.FirstMessageID == "")
		none("decision", decisionZero)
		none("value", r.Value == nil)
	case OpHold, OpHoldDelete:
		need("id", r.ID)
		if r.Op == OpHold && r.Expires.IsZero() {
			add("deadline (expires) is required")
		}
		if r.Op == OpHoldDelete {
			none("expires", r.Expires.IsZero())
			none("value", r.Value == nil)
		}
		none("tenant", r.Tenant == "")
		none("agent", r.Agent == "")
		none("marker kind", r.MarkerKind == "")
		none("seq", r.Seq == 0)
		none("digest", r.Digest == [32]byte{})
		none("first message id", r.FirstMessageID == "")
		none("decision", decisionZero)
	case OpOutcome:
		if r.Seq == 0 {
			add("seq is required")
		}
		if len(r.Value) == 0 {
			add("value (the outputs) is required")
		}
		none("tenant", r.Tenant == "")
		none("agent", r.Agent == "")
		none("id", r.ID == "")
		none("marker kind", r.MarkerKind == "")
		none("expires", r.Expires.IsZero())
		none("digest", r.Digest == [32]byte{})
		none("first message id", r.FirstMessageID == "")
		none("decision", decisionZero)
	default:
		add("unknown op")
	}
	return errors.Join(errs...)
}

// expiry is the time until which r must stay in the journal; zero for an
// outcome and a hold deletion, whose lifetime the journal's window covers
// (they matter only until the ingress message is acknowledged, or until
// the hold's own deadline).
func (r Record) expiry() time.Time {
	switch r.Op {
	case OpReplay, OpIdem, OpMarker, OpHold:
		return r.Expires
	}
	return time.Time{}
}
