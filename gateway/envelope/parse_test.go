package envelope

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

func nest(depth int) string {
	return strings.Repeat(`{"a":`, depth) + `1` + strings.Repeat(`}`, depth)
}

func TestParse(t *testing.T) {
	const mal, ver = reason.MalformedEnvelope, reason.UnsupportedVersion
	tests := []struct {
		name string
		raw  []byte
		want reason.Code // "" = accepted
	}{
		{"ok/wire-v1", render(baseMembers()), ""},
		{"ok/sealed", sealed("eGt2McHP-lnC9tqWxmR2Mg", testFrom, testTo), ""},
		{"ok/whitespace", []byte(" \n\t{ \"v\" : 1" + string(render(baseMembers())[6:]) + "\r\n"), ""},
		{"ok/escaped-member-name", []byte(strings.Replace(string(render(baseMembers())), `"v"`, `"\u0076"`, 1)), ""},
		{"ok/escaped-value", withMember("tenant", `"tenant\u005fa"`), ""},
		{"ok/approve-message-id-target", withMembers("capability", `"approve"`, "target", `"9f1c2b7e4d8a4c3fb6e15a2d7c9e0f42"`), ""},
		{"ok/respond", withMembers("capability", `"respond"`, "target", `"UBEAFGHZ4WU2HWKV5UISUNSQ3HPVFCDDNRIU2NO67ILH5CAZ2IYTUFAM/AbC.9:_-xyzxyzxyz"`), ""},
		{"ok/fraction-seconds", withMember("issued_at", `"2026-11-26T01:08:41.123456789Z"`), ""},
		{"ok/plain-empty-object", plain(`{}`), ""},
		{"ok/plain-nested", plain(`{"a":[1,2,{"b":null,"c":true,"d":false}],"e":"\ud83d\ude00 é","f":-0.5e-3}`), ""},
		{"ok/plain-same-name-other-objects", plain(`{"a":{"a":1},"b":{"a":2}}`), ""},
		{"ok/plain-many-members", plain(manyMembers(100, "")), ""},
		{"ok/depth-at-limit", plain(nest(30)), ""},

		{"version/2", withMember("v", `2`), ver},
		{"version/0", withMember("v", `0`), ver},
		{"version/1.0", withMember("v", `1.0`), ver},
		{"version/1e0", withMember("v", `1e0`), ver},
		{"version/-1", withMember("v", `-1`), ver},
		{"version/1-with-v2-member", plusRaw(`"v2_field":{"x":1}`), mal},
		{"version/2-wins-over-unknown", []byte(strings.Replace(string(plusRaw(`"v2_field":{"x":1}`)), `"v":1`, `"v":2`, 1)), ver},
		{"version/string", withMember("v", `"1"`), mal},
		{"version/missing", withoutMember("v"), mal},
		{"version/null", withMember("v", `null`), mal},

		{"dup/top-level", plusRaw(`"tenant":"tenant_b"`), mal},
		{"dup/top-level-escaped", plusRaw(`"\u0074enant":"tenant_b"`), mal},
		{"dup/top-level-case", plusRaw(`"Tenant":"tenant_b"`), mal},
		{"dup/top-level-unknown-twice", plusRaw(`"x":1,"X":2`), mal},
		// With "v": 2 unknown members alone report the version, so these
		// tell a duplicate among unknown names from no duplicate.
		{"dup/unknown-twice-in-v2", v2(plusRaw(`"x":1,"y":1,"X":2`)), mal},
		{"dup/unknown-then-known-in-v2", v2(append([]byte(`{"TENANT":"t",`), render(baseMembers())[1:]...)), mal},
		{"dup/payload-unknown-twice-in-v2", v2(withMember("payload", `{"plain":{},"x":1,"y":1,"X":2}`)), mal},
		{"version/2-many-distinct-unknown", v2(plusRaw(manyMembers(100, "")[1 : len(manyMembers(100, ""))-1])), ver},
		{"dup/payload", withMember("payload", `{"plain":{},"plain":{}}`), mal},
		{"dup/plain", plain(`{"amount":1,"amount":2}`), mal},
		{"dup/plain-nested", plain(`{"x":[{"a":1,"a":2}]}`), mal},
		{"dup/plain-case", plain(`{"amount":1,"AMOUNT":999}`), mal},
		{"dup/plain-kelvin", plain(`{"k":1,"\u212a":2}`), mal},
		{"dup/plain-long-s", plain(`{"s":1,"ſ":2}`), mal},
		{"dup/plain-escaped", plain(`{"a":1,"\u0061":2}`), mal},
		{"dup/plain-many-members", plain(manyMembers(100, `,"M50":0`)), mal},
		{"case/top-level-only-variant", []byte(strings.Replace(string(render(baseMembers())), `"tenant"`, `"TENANT"`, 1)), mal},

		{"unknown/top-level", plusRaw(`"extra":1`), mal},
		{"unknown/payload", withMember("payload", `{"plain":{},"enc":"aes"}`), mal},
		{"missing/tenant", withoutMember("tenant"), mal},
		{"missing/payload", withoutMember("payload"), mal},

		{"utf8/value", withMember("audience", "\"billing-\xff\""), mal},
		{"utf8/name", plain("{\"\xc3\x28\":1}"), mal},
		{"utf8/plain-value", plain("{\"a\":\"\xed\xa0\x80\"}"), mal},
		{"utf8/overlong", plain("{\"a\":\"\xc0\xaf\"}"), mal},
		{"utf8/lone-high-surrogate", plain(`{"a":"\ud800"}`), mal},
		{"utf8/lone-low-surrogate", plain(`{"a":"\udc00x"}`), mal},
		{"utf8/reversed-surrogates", plain(`{"a":"\udc00\ud800"}`), mal},
		{"string/control-char", plain("{\"a\":\"x\ny\"}"), mal},
		{"string/bad-escape", plain(`{"a":"\x41"}`), mal},
		{"string/unterminated", []byte(`{"v":1,"tenant":"abc`), mal},
		{"string/overlong", plain(`{"a":"` + strings.Repeat("x", 16<<10+1) + `"}`), mal},

		{"type/number-for-string", withMember("tenant", `1`), mal},
		{"type/big-number-for-message-id", withMember("message_id", `123456789012345678901234`), mal},
		{"type/array-for-string", withMember("target", `["refunds"]`), mal},
		{"type/null-for-string", withMember("audience", `null`), mal},
		{"type/object-for-string", withMember("trace_id", `{}`), mal},
		{"type/number-timestamp", withMember("issued_at", `1795655321`), mal},

		{"number/huge-exponent", plain(`{"a":1e999999999}`), mal},
		{"number/overlong", plain(`{"a":` + strings.Repeat("9", 65) + `}`), mal},
		{"number/leading-zero", plain(`{"a":01}`), mal},
		{"number/bare-dot", plain(`{"a":1.}`), mal},
		{"number/plus", plain(`{"a":+1}`), mal},
		{"number/nan", plain(`{"a":NaN}`), mal},

		{"depth/over-limit", plain(nest(31)), mal},
		{"depth/10000", plain(nest(10000)), mal},
		{"depth/10000-arrays-unknown-member", plusRaw(`"x":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000)), mal},
		{"depth/unterminated-10000", []byte(`{"v":1,"x":` + strings.Repeat("[", 10000)), mal},

		{"syntax/empty", []byte(``), mal},
		{"syntax/null", []byte(`null`), mal},
		{"syntax/array", []byte(`[` + string(render(baseMembers())) + `]`), mal},
		{"syntax/trailing-data", append(render(baseMembers()), '{', '}'), mal},
		{"syntax/trailing-garbage", append(render(baseMembers()), 'x'), mal},
		{"syntax/bom", append([]byte("\xef\xbb\xbf"), render(baseMembers())...), mal},
		{"syntax/trailing-comma", []byte(strings.Replace(string(render(baseMembers())), `}}}`, `}},}`, 1)), mal},
		{"syntax/single-quotes", plain(`{'a':1}`), mal},
		{"syntax/comment", plain(`{/*x*/}`), mal},
		{"syntax/truncated", render(baseMembers())[:100], mal},
		{"syntax/nul-byte", append(render(baseMembers()), 0), mal},

		{"time/offset", withMember("issued_at", `"2026-11-26T02:08:41+01:00"`), mal},
		{"time/zero-offset", withMember("issued_at", `"2026-11-26T01:08:41+00:00"`), mal},
		{"time/lowercase-z", withMember("expires_at", `"2026-11-26T01:09:41z"`), mal},
		{"time/lowercase-t", withMember("expires_at", `"2026-11-26t01:09:41Z"`), mal},
		{"time/space", withMember("expires_at", `"2026-11-26 01:09:41Z"`), mal},
		{"time/no-seconds", withMember("issued_at", `"2026-11-26T01:08Z"`), mal},
		{"time/date-only", withMember("issued_at", `"2026-11-26"`), mal},
		{"time/feb-30", withMember("issued_at", `"2026-02-30T01:08:41Z"`), mal},
		{"time/feb-29-non-leap", withMember("issued_at", `"2026-02-29T01:08:41Z"`), mal},
		{"time/hour-24", withMember("issued_at", `"2026-11-26T24:00:00Z"`), mal},
		{"time/leap-second", withMember("issued_at", `"2026-12-31T23:59:60Z"`), mal},
		{"time/fraction-10-digits", withMember("issued_at", `"2026-11-26T01:08:41.1234567890Z"`), mal},
		{"time/empty-fraction", withMember("issued_at", `"2026-11-26T01:08:41.Z"`), mal},
		{"time/rfc1123", withMember("issued_at", `"Thu, 26 Nov 2026 01:08:41 GMT"`), mal},

		{"field/message-id-short", withMember("message_id", `"0123456789abcde"`), mal},
		{"field/message-id-long", withMember("message_id", `"`+strings.Repeat("a", 129)+`"`), mal},
		{"field/message-id-space", withMember("message_id", `"9f1c2b7e4d8a4c3f b6e15a2d7c9e0f41"`), mal},
		{"field/message-id-slash", withMember("message_id", `"9f1c2b7e4d8a4c3f/b6e15a2d7c9e0f41"`), mal},
		{"field/idempotency-empty", withMember("idempotency_key", `""`), mal},
		{"field/idempotency-space", withMember("idempotency_key", `"a b"`), mal},
		{"field/idempotency-long", withMember("idempotency_key", `"`+strings.Repeat("k", 129)+`"`), mal},
		{"field/trace-zero", withMember("trace_id", `"00000000000000000000000000000000"`), mal},
		{"field/trace-upper", withMember("trace_id", `"4BF92F3577B34DA6A3CE929D0E0E4736"`), mal},
		{"field/trace-short", withMember("trace_id", `"4bf92f3577b34da6a3ce929d0e0e473"`), mal},
		{"field/tenant-upper", withMember("tenant", `"Tenant_a"`), mal},
		{"field/tenant-dot", withMember("tenant", `"tenant.a"`), mal},
		{"field/tenant-star", withMember("tenant", `"*"`), mal},
		{"field/tenant-gt", withMember("tenant", `">"`), mal},
		{"field/tenant-empty", withMember("tenant", `""`), mal},
		{"field/tenant-long", withMember("tenant", `"`+strings.Repeat("t", 65)+`"`), mal},
		{"field/tenant-crlf", withMember("tenant", `"tenant\r\na"`), mal},
		{"field/audience-empty", withMember("audience", `""`), mal},
		{"field/audience-space", withMember("audience", `"billing gateway"`), mal},
		{"field/capability-unknown", withMember("capability", `"admin"`), mal},
		{"field/capability-case", withMember("capability", `"Tool_Call"`), mal},
		{"field/target-star", withMember("target", `"refunds.*"`), mal},
		{"field/target-gt", withMember("target", `"refunds.>"`), mal},
		{"field/target-empty-part", withMember("target", `"refunds..draft"`), mal},
		{"field/target-trailing-dot", withMember("target", `"refunds."`), mal},
		{"field/target-upper", withMember("target", `"Refunds.draft"`), mal},
		{"field/target-js", withMember("target", `"$JS.API"`), mal},
		{"field/target-long", withMember("target", `"`+strings.Repeat("a.", 127)+`ab"`), mal},
		{"field/approve-dotted-target", withMembers("capability", `"approve"`, "target", `"refunds.draft"`), mal},
		{"field/respond-bare-message-id", withMembers("capability", `"respond"`, "target", `"9f1c2b7e4d8a4c3fb6e15a2d7c9e0f42"`), mal},
		{"field/respond-agent-only", withMembers("capability", `"respond"`, "target", `"UBEAFGHZ4WU2HWKV5UISUNSQ3HPVFCDDNRIU2NO67ILH5CAZ2IYTUFAM/"`), mal},
		{"field/respond-short-id", withMembers("capability", `"respond"`, "target", `"UBEAFGHZ4WU2HWKV5UISUNSQ3HPVFCDDNRIU2NO67ILH5CAZ2IYTUFAM/short"`), mal},
		{"field/respond-bad-checksum", withMembers("capability", `"respond"`, "target", `"UBEAFGHZ4WU2HWKV5UISUNSQ3HPVFCDDNRIU2NO67ILH5CAZ2IYTUFAB/9f1c2b7e4d8a4c3fb6e15a2d7c9e0f42"`), mal},
		{"field/respond-curve-key", withMembers("capability", `"respond"`, "target", `"XBSHZ4TUNLRHJXE6F3H7CUYIPJE75ZZM6M7ERNX2N3WHM2OBEEMFAP4Y/9f1c2b7e4d8a4c3fb6e15a2d7c9e0f42"`), mal},
		{"field/respond-id-then-agent", withMembers("capability", `"respond"`, "target", `"9f1c2b7e4d8a4c3fb6e15a2d7c9e0f42/UBEAFGHZ4WU2HWKV5UISUNSQ3HPVFCDDNRIU2NO67ILH5CAZ2IYTUFAM"`), mal},
		{"field/approve-request-ref", withMembers("capability", `"approve"`, "target", `"UBEAFGHZ4WU2HWKV5UISUNSQ3HPVFCDDNRIU2NO67ILH5CAZ2IYTUFAM/9f1c2b7e4d8a4c3fb6e15a2d7c9e0f42"`), mal},
		{"field/tool-call-message-id-target", withMember("target", `"9f1c2b7e4d8a4c3fB6e15a2d7c9e0f41"`), mal},

		{"payload/both", withMember("payload", `{"sealed":"eGt2","from":"`+testFrom+`","to":"`+testTo+`","plain":{}}`), mal},
		{"payload/neither", withMember("payload", `{}`), mal},
		{"payload/only-from-to", withMember("payload", `{"from":"`+testFrom+`","to":"`+testTo+`"}`), mal},
		{"payload/not-object", withMember("payload", `"x"`), mal},
		{"payload/plain-array", plain(`[1,2]`), mal},
		{"payload/plain-string", plain(`"{}"`), mal},
		{"payload/plain-null", plain(`null`), mal},
		{"payload/plain-with-from", withMember("payload", `{"plain":{},"from":"`+testFrom+`"}`), mal},
		{"payload/sealed-empty", sealed("", testFrom, testTo), mal},
		{"payload/sealed-padding", sealed("eGt2McHP-lnC9tqWxmR2Mg==", testFrom, testTo), mal},
		{"payload/sealed-std-alphabet", sealed("eGt2McHP+lnC9tqWxmR2Mg", testFrom, testTo), mal},
		{"payload/sealed-impossible-length", sealed("eGt2M", testFrom, testTo), mal},
		{"payload/sealed-noncanonical-bits", sealed("eGt2McHP-lnC9tqWxmR2Mh", testFrom, testTo), mal},
		{"payload/sealed-number", withMember("payload", `{"sealed":1,"from":"`+testFrom+`","to":"`+testTo+`"}`), mal},
		{"payload/sealed-missing-from", withMember("payload", `{"sealed":"eGt2","to":"`+testTo+`"}`), mal},
		{"payload/sealed-missing-to", withMember("payload", `{"sealed":"eGt2","from":"`+testFrom+`"}`), mal},
		{"payload/from-bad-checksum", sealed("eGt2", testFrom[:55]+"A", testTo), mal},
		{"payload/from-user-key", sealed("eGt2", "UBEAFGHZ4WU2HWKV5UISUNSQ3HPVFCDDNRIU2NO67ILH5CAZ2IYTUFAM", testTo), mal},
		{"payload/from-lowercase", sealed("eGt2", strings.ToLower(testFrom), testTo), mal},
		{"payload/to-with-newline", sealed("eGt2", testFrom, testTo[:28]+`\n`+testTo[28:]), mal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Parse(tt.raw, Limits{})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Parse(%.80q) = %v; want nil", tt.raw, err)
				}
				checkInvariants(t, b, tt.raw)
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%.80q) = %v; want %v", tt.raw, err, tt.want)
			}
			if b != nil {
				t.Errorf("Parse returned a Body with error %v", err)
			}
			var d *reason.Denial
			if !errors.As(err, &d) {
				t.Errorf("error %T is not a *reason.Denial", err)
			}
		})
	}
}

// v2 returns raw with its "v":1 member made "v":2.
func v2(raw []byte) []byte { return []byte(strings.Replace(string(raw), `"v":1`, `"v":2`, 1)) }

func manyMembers(n int, extra string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"m` + itoa(i) + `":` + itoa(i))
	}
	b.WriteString(extra + "}")
	return b.String()
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func TestParseLimits(t *testing.T) {
	body := render(baseMembers())
	tests := []struct {
		name string
		raw  []byte
		lim  Limits
		want reason.Code
	}{
		{"size/at-limit", body, Limits{MaxBytes: len(body)}, ""},
		{"size/one-over", body, Limits{MaxBytes: len(body) - 1}, reason.Oversized},
		{"size/default-64KiB", plain(`{"a":"` + strings.Repeat("x", 64<<10) + `"}`), Limits{MaxString: 1 << 20}, reason.Oversized},
		{"depth/custom", plain(nest(4)), Limits{MaxDepth: 5}, reason.MalformedEnvelope},
		{"depth/custom-ok", plain(nest(3)), Limits{MaxDepth: 5}, ""},
		{"depth/payload-itself", body, Limits{MaxDepth: 1}, reason.MalformedEnvelope},
		{"string/custom-ok", plain(`{"a":"` + strings.Repeat("s", 40) + `"}`), Limits{MaxString: 40}, ""},
		{"string/custom", plain(`{"a":"` + strings.Repeat("s", 41) + `"}`), Limits{MaxString: 40}, reason.MalformedEnvelope},
		{"string/sealed-exempt", sealed(strings.Repeat("A", 1024), testFrom, testTo), Limits{MaxString: 56}, ""},
		{"string/name", plain(`{"` + strings.Repeat("n", 41) + `":1}`), Limits{MaxString: 40}, reason.MalformedEnvelope},
		{"string/escaped-counts-decoded", plain(`{"a":"` + strings.Repeat(`\u0041`, 40) + `"}`), Limits{MaxString: 40}, ""},
		{"string/escaped-over", plain(`{"a":"` + strings.Repeat(`\u0041`, 41) + `"}`), Limits{MaxString: 40}, reason.MalformedEnvelope},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.raw, tt.lim)
			if tt.want == "" && err != nil || tt.want != "" && !errors.Is(err, tt.want) {
				t.Fatalf("Parse(%d bytes, %+v) = %v; want %q", len(tt.raw), tt.lim, err, tt.want)
			}
		})
	}
}

