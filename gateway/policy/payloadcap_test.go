package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	cedar "github.com/cedar-policy/cedar-go"

	"github.com/agentgw/agentgw/gateway/envelope"
)

// toValue converts one value on its own, with the whole element bound to
// spend.
func toValue(v any, depth int, _ string, _ *[]string) (cedar.Value, string) {
	left := maxPayloadElements
	return convert(v, depth, &left)
}

// collidingArray writes n array elements whose Cedar hashes collide in
// one run: the Longs 0..h-1 and the Decimals 0.0001..0.000(n-h) (a
// Decimal's hash is its value × 10^4), so each Decimal probes past every
// Long before it. Converting n of them cost about n²/4 probes without a
// bound.
func collidingArray(n int) string {
	var b strings.Builder
	b.WriteByte('[')
	h := n / 2
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		if i < h {
			fmt.Fprintf(&b, "%d", i)
		} else {
			fmt.Fprintf(&b, "0.%04d", i-h+1)
		}
	}
	b.WriteByte(']')
	return b.String()
}

// nestedArray writes n one-element arrays [[0],[1],…] and then
// [[0,1],[0,2],…] up to 2n elements: sets whose hashes (the sums of their
// elements) collide in one run. count is its elements at both depths.
func nestedArray(n int) (string, int) {
	var b strings.Builder
	b.WriteByte('[')
	count := 0
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "[%d]", i)
		count += 2
	}
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, ",[0,%d]", i)
		count += 3
	}
	b.WriteByte(']')
	return b.String(), count
}

func decodePayload(t testing.TB, body string) map[string]any {
	t.Helper()
	obj, err := envelope.DecodePayload([]byte(body), envelope.Limits{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatalf("DecodePayload: %v", err)
	}
	return obj
}

const tooManyNote = "more than 256 array elements and object members in the payload; field omitted"

// TestPayloadElementBound: the array elements and object members
// converted for one payload record, at every depth and across all fields,
// are bounded by maxPayloadElements. A field that would pass the bound is
// omitted whole with a note, as a too-deep one is, so the work of
// converting a payload (cedar-go's sets probe linearly on colliding
// hashes) stays bounded whatever the payload's length and shape.
func TestPayloadElementBound(t *testing.T) {
	if maxPayloadElements != 256 {
		t.Fatalf("maxPayloadElements = %d; the documented bound is 256", maxPayloadElements)
	}
	nested256, n256 := nestedArray(51)  // 51×2 + 51×3 = 255 elements, + a wrapper below
	nestedBig, _ := nestedArray(20_000) // far past the bound
	if n256 != 255 {
		t.Fatalf("nestedArray(51) holds %d elements; want 255", n256)
	}
	tests := []struct {
		name      string
		body      string
		kept      []string // fields converted
		notes     []string // fields omitted, with their notes
		wantCount map[string]int
	}{
		{
			name: "array at the bound converts",
			body: `{"amounts":` + collidingArray(256) + `}`,
			kept: []string{"amounts"}, wantCount: map[string]int{"amounts": 256},
		},
		{
			name:  "array one past the bound is omitted",
			body:  `{"amounts":` + collidingArray(257) + `}`,
			notes: []string{"payload.amounts: " + tooManyNote},
		},
		{
			name:  "a long colliding array is omitted",
			body:  `{"amounts":` + collidingArray(16000) + `}`,
			notes: []string{"payload.amounts: " + tooManyNote},
		},
		{
			name: "nested arrays at the bound convert",
			body: `{"groups":[` + nested256 + `]}`, // the wrapper's one element makes 256
			kept: []string{"groups"}, wantCount: map[string]int{"groups": 1},
		},
		{
			name:  "nested arrays past the bound are omitted, noted from inside",
			body:  `{"groups":[` + nestedBig + `]}`,
			notes: []string{"payload.groups: inside: " + tooManyNote},
		},
		{
			name:  "object members count",
			body:  `{"lines":{` + members(257) + `}}`,
			notes: []string{"payload.lines: " + tooManyNote},
		},
		{
			name: "object members at the bound convert",
			body: `{"lines":{` + members(256) + `}}`,
			kept: []string{"lines"},
		},
		{
			// The bound is for the whole payload: fields are converted in
			// name order, so "a" takes 200 and "b" cannot have 100.
			name:  "the bound spans fields",
			body:  `{"b":` + collidingArray(100) + `,"a":` + collidingArray(200) + `,"c":7,"d":[]}`,
			kept:  []string{"a", "c", "d"},
			notes: []string{"payload.b: " + tooManyNote},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decodePayload(t, tt.body)
			var notes []string
			rec, _ := payloadRecord(obj, &notes)
			if !slices.Equal(notes, tt.notes) {
				t.Errorf("notes = %q; want %q", notes, tt.notes)
			}
			var kept []string
			for k := range rec.Keys() {
				kept = append(kept, string(k))
			}
			slices.Sort(kept)
			if !slices.Equal(kept, tt.kept) {
				t.Errorf("fields converted = %q; want %q", kept, tt.kept)
			}
			for k, n := range tt.wantCount {
				v, _ := rec.Get(cedar.String(k))
				if s, ok := v.(cedar.Set); !ok || s.Len() != n {
					t.Errorf("payload.%s = %T of %d; want a Set of %d", k, v, s.Len(), n)
				}
			}
		})
	}
}

