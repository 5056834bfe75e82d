package operator

import (
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

func TestParse(t *testing.T) {
	now := time.Date(2026, 11, 26, 1, 9, 0, 0, time.UTC)
	const good = `{"v":1,"request_id":"5d1e0c3a9b7f4e21a6c8d2f0b4e6a806","tenant":"tenant_a","denied_seq":9,"dry_run":true,"issued_at":"2026-11-26T01:08:41Z","expires_at":"2026-11-26T01:09:41Z"}`
	r, err := Parse([]byte(good), now, 0)
	if err != nil || r.DeniedSeq != 9 || !r.DryRun || r.Tenant != "tenant_a" || !r.IssuedAt.Equal(now.Add(-19*time.Second)) {
		t.Fatalf("Parse(good) = %+v, %v", r, err)
	}
	edit := func(old, new string) string { return strings.Replace(good, old, new, 1) }
	// times replaces issued_at and expires_at.
	times := func(issued, expires string) string {
		return strings.NewReplacer("2026-11-26T01:08:41Z", issued, "2026-11-26T01:09:41Z", expires).Replace(good)
	}
	for _, tc := range []struct {
		name, data string
		want       reason.Code
	}{
		{"deny/version-2", edit(`"v":1`, `"v":2`), reason.UnsupportedVersion},
		{"deny/version-1.0", edit(`"v":1`, `"v":1.0`), reason.MalformedEnvelope},
		{"deny/version-string", edit(`"v":1`, `"v":"1"`), reason.MalformedEnvelope},
		{"deny/case", edit(`"dry_run"`, `"Dry_Run"`), reason.MalformedEnvelope},
		{"deny/case-duplicate", edit(`"dry_run":true`, `"dry_run":true,"DRY_RUN":false`), reason.MalformedEnvelope},
		{"deny/duplicate", edit(`"denied_seq":9`, `"denied_seq":9,"denied_seq":1`), reason.MalformedEnvelope},
		{"deny/unknown", edit(`"dry_run":true`, `"dry_run":true,"x":1`), reason.MalformedEnvelope},
		{"deny/no-dry-run", edit(`"dry_run":true,`, ``), reason.MalformedEnvelope},
		{"deny/dry-run-string", edit(`"dry_run":true`, `"dry_run":"true"`), reason.MalformedEnvelope},
		{"deny/seq-zero", edit(`"denied_seq":9`, `"denied_seq":0`), reason.MalformedEnvelope},
		{"deny/seq-negative", edit(`"denied_seq":9`, `"denied_seq":-9`), reason.MalformedEnvelope},
		{"deny/seq-exponent", edit(`"denied_seq":9`, `"denied_seq":9e0`), reason.MalformedEnvelope},
		{"deny/offset", edit(`01:08:41Z`, `01:08:41+00:00`), reason.MalformedEnvelope},
		{"deny/lower-z", edit(`01:09:41Z`, `01:09:41z`), reason.MalformedEnvelope},
		{"deny/no-zone", edit(`01:09:41Z`, `01:09:41`), reason.MalformedEnvelope},
		{"deny/short-id", edit(`5d1e0c3a9b7f4e21a6c8d2f0b4e6a806`, `short`), reason.MalformedEnvelope},
		{"deny/ttl", edit(`01:09:41Z`, `01:18:41Z`), reason.TTLTooLong},
		{"deny/trailing", good + `{}`, reason.MalformedEnvelope},
		// A captured request is usable until expires_at, and one dated
		// ahead of the clock (signed for later use) not at all.
		{"deny/expired", times("2026-11-26T01:07:00Z", "2026-11-26T01:08:59Z"), reason.MessageExpired},
		{"deny/issued-in-future", times("2026-11-26T01:09:01Z", "2026-11-26T01:10:00Z"), reason.IssuedInFuture},
	} {
		if _, err := Parse([]byte(tc.data), now, 0); reason.Of(err) != tc.want {
			t.Errorf("Parse(%s) = %v; want %s", tc.name, err, tc.want)
		}
	}
	// Within the skew, both are accepted.
	for name, data := range map[string]string{
		"expired 1s ago":  times("2026-11-26T01:07:00Z", "2026-11-26T01:08:59Z"),
		"issued 1s ahead": times("2026-11-26T01:09:01Z", "2026-11-26T01:10:00Z"),
	} {
		if _, err := Parse([]byte(data), now, time.Second); err != nil {
			t.Errorf("Parse(%s) with 1s of skew = %v; want accepted", name, err)
		}
	}
}
