package envelope

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

func TestFreshnessCheck(t *testing.T) {
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
			err := Freshness{MaxTTL: maxTTL, Skew: skew}.Check(tt.b, tt.now)
			if tt.want == "" && err != nil || tt.want != "" && !errors.Is(err, tt.want) {
				t.Fatalf("Check(%v) = %v; want %q", tt.now, err, tt.want)
			}
		})
	}
	t.Run("defaults", func(t *testing.T) {
		if err := (Freshness{Skew: -time.Hour}).Check(body(t0, DefaultMaxTTL), t0); err != nil {
			t.Errorf("Check(maxTTL 0) = %v; want default 5m", err)
		}
		if err := (Freshness{Skew: -time.Hour}).Check(body(t0, time.Minute), t0.Add(time.Minute+time.Second)); !errors.Is(err, reason.MessageExpired) {
			t.Errorf("Check(negative skew) = %v; want skew 0", err)
		}
	})
	// The longest MaxTTL, about 292 years: a body living 9998 years is
	// still longer, though its expires_at − issued_at as a Duration
	// saturates at that very value.
	t.Run("ttl-beyond-the-longest-max-ttl", func(t *testing.T) {
		long := &Body{IssuedAt: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), ExpiresAt: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}
		f := Freshness{MaxTTL: math.MaxInt64, Skew: math.MaxInt64}
		if err := f.Check(long, t0); !errors.Is(err, reason.TTLTooLong) {
			t.Errorf("Check(9998 years, MaxTTL %s) = %v; want %s", f.MaxTTL, err, reason.TTLTooLong)
		}
		if err := f.Check(body(t0, math.MaxInt64), t0); err != nil {
			t.Errorf("Check(ttl = MaxTTL = %s) = %v; want fresh", f.MaxTTL, err)
		}
		if err := f.Check(body(t0.Add(-time.Nanosecond), math.MaxInt64), t0); err != nil {
			t.Errorf("Check(ttl = MaxTTL, issued a nanosecond ago) = %v; want fresh", err)
		}
		if err := f.Check(&Body{IssuedAt: t0, ExpiresAt: t0.Add(math.MaxInt64).Add(time.Nanosecond)}, t0); !errors.Is(err, reason.TTLTooLong) {
			t.Errorf("Check(ttl = MaxTTL + 1 ns) = %v; want %s", err, reason.TTLTooLong)
		}
	})
}

// TestFreshnessWindows: Grace, LastFresh and Span bound exactly the
// instants Check accepts, so a record kept for them outlasts every fresh
// copy of its message and no longer than needed.
func TestFreshnessWindows(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 1, 8, 41, 0, time.UTC)
	for _, f := range []Freshness{
		{},
		{MaxTTL: time.Second},
		{MaxTTL: 5 * time.Minute, Skew: 30 * time.Second},
		{MaxTTL: time.Hour, Skew: 5 * time.Minute},
		{MaxTTL: 2 * time.Minute, Skew: -time.Minute},
	} {
		maxTTL := f.MaxTTL
		if maxTTL <= 0 {
			maxTTL = DefaultMaxTTL
		}
		skew := max(f.Skew, 0)
		if got := f.Grace(); got != skew {
			t.Errorf("%+v.Grace() = %s; want %s", f, got, skew)
		}
		if got := f.Span(); got != maxTTL+2*skew {
			t.Errorf("%+v.Span() = %s; want %s", f, got, maxTTL+2*skew)
		}
		// The body fresh longest: TTL = MaxTTL.
		b := &Body{IssuedAt: t0, ExpiresAt: t0.Add(maxTTL)}
		first, last := t0.Add(-skew), f.LastFresh(b.ExpiresAt)
		if !last.Equal(b.ExpiresAt.Add(skew)) {
			t.Errorf("%+v.LastFresh = %v; want expires_at + %s", f, last, skew)
		}
		for _, at := range []time.Time{first, last} {
			if err := f.Check(b, at); err != nil {
				t.Errorf("%+v.Check(%v) = %v; want fresh", f, at, err)
			}
		}
		if err := f.Check(b, first.Add(-time.Nanosecond)); !errors.Is(err, reason.IssuedInFuture) {
			t.Errorf("%+v.Check(before the first fresh instant) = %v; want %s", f, err, reason.IssuedInFuture)
		}
		if err := f.Check(b, last.Add(time.Nanosecond)); !errors.Is(err, reason.MessageExpired) {
			t.Errorf("%+v.Check(after LastFresh) = %v; want %s", f, err, reason.MessageExpired)
		}
		if got := last.Sub(first); got != f.Span() {
			t.Errorf("%+v: fresh for %s; Span() = %s", f, got, f.Span())
		}
	}
	if got := (Freshness{MaxTTL: math.MaxInt64 - time.Second, Skew: time.Hour}).Span(); got != math.MaxInt64 {
		t.Errorf("Span() near the largest duration = %s; want it saturated", got)
	}
}
