package envelope

import (
	"errors"
	"testing"
	"time"

	"github.com/agentgw/agentgw/reason"
)

func TestCheckFreshness(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 1, 8, 41, 0, time.UTC)
	body := func(issued time.Time, ttl time.Duration) *Body {
		return &Body{IssuedAt: issued, ExpiresAt: issued.Add(ttl)}
	}
	const maxTTL, skew = 5 * time.Minute, 30 * time.Second
	tests := []struct {
		name string
		b    *Body
		now  time.Time
		want reason.Code
	}{
		{"ok/at-issue", body(t0, time.Minute), t0, ""},
		{"ok/at-expiry-plus-skew", body(t0, time.Minute), t0.Add(time.Minute + skew), ""},
		{"ok/issued-skew-ahead", body(t0.Add(skew), time.Minute), t0, ""},
		{"ok/ttl-exactly-max", body(t0, maxTTL), t0, ""},
		{"deny/expired", body(t0, time.Minute), t0.Add(time.Minute + skew + time.Nanosecond), reason.MessageExpired},
		{"deny/expired-long-ago", body(t0, time.Minute), t0.Add(24 * time.Hour), reason.MessageExpired},
		{"deny/issued-in-future", body(t0.Add(skew+time.Second), time.Minute), t0, reason.IssuedInFuture},
		{"deny/ttl-too-long", body(t0, maxTTL+time.Second), t0, reason.TTLTooLong},
		{"deny/ttl-zero", body(t0, 0), t0, reason.TTLTooLong},
		{"deny/ttl-negative", body(t0, -time.Minute), t0, reason.TTLTooLong},
		{"deny/ttl-beyond-duration", &Body{IssuedAt: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), ExpiresAt: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)}, t0, reason.TTLTooLong},
		{"deny/ttl-negative-beyond-duration", &Body{IssuedAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), ExpiresAt: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)}, t0, reason.TTLTooLong},
		{"deny/ttl-checked-first", body(t0, 24*time.Hour), t0.Add(48 * time.Hour), reason.TTLTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.b.CheckFreshness(tt.now, maxTTL, skew)
			if tt.want == "" && err != nil || tt.want != "" && !errors.Is(err, tt.want) {
				t.Fatalf("CheckFreshness(%v) = %v; want %q", tt.now, err, tt.want)
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		if err := body(t0, DefaultMaxTTL).CheckFreshness(t0, 0, -time.Hour); err != nil {
			t.Errorf("CheckFreshness(maxTTL 0) = %v; want default 5m", err)
		}
		if err := body(t0, time.Minute).CheckFreshness(t0.Add(time.Minute+time.Second), 0, -time.Hour); !errors.Is(err, reason.MessageExpired) {
			t.Errorf("CheckFreshness(negative skew) = %v; want skew 0", err)
		}
	})
}
