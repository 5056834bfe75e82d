package envelope

import (
	"time"

	"github.com/agentgw/agentgw/reason"
)

// CheckFreshness checks the body's lifetime against now. maxTTL <= 0 means
// DefaultMaxTTL; a negative skew counts as zero. Checks, in order:
// TTLTooLong when expires_at - issued_at is not positive or exceeds maxTTL
// (a property of the message alone, so reported first); MessageExpired
// when now > expires_at + skew; IssuedInFuture when issued_at > now + skew.
// Errors are *reason.Denial.
func (b *Body) CheckFreshness(now time.Time, maxTTL, skew time.Duration) error {
	if maxTTL <= 0 {
		maxTTL = DefaultMaxTTL
	}
	skew = max(skew, 0)
	ttl := b.ExpiresAt.Sub(b.IssuedAt)
	if ttl <= 0 || ttl > maxTTL {
		return reason.Deny(reason.TTLTooLong, "ttl %s; want (0, %s]", ttl, maxTTL)
	}
	if now.After(b.ExpiresAt.Add(skew)) {
		return reason.Deny(reason.MessageExpired, "expired %s ago (skew %s)", now.Sub(b.ExpiresAt), skew)
	}
	if b.IssuedAt.After(now.Add(skew)) {
		return reason.Deny(reason.IssuedInFuture, "issued %s ahead (skew %s)", b.IssuedAt.Sub(now), skew)
	}
	return nil
}