// TestParseHugeBodyBoundedMemory: a 100 MB body is refused by its size
// alone, without reading it.
func TestParseHugeBodyBoundedMemory(t *testing.T) {
	huge := bytes.Repeat([]byte("["), 100<<20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var err error
	for range 10 {
		_, err = Parse(huge, Limits{})
	}
	runtime.ReadMemStats(&after)
	if !errors.Is(err, reason.Oversized) {
		t.Fatalf("Parse(100 MB) = %v; want %v", err, reason.Oversized)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("10 × Parse(100 MB) allocated %d bytes; want < 1 MiB", got)
	}
}

// TestParseDeepNestingCheap: 10,000-deep nesting fails at MaxDepth, after
// reading a few dozen bytes: it costs no more than 100-deep nesting, and
// allocates almost nothing.
func TestParseDeepNestingCheap(t *testing.T) {
	for _, open := range []string{`{"a":`, `[`} {
		allocs := func(depth int) float64 {
			deep := plain(strings.Repeat(open, depth))
			return testing.AllocsPerRun(20, func() {
				if _, err := Parse(deep, Limits{}); !errors.Is(err, reason.MalformedEnvelope) {
					t.Fatalf("Parse(%d deep) = %v", depth, err)
				}
			})
		}
		// Slack of 2: fmt's sync.Pool drops items at random under -race.
		shallow, deep := allocs(100), allocs(10000)
		if deep > shallow+2 || deep > 16 {
			t.Errorf("Parse(%q × 10000) = %v allocs, × 100 = %v; want the same and <= 16", open, deep, shallow)
		}
	}
}

func TestParseAllocs(t *testing.T) {
	body := render(baseMembers())
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Parse(body, Limits{}); err != nil {
			t.Fatal(err)
		}
	})
	// One Body and one string holding every string field.
	if allocs > 2 {
		t.Errorf("Parse(wire-v1) = %v allocs; want <= 2", allocs)
	}
}

