package mcp

import (
	"crypto/sha256"
	"strconv"
)

// The tools/call ids one bearer token has used, kept for the token's
// lifetime. MCP clients number a session's requests upwards, so an
// integer id is kept as a position in a window below the highest integer
// id seen: replayWindow ids at a constant cost per token, however many
// calls it makes. An id the window has passed (more than replayWindow
// below the highest) is refused: it may have been used and forgotten.
// Any other id (a string, a fraction) is kept exactly, up to
// maxOtherIDs per token; past that a new one is refused.
const (
	replayWindow = 1024
	maxOtherIDs  = 256
)

// replaySet is the ids one token has used. Callers serialize access.
type replaySet struct {
	started bool
	top     int64                      // the highest integer id seen
	bits    [replayWindow / 64]uint64  // bit (top-n) mod replayWindow: n seen
	other   map[[sha256.Size]byte]bool // sha256 of every other id's JSON
}

// idVerdict is what use decided for one id.
type idVerdict int

const (
	idFresh    idVerdict = iota // not used before: recorded now
	idReplayed                  // used before with this token
	idTooOld                    // below the window: cannot be told from a replay
	idTooMany                   // a new non-integer id past maxOtherIDs
)

// use records id (the JSON-RPC id's JSON text) if this token has not
// used it, in time linear in its length.
func (r *replaySet) use(id []byte) idVerdict {
	n, ok := integerID(id)
	if !ok {
		sum := sha256.Sum256(id)
		switch {
		case r.other[sum]:
			return idReplayed
		case len(r.other) >= maxOtherIDs:
			return idTooMany
		}
		if r.other == nil {
			r.other = make(map[[sha256.Size]byte]bool)
		}
		r.other[sum] = true
		return idFresh
	}
	if !r.started {
		r.started, r.top = true, n
		r.set(n)
		return idFresh
	}
	if n > r.top {
		// Positions top+1..n are new: clear them (all, past a window).
		if d := uint64(n) - uint64(r.top); d >= replayWindow {
			r.bits = [replayWindow / 64]uint64{}
		} else {
			for k := uint64(1); k <= d; k++ {
				r.clear(r.top + int64(k))
			}
		}
		r.top = n
		r.set(n)
		return idFresh
	}
	if uint64(r.top)-uint64(n) >= replayWindow {
		return idTooOld
	}
	if r.has(n) {
		return idReplayed
	}
	r.set(n)
	return idFresh
}

func (r *replaySet) pos(n int64) (int, uint64) {
	p := uint64(n) % replayWindow
	return int(p / 64), 1 << (p % 64)
}

func (r *replaySet) set(n int64)      { i, b := r.pos(n); r.bits[i] |= b }
func (r *replaySet) clear(n int64)    { i, b := r.pos(n); r.bits[i] &^= b }
func (r *replaySet) has(n int64) bool { i, b := r.pos(n); return r.bits[i]&b != 0 }

// integerID reads id as a JSON integer in its one canonical spelling (no
// sign on zero, no leading zeros, no fraction or exponent) that fits an
// int64. Other spellings of a number are kept exactly, as strings are.
func integerID(id []byte) (int64, bool) {
	s := string(id)
	digits := s
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 19 || digits[0] == '0' && (len(digits) > 1 || len(s) > 1) {
		return 0, false
	}
	for i := range len(digits) {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
