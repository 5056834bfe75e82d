package client

import (
	"errors"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/subjects/reason"
)

// The envelope time cases of envelope.json (docs/wire.md, "Freshness"):
// freshness_cases, an envelope with other issued_at and expires_at
// checked at an instant, and build_cases, an envelope built at an instant
// with a TTL. The times are compared to the nanosecond: most cases are a
// fraction of a millisecond from an edge, where a reader that cuts times
// to the millisecond decides otherwise. The Go and the TypeScript SDK
// read every case; each must come out as the file says.

// wvFreshCase is the search envelope with IssuedAt and ExpiresAt in place
// of its own (Body), which a reader reads as the instants
// IssuedAtUnixNano and ExpiresAtUnixNano, checked at Now (NowUnixNano)
// with the maximum TTL and the skew MaxTTLNs and SkewNs: Want is wvFresh
// or the reason code. Instants are Unix nanoseconds, lengths nanoseconds,
// both in decimal.
type wvFreshCase struct {
	Name              string `json:"name"`
	IssuedAt          string `json:"issued_at"`
	ExpiresAt         string `json:"expires_at"`
	Body              string `json:"body"`
	IssuedAtUnixNano  string `json:"issued_at_unix_nano"`
	ExpiresAtUnixNano string `json:"expires_at_unix_nano"`
	Now               string `json:"now"`
	NowUnixNano       string `json:"now_unix_nano"`
	MaxTTLNs          string `json:"max_ttl_ns"`
	SkewNs            string `json:"skew_ns"`
	Want              string `json:"want"`
}

// wvBuildCase is the search envelope's fields built at Now with a TTL of
// TTLNs nanoseconds (decimal): the body Body, or (Want) the reason code
// the build fails with.
type wvBuildCase struct {
	Name  string `json:"name"`
	Now   string `json:"now"`
	TTLNs string `json:"ttl_ns"`
	Body  string `json:"body,omitempty"`
	Want  string `json:"want"`
}

const wvFresh = "fresh"

// wvTimes is the times member pair of the scenario's envelopes.
const wvTimes = `"issued_at":"2026-11-26T01:08:41Z","expires_at":"2026-11-26T01:09:41Z"`

func wvWithTimes(t testing.TB, body, issued, expires string) string {
	if !strings.Contains(body, wvTimes) {
		t.Fatal("the envelope has other times")
	}
	return strings.Replace(body, wvTimes, `"issued_at":"`+issued+`","expires_at":"`+expires+`"`, 1)
}

func wvUnixNano(t testing.TB, s string) string {
	tt, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	n := new(big.Int).Mul(big.NewInt(tt.Unix()), big.NewInt(1e9))
	return n.Add(n, big.NewInt(int64(tt.Nanosecond()))).String()
}