// checkInvariants asserts what Parse success promises: every field rule of
// docs/wire.md, and a Builder fed the parsed fields produces a body that
// parses to the same values.
func checkInvariants(t testing.TB, b *Body, raw []byte) {
	t.Helper()
	switch {
	case b.V != Version:
		t.Fatalf("V = %d", b.V)
	case !validMessageID([]byte(b.MessageID)):
		t.Fatalf("MessageID %q", b.MessageID)
	case !validIdempotencyKey([]byte(b.IdempotencyKey)):
		t.Fatalf("IdempotencyKey %q", b.IdempotencyKey)
	case !validTraceID([]byte(b.TraceID)):
		t.Fatalf("TraceID %q", b.TraceID)
	case b.IssuedAt.Location() != nil && b.IssuedAt.Location().String() != "UTC",
		b.ExpiresAt.Location().String() != "UTC":
		t.Fatalf("times not UTC: %v %v", b.IssuedAt, b.ExpiresAt)
	case !validTenant([]byte(b.Tenant)) || !subjects.ValidToken(b.Tenant):
		t.Fatalf("Tenant %q", b.Tenant)
	case !validAudience([]byte(b.Audience)):
		t.Fatalf("Audience %q", b.Audience)
	case !b.Capability.Valid():
		t.Fatalf("Capability %q", b.Capability)
	case b.Capability == Approve && !validMessageID([]byte(b.Target)),
		b.Capability == Respond && !validRequestRef([]byte(b.Target)),
		!b.Capability.AnswersMessage() && (!validTarget([]byte(b.Target)) || !subjects.ValidTarget(b.Target)):
		t.Fatalf("Target %q for %s", b.Target, b.Capability)
	case b.Payload.IsSealed() == (b.Payload.Plain != nil):
		t.Fatalf("payload sealed=%v plain=%q", b.Payload.IsSealed(), b.Payload.Plain)
	case b.Payload.IsSealed() && (!validCurveKey([]byte(b.Payload.From)) || !validCurveKey([]byte(b.Payload.To))):
		t.Fatalf("payload keys %q %q", b.Payload.From, b.Payload.To)
	case !b.Payload.IsSealed() && (b.Payload.From != "" || b.Payload.To != "" || b.Payload.Plain[0] != '{'):
		t.Fatalf("plain payload %+v", b.Payload)
	case !bytes.Contains(raw, b.payloadRaw) || b.PayloadDigest() != Digest(b.payloadRaw):
		t.Fatalf("payload bytes %q not from the body", b.payloadRaw)
	}
	if b.Payload.IsSealed() {
		if _, err := b.Payload.SealedBytes(); err != nil {
			t.Fatalf("SealedBytes() = %v after Parse", err)
		}
	}
	if b.IssuedAt.Nanosecond() != 0 {
		return // Builder writes whole seconds
	}
	ttl := b.ExpiresAt.Sub(b.IssuedAt)
	if ttl <= 0 || !b.IssuedAt.Add(ttl).Equal(b.ExpiresAt) {
		// Builder refuses a negative TTL and cannot express one beyond
		// time.Duration (~292 years); Parse leaves both to Freshness.Check.
		return
	}
	rebuilt, err := Builder{
		MessageID: b.MessageID, IdempotencyKey: b.IdempotencyKey, TraceID: b.TraceID,
		Tenant: b.Tenant, Audience: b.Audience, Capability: b.Capability, Target: b.Target,
		TTL: ttl, Payload: b.Payload, Limits: Limits{MaxBytes: 1 << 30, MaxString: 1 << 30},
	}.Build(b.IssuedAt)
	if err != nil {
		t.Fatalf("Builder(parsed fields).Build = %v", err)
	}
	b2, err := Parse(rebuilt, Limits{MaxBytes: 1 << 30, MaxString: 1 << 30})
	if err != nil {
		t.Fatalf("Parse(rebuilt) = %v", err)
	}
	if b2.MessageID != b.MessageID || b2.IdempotencyKey != b.IdempotencyKey || b2.TraceID != b.TraceID ||
		!b2.IssuedAt.Equal(b.IssuedAt) || !b2.ExpiresAt.Equal(b.ExpiresAt) || b2.Tenant != b.Tenant ||
		b2.Audience != b.Audience || b2.Capability != b.Capability || b2.Target != b.Target ||
		b2.Payload.Sealed != b.Payload.Sealed || b2.Payload.From != b.Payload.From ||
		b2.Payload.To != b.Payload.To || !bytes.Equal(b2.Payload.Plain, b.Payload.Plain) {
		t.Fatalf("rebuilt body differs:\n got %+v\nwant %+v", b2, b)
	}
}

