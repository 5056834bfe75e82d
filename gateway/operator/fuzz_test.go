package operator

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

// FuzzParse: Parse never panics on any bytes; a refusal is one of its
// five codes; and what it accepts is a request of a positive denied
// sequence, fresh at the instant it was parsed at, that encoding/json
// reads as the same request.
func FuzzParse(f *testing.F) {
	now := time.Date(2026, 11, 26, 1, 9, 0, 0, time.UTC)
	const good = `{"v":1,"request_id":"5d1e0c3a9b7f4e21a6c8d2f0b4e6a806","tenant":"tenant_a","denied_seq":9,"dry_run":true,"issued_at":"2026-11-26T01:08:41Z","expires_at":"2026-11-26T01:09:41Z"}`
	if _, err := Parse([]byte(good), now, 0); err != nil {
		f.Fatalf("the seed request does not parse: %v", err)
	}
	f.Add([]byte(good))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":1,"denied_seq":18446744073709551616}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := Parse(raw, now, 0)
		if err != nil {
			switch reason.Of(err) {
			case reason.MalformedEnvelope, reason.UnsupportedVersion, reason.IssuedInFuture, reason.MessageExpired, reason.TTLTooLong:
			default:
				t.Fatalf("Parse(%q) = %v: not one of its codes", raw, err)
			}
			if r != nil {
				t.Fatalf("Parse(%q) returned a request and %v", raw, err)
			}
			return
		}
		if r.DeniedSeq == 0 || r.IssuedAt.After(now) || r.ExpiresAt.Before(now) {
			t.Fatalf("Parse(%q) accepted %+v at %s", raw, r, now)
		}
		var loose struct {
			Tenant    string `json:"tenant"`
			DeniedSeq uint64 `json:"denied_seq"`
			DryRun    bool   `json:"dry_run"`
		}
		if err := json.Unmarshal(raw, &loose); err != nil {
			t.Fatalf("Parse accepted %q; encoding/json: %v", raw, err)
		}
		if loose.Tenant != r.Tenant || loose.DeniedSeq != r.DeniedSeq || loose.DryRun != r.DryRun {
			t.Fatalf("Parse(%q) = %+v; encoding/json reads %+v", raw, r, loose)
		}
	})
}