func members(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"m%d":%d`, i, i)
	}
	return b.String()
}

// TestPayloadPastBoundDenies: a payload whose policy-visible fields pass
// the element bound is denied at stage content by the built-in
// builtin:payload_unrepresentable, whatever the policies say: a field left out
// would pass a forbid guarded by `context.payload has` it, and the bound
// is shared, so one field can crowd out another. At the bound the
// policies judge it.
func TestPayloadPastBoundDenies(t *testing.T) {
	s, err := Parse("p.cedar", []byte(`
@id("allow") permit (principal, action, resource);
@id("no-blocked-amount")
forbid (principal, action == Action::"tool_call", resource)
when { context has payload && context.payload.amounts.contains(999999999) };
@id("no-external")
forbid (principal, action == Action::"tool_call", resource)
when { context has payload && context.payload has recipients && context.payload.recipients.contains("x@evil.example") };
`))
	if err != nil {
		t.Fatal(err)
	}
	req := Request{
		Principal: Principal{Agent: "UAGENT", Tenant: "t"},
		Action:    "tool_call",
		Resource:  Resource{Target: "payments.batch", Tenant: "t"},
		Time:      time.Unix(1_700_000_000, 0),
	}
	req.Payload = decodePayload(t, `{"amounts":`+collidingArray(256)+`}`)
	if d := s.Decide(req); !d.Allow || len(d.Errors) != 0 {
		t.Errorf("256 amounts: allow=%v errors=%q; want allowed without errors", d.Allow, d.Errors)
	}
	many := strings.Repeat(`"a@ok.example",`, 256)
	for _, tt := range []struct {
		name, body, note string
	}{
		{"8000 amounts", `{"amounts":` + collidingArray(8000) + `}`, "payload.amounts: " + tooManyNote},
		{"257 recipients", `{"recipients":[` + many + `"x@evil.example"]}`, "payload.recipients: " + tooManyNote},
		{"recipients crowded out", `{"attachments":[` + strings.TrimSuffix(many, ",") + `],"recipients":["x@evil.example"]}`, "payload.recipients: " + tooManyNote},
		{"257 harmless recipients", `{"recipients":[` + many + `"b@ok.example"]}`, "payload.recipients: " + tooManyNote},
	} {
		req.Payload = decodePayload(t, tt.body)
		d := s.Decide(req)
		if d.Allow || !slices.Equal(d.PolicyIDs, []string{BuiltinPayloadUnrepresentable}) {
			t.Errorf("%s: allow=%v policy_ids=%v; want denied by %s", tt.name, d.Allow, d.PolicyIDs, BuiltinPayloadUnrepresentable)
		}
		if !slices.Equal(d.Errors, []string{tt.note}) {
			t.Errorf("%s: errors = %q; want %q", tt.name, d.Errors, tt.note)
		}
	}
	req.Payload = decodePayload(t, `{"amounts":[1],"recipients":["x@evil.example"]}`)
	if d := s.Decide(req); d.Allow || !slices.Equal(d.PolicyIDs, []string{"no-external"}) {
		t.Errorf("one recipient: allow=%v policy_ids=%v; want denied by no-external", d.Allow, d.PolicyIDs)
	}
}

// BenchmarkPayloadRecordColliding converts payloads of colliding numbers
// of growing length; past the element bound the time per payload stays
// flat, where it grew with the square of the length before.
func BenchmarkPayloadRecordColliding(b *testing.B) {
	for _, n := range []int{256, 1024, 8192, 65536} {
		obj := decodePayload(b, `{"amounts":`+collidingArray(n)+`}`)
		b.Run(fmt.Sprintf("elements=%d", n), func(b *testing.B) {
			for b.Loop() {
				var notes []string
				_, _ = payloadRecord(obj, &notes)
			}
		})
	}
}

// TestOmittedFieldDenies: a payload with a policy-visible field left out
// of the policy's view (a value Cedar cannot hold inside it, nesting
// deeper than the bound, too many elements) is denied by
// builtin:payload_unrepresentable when a policy that takes the request
// in reads the payload, so a forbid guarded by `context.payload has` it
// cannot be passed by hiding the field; a field that is null is absent
// and hides nothing. A request no payload-reading policy takes in is
// judged as usual, its payload bounded all the same.
func TestOmittedFieldDenies(t *testing.T) {
	s, err := Parse("p.cedar", []byte(`
@id("allow") permit (principal, action, resource);
@id("no-external")
forbid (principal, action == Action::"tool_call", resource == Target::"mail.send")
when { context has payload && context.payload has recipients && context.payload.recipients.contains("x@evil.example") };
`))
	if err != nil {
		t.Fatal(err)
	}
	req := func(target, body string) Request {
		return Request{
			Principal: Principal{Agent: "UAGENT", Tenant: "t"},
			Action:    "tool_call",
			Resource:  Resource{Target: target, Tenant: "t"},
			Time:      time.Unix(1_700_000_000, 0),
			Payload:   decodePayload(t, body),
		}
	}
	for _, tt := range []struct {
		name, body string
		wantIDs    []string
	}{
		{"forbidden recipient", `{"recipients":["x@evil.example"]}`, []string{"no-external"}},
		{"null beside it", `{"recipients":["x@evil.example",null]}`, []string{BuiltinPayloadUnrepresentable}},
		{"integer past int64 beside it", `{"recipients":["x@evil.example",10000000000000000000]}`, []string{BuiltinPayloadUnrepresentable}},
		{"nesting past the bound beside it", `{"recipients":["x@evil.example",[[[[[[[["deep"]]]]]]]]]}`, []string{BuiltinPayloadUnrepresentable}},
		{"another field unrepresentable", `{"note":1e400,"recipients":["x@evil.example"]}`, []string{BuiltinPayloadUnrepresentable}},
	} {
		d := s.Decide(req("mail.send", tt.body))
		if d.Allow || !slices.Equal(d.PolicyIDs, tt.wantIDs) {
			t.Errorf("%s: allow=%v policy_ids=%v errors=%q; want denied by %v", tt.name, d.Allow, d.PolicyIDs, d.Errors, tt.wantIDs)
		}
	}
	if d := s.Decide(req("mail.send", `{"recipients":null}`)); !d.Allow {
		t.Errorf("a null field: allow=false policy_ids=%v; want allowed (a null is absent)", d.PolicyIDs)
	}
	many := strings.Repeat(`"a@ok.example",`, 300)
	if d := s.Decide(req("kb.search", `{"recipients":[`+many+`null]}`)); !d.Allow {
		t.Errorf("a target no payload policy covers: allow=false policy_ids=%v; want judged as usual (allowed)", d.PolicyIDs)
	}
}

// TestOmittedFieldNeedsAPayloadReader: a policy that reads context.stage
// but not the payload can judge no payload field, so a field left out
// denies nothing through it.
func TestOmittedFieldNeedsAPayloadReader(t *testing.T) {
	s, err := Parse("p.cedar", []byte(`
@id("allow") permit (principal, action, resource);
@id("quarantine")
forbid (principal, action, resource) when { principal.tenant == "quarantined" && context.stage == "authorize" };
`))
	if err != nil {
		t.Fatal(err)
	}
	d := s.Decide(Request{
		Principal: Principal{Agent: "UAGENT", Tenant: "t"},
		Action:    "tool_call",
		Resource:  Resource{Target: "maps.route", Tenant: "t"},
		Time:      time.Unix(1_700_000_000, 0),
		Payload:   decodePayload(t, `{"lat":37.774929}`),
	})
	if !d.Allow {
		t.Errorf("a stage-reading set and an unrepresentable field: allow=false policy_ids=%v; want allowed", d.PolicyIDs)
	}
}