func TestRequestRef(t *testing.T) {
	const agent, id = "UBEAFGHZ4WU2HWKV5UISUNSQ3HPVFCDDNRIU2NO67ILH5CAZ2IYTUFAM", "9f1c2b7e4d8a4c3f:b6e1.5a2d-7c9e"
	ref := RequestRef(agent, id)
	gotAgent, gotID, ok := ParseRequestRef(ref)
	if !ok || gotAgent != agent || gotID != id {
		t.Fatalf("ParseRequestRef(%q) = %q, %q, %v; want %q, %q, true", ref, gotAgent, gotID, ok, agent, id)
	}
	for _, bad := range []string{"", id, agent, agent + "/", agent + id, "/" + id, agent + "/" + id + "/x", agent[:55] + "/" + id} {
		if _, _, ok := ParseRequestRef(bad); ok {
			t.Errorf("ParseRequestRef(%q) accepted", bad)
		}
	}
}

// TestDecodePayloadDetailQuotesNoInput: what DecodePayload says about
// malformed JSON names the offset and the rule, never a byte of the
// input: the gateway decodes an opened sealed payload with it, and the
// detail goes into the denied record, the audit event and the log.
func TestDecodePayloadDetailQuotesNoInput(t *testing.T) {
	for _, in := range []string{
		`{"a":1Q}`,      // unexpected byte after a value
		`{"a" Q 1}`,     // want ':'
		`{"a":"\Q"}`,    // bad escape
		`{"a":Q}`,       // no value
		`{"a":[1,2 Q]}`, // want ',' or ']'
	} {
		_, err := DecodePayload([]byte(in), Limits{})
		if err == nil {
			t.Fatalf("DecodePayload(%s) accepted", in)
		}
		if strings.Contains(err.Error(), "Q") {
			t.Errorf("DecodePayload(%s) = %q: quotes the input", in, err)
		}
	}
}
