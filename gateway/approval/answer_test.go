package approval

import (
	"testing"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/subjects/reason"
)

func TestParseAnswer(t *testing.T) {
	const tail = `"body_digest":"sha256:ab","policy_version":"sha256:cd"}`
	got, err := ParseAnswer([]byte(`{"decision":"deny","reason":"too large",`+tail), envelope.Limits{})
	if err != nil || got != (Answer{Decision: Deny, Reason: "too large", BodyDigest: "sha256:ab", PolicyVersion: "sha256:cd"}) {
		t.Fatalf("ParseAnswer(exact) = %+v, %v", got, err)
	}
	for name, raw := range map[string]string{
		"deny/case":           `{"Decision":"grant",` + tail,
		"deny/fold":           `{"decision":"grant","rea\u017fon":"x",` + tail,
		"deny/duplicate":      `{"decision":"deny","decision":"grant",` + tail,
		"deny/case-duplicate": `{"decision":"deny","DECISION":"grant",` + tail,
		"deny/unknown":        `{"decision":"grant","note":"x",` + tail,
		"deny/null":           `{"decision":"grant","reason":null,` + tail,
		"deny/other-decision": `{"decision":"Grant",` + tail,
		"deny/missing":        `{"decision":"grant"}`,
		"deny/not-object":     `["decision"]`,
		"deny/trailing":       `{"decision":"grant",` + tail + `{}`,
	} {
		if _, err := ParseAnswer([]byte(raw), envelope.Limits{}); reason.Of(err) != reason.ApprovalInvalid {
			t.Errorf("ParseAnswer(%s) = %v; want approval_invalid", name, err)
		}
	}
}
