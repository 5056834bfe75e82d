package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"
)

// Key layout. Every key starts with one kind byte; the rest depends on the
// kind. Integers are big-endian so that byte order is numeric order.
//
//	f                                     format: version and generation width
//	p                                     horizon: end of the latest pruned generation (ns)
//	m                                     marker horizon: latest message expiry of a pruned marker + 1 (ns)
//	n                                     new: created empty, its owner has not said what it lacks
//	l                                     lost before: the ledger lacks what was decided before (ns)
//	g <gen u64>                           generation metadata (max seq, count)
//	r <gen u64> tenant 0 agent 0 msgid    replay entry
//	i <gen u64> tenant 0 agent 0 idemkey  idempotency entry
//	h <deadline u64 ns> id                hold, ordered by deadline
//	H id                                  hold index: id -> deadline
//	o kind 0 id                           single-use marker
//	x <expires u64 ns> kind 0 id          marker expiry index
//	q <seq u64>                           outcome of an ingress sequence (outcome.go)
//
// Replay and idempotency keys of one generation form one contiguous range
// (r<gen> .. r<gen+1>), which Prune drops with a single DeleteRange. Key
// components never contain NUL, so the separators are unambiguous.
const (
	kindFormat        byte = 'f'
	kindHorizon       byte = 'p'
	kindMarkerHorizon byte = 'm'
	kindNew           byte = 'n'
	kindLostBefore    byte = 'l'
	kindGen           byte = 'g'
	kindReplay        byte = 'r'
	kindIdem          byte = 'i'
	kindHold          byte = 'h'
	kindHoldIndex     byte = 'H'
	kindMarker        byte = 'o'
	kindMarkerExpiry  byte = 'x'
)

// Bounds on key components. They are far above what the wire format allows
// (message ids and idempotency keys are at most 128 bytes, tenants 64) and
// keep every key well under Pebble's comfortable size.
const (
	maxPartLen = 256
	maxKindLen = 64
)

// maxTime is the latest time the ledger stores: int64 nanoseconds since the
// Unix epoch reach 2262; 2200 leaves room for a generation's width.
var maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

var (
	formatKey        = []byte{kindFormat}
	horizonKey       = []byte{kindHorizon}
	markerHorizonKey = []byte{kindMarkerHorizon}
	newKey           = []byte{kindNew}
	lostKey          = []byte{kindLostBefore}
)

// checkPart reports whether s is usable as a key component.
func checkPart(what, s string, max int) error {
	switch {
	case s == "":
		return fmt.Errorf("store: %s is empty: %w", what, ErrInvalid)
	case len(s) > max:
		return fmt.Errorf("store: %s is %d bytes, max %d: %w", what, len(s), max, ErrInvalid)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("store: %s contains NUL: %w", what, ErrInvalid)
	}
	return nil
}

// checkTime reports whether t can be stored: after the Unix epoch and
// before maxTime.
func checkTime(what string, t time.Time) error {
	if t.UnixNano() <= 0 || !t.Before(maxTime) {
		return fmt.Errorf("store: %s %v out of range: %w", what, t, ErrInvalid)
	}
	return nil
}

func (k ReplayKey) check() error {
	if err := checkPart("tenant", k.Tenant, maxPartLen); err != nil {
		return err
	}
	if err := checkPart("agent", k.Agent, maxPartLen); err != nil {
		return err
	}
	return checkPart("message id", k.MessageID, maxPartLen)
}

func (k IdemKey) check() error {
	if err := checkPart("tenant", k.Tenant, maxPartLen); err != nil {
		return err
	}
	if err := checkPart("agent", k.Agent, maxPartLen); err != nil {
		return err
	}
	return checkPart("idempotency key", k.Key, maxPartLen)
}

// appendEntryKey appends the key of a replay or idempotency entry.
func appendEntryKey(dst []byte, kind byte, gen uint64, tenant, agent, id string) []byte {
	dst = append(dst, kind)
	dst = binary.BigEndian.AppendUint64(dst, gen)
	dst = append(dst, tenant...)
	dst = append(dst, 0)
	dst = append(dst, agent...)
	dst = append(dst, 0)
	return append(dst, id...)
}

// genRange returns the bounds [start, end) of generation gen's keys of
// the given kind.
func genRange(kind byte, gen uint64) (start, end []byte) {
	start = binary.BigEndian.AppendUint64([]byte{kind}, gen)
	if gen == math.MaxUint64 {
		return start, []byte{kind + 1}
	}
	end = binary.BigEndian.AppendUint64([]byte{kind}, gen+1)
	return start, end
}

func genKey(gen uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{kindGen}, gen)
}

func holdKey(deadline time.Time, id string) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 9+len(id)), uint64(deadline.UnixNano()))
	return append(append([]byte{kindHold}, k...), id...)
}

func holdIndexKey(id string) []byte {
	return append([]byte{kindHoldIndex}, id...)
}

func markerKey(kind, id string) []byte {
	k := make([]byte, 0, 2+len(kind)+len(id))
	k = append(k, kindMarker)
	k = append(k, kind...)
	k = append(k, 0)
	return append(k, id...)
}

func markerExpiryKey(expires time.Time, kind, id string) []byte {
	k := make([]byte, 0, 10+len(kind)+len(id))
	k = append(k, kindMarkerExpiry)
	k = binary.BigEndian.AppendUint64(k, uint64(expires.UnixNano()))
	k = append(k, kind...)
	k = append(k, 0)
	return append(k, id...)
}

// timeBound returns the key that sorts after every kind-prefixed,
// time-ordered key (holds, marker expiries) whose time is ≤ t.
func timeBound(kind byte, t time.Time) []byte {
	n := t.UnixNano()
	if n < 0 {
		n = 0
	}
	return binary.BigEndian.AppendUint64([]byte{kind}, uint64(n)+1)
}
