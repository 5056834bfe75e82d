package envelope

import (
	"math"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

// Freshness is the lifetime rule of docs/wire.md. A body is fresh at now when
//
//	0 < expires_at − issued_at ≤ MaxTTL  and
//	issued_at − Skew ≤ now ≤ expires_at + Skew.
//
// It is also the one derivation of every window that must outlast the
// fresh copies of a message: LastFresh, Grace and Span are computed from
// the same two values Check uses, so a record kept for them (the replay
// ledger's entries, the journal a ledger is rebuilt from) cannot expire
// while Check still accepts a copy of its message.
//
// The zero value is the default rule (DefaultMaxTTL, no skew).
type Freshness struct {
	// MaxTTL is the longest expires_at − issued_at; ≤ 0 means DefaultMaxTTL.
	MaxTTL time.Duration
	// Skew is the clock skew tolerated on either side of a body's
	// lifetime; a negative value counts as zero.
	Skew time.Duration
}

func (f Freshness) maxTTL() time.Duration {
	if f.MaxTTL <= 0 {
		return DefaultMaxTTL
	}
	return f.MaxTTL
}

// Grace is how long after its expires_at a body stays fresh: Skew, at
// least zero.
func (f Freshness) Grace() time.Duration { return max(f.Skew, 0) }

// LastFresh returns the last instant at which a body expiring at expires
// is fresh: expires + Grace.
func (f Freshness) LastFresh(expires time.Time) time.Time { return expires.Add(f.Grace()) }

// Span is the longest one body stays fresh: from issued_at − Skew to
// expires_at + Skew, MaxTTL + 2·Skew (saturating). A record written when a
// copy was first accepted outlasts every fresh copy if it is kept Span
// after it was written.
func (f Freshness) Span() time.Duration {
	s := f.maxTTL()
	for range 2 {
		if s > math.MaxInt64-f.Grace() {
			return math.MaxInt64
		}
		s += f.Grace()
	}
	return s
}

// Check checks the body's lifetime against now, to the nanosecond, in
// order: TTLTooLong when expires_at − issued_at is not positive or
// exceeds MaxTTL (a property of the message alone, so reported first);
// MessageExpired when now is after LastFresh(expires_at); IssuedInFuture
// when issued_at > now + Skew. Errors are *reason.Denial.
func (f Freshness) Check(b *Body, now time.Time) error {
	maxTTL, skew := f.maxTTL(), f.Grace()
	// Instants are compared, not their difference: two times of the wire
	// can be further apart than a Duration holds (Sub saturates), and a
	// saturated ttl is not more than a MaxTTL of the longest Duration.
	if !b.ExpiresAt.After(b.IssuedAt) || b.ExpiresAt.After(b.IssuedAt.Add(maxTTL)) {
		return reason.Deny(reason.TTLTooLong, "ttl %s; want (0, %s]", b.ExpiresAt.Sub(b.IssuedAt), maxTTL)
	}
	if now.After(f.LastFresh(b.ExpiresAt)) {
		return reason.Deny(reason.MessageExpired, "expired %s ago (skew %s)", now.Sub(b.ExpiresAt), skew)
	}
	if b.IssuedAt.After(now.Add(skew)) {
		return reason.Deny(reason.IssuedInFuture, "issued %s ahead (skew %s)", b.IssuedAt.Sub(now), skew)
	}
	return nil
}
