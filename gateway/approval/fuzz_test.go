package approval

import (
	"encoding/json"
	"testing"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/subjects/reason"
)

// FuzzParseAnswer: ParseAnswer never panics on any bytes; a refusal is
// approval_invalid; and what it accepts is an answer whose decision is
// grant or deny, read the same by encoding/json.
func FuzzParseAnswer(f *testing.F) {
	const tail = `"body_digest":"sha256:ab","policy_version":"sha256:cd"}`
	f.Add([]byte(`{"decision":"deny","reason":"too large",` + tail))
	f.Add([]byte(`{"decision":"grant",` + tail))
	f.Add([]byte(`{"decision":"grant","DECISION":"deny",` + tail))
	f.Fuzz(func(t *testing.T, raw []byte) {
		a, err := ParseAnswer(raw, envelope.Limits{})
		if err != nil {
			if reason.Of(err) != reason.ApprovalInvalid {
				t.Fatalf("ParseAnswer(%q) = %v; want approval_invalid", raw, err)
			}
			return
		}
		if a.Decision != Grant && a.Decision != Deny {
			t.Fatalf("ParseAnswer(%q) accepted decision %q", raw, a.Decision)
		}
		var loose Answer
		if err := json.Unmarshal(raw, &loose); err != nil {
			t.Fatalf("ParseAnswer accepted %q; encoding/json: %v", raw, err)
		}
		if loose != a {
			t.Fatalf("ParseAnswer(%q) = %+v; encoding/json reads %+v", raw, a, loose)
		}
	})
}