// wvFreshnessCases: at the gateway's defaults (max_ttl 5 min, skew 30 s)
// unless a case says otherwise; the scenario's instant is 01:08:41.
func wvFreshnessCases(t testing.TB, body string) []wvFreshCase {
	const (
		maxTTL  = 5 * time.Minute
		skew    = 30 * time.Second
		longest = time.Duration(1<<63 - 1)
	)
	c := func(name, issued, expires, now string, maxTTL, skew time.Duration, want string) wvFreshCase {
		return wvFreshCase{Name: name, IssuedAt: issued, ExpiresAt: expires, Body: wvWithTimes(t, body, issued, expires),
			IssuedAtUnixNano: wvUnixNano(t, issued), ExpiresAtUnixNano: wvUnixNano(t, expires), Now: now, NowUnixNano: wvUnixNano(t, now), MaxTTLNs: strconv.FormatInt(int64(maxTTL), 10),
			SkewNs: strconv.FormatInt(int64(skew), 10), Want: want}
	}
	const at = "2026-11-26T01:08:41Z"
	return []wvFreshCase{
		// expires_at − issued_at, to the nanosecond.
		c("ttl_a_tenth_of_a_millisecond", "2026-11-26T01:08:41.0001Z", "2026-11-26T01:08:41.0002Z", at, maxTTL, skew, wvFresh),
		c("ttl_a_nanosecond", at, "2026-11-26T01:08:41.000000001Z", at, maxTTL, skew, wvFresh),
		c("ttl_zero_within_a_millisecond", "2026-11-26T01:08:41.0005Z", "2026-11-26T01:08:41.0005Z", at, maxTTL, skew, string(reason.TTLTooLong)),
		c("ttl_a_nanosecond_negative", "2026-11-26T01:08:41.000000001Z", at, at, maxTTL, skew, string(reason.TTLTooLong)),
		c("ttl_max_ttl_exactly_with_fractions", "2026-11-26T01:08:41.000999999Z", "2026-11-26T01:13:41.000999999Z", at, maxTTL, skew, wvFresh),
		c("ttl_max_ttl_and_a_nanosecond", at, "2026-11-26T01:13:41.000000001Z", at, maxTTL, skew, string(reason.TTLTooLong)),
		c("ttl_max_ttl_and_most_of_a_millisecond", "2026-11-26T01:08:41.0001Z", "2026-11-26T01:13:41.0009Z", at, maxTTL, skew, string(reason.TTLTooLong)),
		// Further apart than a Go Duration holds (about 292 years), with
		// the longest max_ttl there is: still longer than it.
		c("ttl_beyond_the_longest_max_ttl", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", at, longest, skew, string(reason.TTLTooLong)),
		// now against expires_at + skew.
		c("at_the_last_fresh_instant", at, "2026-11-26T01:09:41.0005Z", "2026-11-26T01:10:11.0005Z", maxTTL, skew, wvFresh),
		c("a_nanosecond_after_the_last_fresh_instant", at, "2026-11-26T01:09:41.0005Z", "2026-11-26T01:10:11.000500001Z", maxTTL, skew, string(reason.MessageExpired)),
		c("within_a_sub_millisecond_skew", at, "2026-11-26T01:09:41.0006Z", "2026-11-26T01:09:41.001Z", maxTTL, 500*time.Microsecond, wvFresh),
		c("past_a_sub_millisecond_skew", at, "2026-11-26T01:09:41.0006Z", "2026-11-26T01:09:41.002Z", maxTTL, 500*time.Microsecond, string(reason.MessageExpired)),
		// issued_at against now + skew.
		c("issued_half_a_millisecond_beyond_the_skew", "2026-11-26T01:09:11.0005Z", "2026-11-26T01:10:11Z", at, maxTTL, skew, string(reason.IssuedInFuture)),
		c("issued_a_nanosecond_beyond_the_skew", "2026-11-26T01:09:11.000000001Z", "2026-11-26T01:10:11Z", at, maxTTL, skew, string(reason.IssuedInFuture)),
		c("issued_at_the_skew_exactly_with_fractions", "2026-11-26T01:09:11.0005Z", "2026-11-26T01:10:11Z", "2026-11-26T01:08:41.0005Z", maxTTL, skew, wvFresh),
		c("issued_beyond_a_sub_millisecond_skew", "2026-11-26T01:08:41.0016Z", "2026-11-26T01:09:41Z", "2026-11-26T01:08:41.001Z", maxTTL, 500*time.Microsecond, string(reason.IssuedInFuture)),
	}
}

// wvBuildCases: the builder writes whole seconds, issued_at = now cut to
// the second and expires_at = issued_at + TTL cut to the second, computed
// to the nanosecond; a zero TTL is 60 s, a negative one is refused.
func wvBuildCases(t testing.TB, body string) []wvBuildCase {
	c := func(name, now string, ttl time.Duration, issued, expires string) wvBuildCase {
		return wvBuildCase{Name: name, Now: now, TTLNs: strconv.FormatInt(int64(ttl), 10), Body: wvWithTimes(t, body, issued, expires), Want: wvAccepted}
	}
	no := func(name, now string, ttl time.Duration, want reason.Code) wvBuildCase {
		return wvBuildCase{Name: name, Now: now, TTLNs: strconv.FormatInt(int64(ttl), 10), Want: string(want)}
	}
	const at, next = "2026-11-26T01:08:41Z", "2026-11-26T01:09:41Z"
	return []wvBuildCase{
		c("ttl_zero_is_the_default", at, 0, at, next),
		c("ttl_a_nanosecond_short_of_a_second", at, time.Second-time.Nanosecond, at, at),
		c("ttl_half_a_millisecond", at, 500*time.Microsecond, at, at),
		c("ttl_a_minute_less_a_nanosecond", at, time.Minute-time.Nanosecond, at, "2026-11-26T01:09:40Z"),
		c("ttl_a_minute_and_a_nanosecond", at, time.Minute+time.Nanosecond, at, next),
		c("now_a_nanosecond_short_of_a_second", "2026-11-26T01:08:41.999999999Z", time.Minute, at, next),
		no("ttl_a_nanosecond_negative", at, -time.Nanosecond, reason.TTLTooLong),
		// expires_at would be 10000-01-01T00:00:30Z: not a time of the wire.
		no("expires_after_year_9999", "9999-12-31T23:59:30Z", time.Minute, reason.MalformedEnvelope),
	}
}

func wvBuilderOf(b *envelope.Body, ttl time.Duration) envelope.Builder {
	return envelope.Builder{MessageID: b.MessageID, IdempotencyKey: b.IdempotencyKey, TraceID: b.TraceID, Tenant: b.Tenant,
		Audience: b.Audience, Capability: b.Capability, Target: b.Target, TTL: ttl, Payload: b.Payload}
}

func wvNanos(t *testing.T, s string) *big.Int {
	t.Helper()
	n, ok := new(big.Int).SetString(s, 10)
	if !ok {
		t.Fatalf("%q is not a decimal number", s)
	}
	return n
}

func wvTimeOfUnixNano(t *testing.T, s string) time.Time {
	t.Helper()
	sec, nsec := new(big.Int).DivMod(wvNanos(t, s), big.NewInt(1e9), new(big.Int))
	return time.Unix(sec.Int64(), nsec.Int64())
}

func TestWireVectorFreshnessCases(t *testing.T) {
	f := wvLoad[wvEnvelopesFile](t, "envelope.json")
	if len(f.FreshnessCases) == 0 {
		t.Fatal("no freshness cases")
	}
	for _, c := range f.FreshnessCases {
		t.Run(c.Name, func(t *testing.T) {
			if !strings.Contains(c.Body, `"issued_at":"`+c.IssuedAt+`","expires_at":"`+c.ExpiresAt+`"`) {
				t.Error("body does not hold issued_at and expires_at")
			}
			b, err := envelope.Parse([]byte(c.Body), envelope.Limits{})
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if !b.IssuedAt.Equal(wvTimeOfUnixNano(t, c.IssuedAtUnixNano)) || !b.ExpiresAt.Equal(wvTimeOfUnixNano(t, c.ExpiresAtUnixNano)) {
				t.Errorf("issued_at, expires_at read as %v, %v; want %s, %s ns", b.IssuedAt, b.ExpiresAt, c.IssuedAtUnixNano, c.ExpiresAtUnixNano)
			}
			now := wvTimeOfUnixNano(t, c.NowUnixNano)
			if want, err := time.Parse(time.RFC3339Nano, c.Now); err != nil || !now.Equal(want) {
				t.Fatalf("now_unix_nano %s is not now %s", c.NowUnixNano, c.Now)
			}
			fr := envelope.Freshness{MaxTTL: time.Duration(wvNanos(t, c.MaxTTLNs).Int64()), Skew: time.Duration(wvNanos(t, c.SkewNs).Int64())}
			got := wvFresh
			if err := fr.Check(b, now); err != nil {
				var d *reason.Denial
				if !errors.As(err, &d) {
					t.Fatalf("Check = %v; not a denial", err)
				}
				got = string(reason.Of(err))
			}
			if got != c.Want {
				t.Errorf("issued %s, expires %s, at %s: %s; want %s", c.IssuedAt, c.ExpiresAt, c.Now, got, c.Want)
			}
		})
	}
}

func TestWireVectorBuildCases(t *testing.T) {
	f := wvLoad[wvEnvelopesFile](t, "envelope.json")
	if len(f.BuildCases) == 0 {
		t.Fatal("no build cases")
	}
	var search *envelope.Body
	for _, e := range f.Envelopes {
		if e.Name == "search" {
			b, err := envelope.Parse([]byte(e.Message.Body), envelope.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			search = b
		}
	}
	if search == nil {
		t.Fatal("no search envelope")
	}
	for _, c := range f.BuildCases {
		t.Run(c.Name, func(t *testing.T) {
			now, err := time.Parse(time.RFC3339Nano, c.Now)
			if err != nil {
				t.Fatal(err)
			}
			body, err := wvBuilderOf(search, time.Duration(wvNanos(t, c.TTLNs).Int64())).Build(now)
			got := wvAccepted
			if err != nil {
				got = string(reason.Of(err))
			}
			if got != c.Want || string(body) != c.Body {
				t.Errorf("Build = %s %s; want %s %s", got, body, c.Want, c.Body)
			}
		})
	}
}
