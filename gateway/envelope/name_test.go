package envelope

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/subjects/reason"
)

// controlNames are member names holding a control character (Unicode
// category Cc), written as they would travel.
var controlNames = map[string]string{
	"nul escaped":       `"tenant\u0000"`,
	"nul first":         `"\u0000tenant"`,
	"unit separator":    `"a\u001fb"`,
	"newline escape":    `"a\nb"`,
	"tab escape":        `"a\tb"`,
	"del escaped":       `"a\u007fb"`,
	"del raw":           "\"a\x7fb\"",
	"c1 first escaped":  `"a\u0080b"`,
	"c1 last escaped":   `"a\u009Fb"`,
	"c1 raw":            "\"a\xc2\x9bb\"", // U+009B, CONTROL SEQUENCE INTRODUCER
	"after a long name": `"` + strings.Repeat("x", 100) + `\u0000"`,
}

// plainNames are member names next to the control ranges that are not
// control characters, and must stay accepted.
var plainNames = map[string]string{
	"space":             `"a b"`,
	"tilde":             `"a~"`,
	"no-break space":    `"a\u00a0b"`,
	"no-break raw":      "\"a\xc2\xa0b\"",
	"latin-1 letter":    `"\u00e9t\u00e9"`,
	"line separator":    `"a\u2028b"`,
	"escaped printable": `"\u0074enant"`,
}

// TestControlInMemberName: a member name holding a control character is
// refused at every depth, in the envelope body, its payload and plain
// objects, objects inside arrays, and an opened payload checked alone
// (CheckPayload, DecodePayload); a value may hold one.
func TestControlInMemberName(t *testing.T) {
	for what, name := range controlNames {
		envelopes := map[string][]byte{
			"body":         plusRaw(name + `:1`),
			"body of v2":   v2(plusRaw(name + `:1`)),
			"payload":      withMember("payload", `{"plain":{},`+name+`:1}`),
			"plain":        plain(`{"q":"x",` + name + `:"tenant_b"}`),
			"plain nested": plain(`{"a":{"b":{` + name + `:1}}}`),
			"plain array":  plain(`{"a":[1,{` + name + `:1}]}`),
			"plain many":   plain(manyMembers(40, `,`+name+`:0`)),
		}
		for where, raw := range envelopes {
			_, err := Parse(raw, Limits{})
			if !errors.Is(err, reason.MalformedEnvelope) {
				t.Errorf("Parse(%s name in %s) = %v; want malformed_envelope", what, where, err)
			}
		}
		payloads := map[string]string{
			"top":    `{"q":"x",` + name + `:"tenant_b"}`,
			"nested": `{"a":[{"b":{` + name + `:null}}]}`,
			"many":   manyMembers(40, `,`+name+`:0`),
		}
		for where, p := range payloads {
			if err := CheckPayload([]byte(p), Limits{}); !errors.Is(err, reason.MalformedEnvelope) {
				t.Errorf("CheckPayload(%s name %s) = %v; want malformed_envelope", what, where, err)
			}
			if _, err := DecodePayload([]byte(p), Limits{}); !errors.Is(err, reason.MalformedEnvelope) {
				t.Errorf("DecodePayload(%s name %s) = %v; want malformed_envelope", what, where, err)
			}
		}
	}
	for what, name := range plainNames {
		if _, err := Parse(plain(`{"a":{`+name+`:1}}`), Limits{}); err != nil {
			t.Errorf("Parse(%s in a plain name) = %v; want accepted", what, err)
		}
		if err := CheckPayload([]byte(`{`+name+`:1}`), Limits{}); err != nil {
			t.Errorf("CheckPayload(%s in a name) = %v; want accepted", what, err)
		}
	}
	for _, v := range []string{`"\u0000"`, `"a\nb"`, `"\u007f\u009f"`, "\"\x7f\xc2\x9b\""} {
		if err := CheckPayload([]byte(`{"a":`+v+`}`), Limits{}); err != nil {
			t.Errorf("CheckPayload(control characters in a value %s) = %v; want accepted", v, err)
		}
	}
}

// TestControlInMemberNameDetail: the denial names the rule and the
// offset of the name, never its bytes.
func TestControlInMemberNameDetail(t *testing.T) {
	p := `{"q":"x","tenantQ\u0000":"tenant_b"}`
	err := CheckPayload([]byte(p), Limits{})
	var d *reason.Denial
	if !errors.As(err, &d) {
		t.Fatalf("CheckPayload = %v; want a denial", err)
	}
	want := fmt.Sprintf("offset %d: control character in member name", strings.Index(p, `"tenantQ`))
	if d.Detail != want || strings.Contains(err.Error(), "Q") {
		t.Errorf("CheckPayload detail = %q; want %q", d.Detail, want)
	}
}
