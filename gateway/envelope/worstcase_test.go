package envelope

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/subjects/reason"
)

// Worst-case inputs for the strict scanner: bodies and opened payloads
// built to maximise the work of duplicate-name detection (many members,
// names of equal length sharing long prefixes, escaped names, full-depth
// nesting). BenchmarkParseWorstCase and BenchmarkDecodePayloadWorstCase
// report their cost in ns/byte at 1 KiB, 64 KiB and 1 MiB (flat when the
// scan is linear); TestNameWorkLinear proves the same without a clock.

// worstSizes are the input sizes of the benchmarks.
var worstSizes = []struct {
	name string
	n    int
}{{"1KiB", 1 << 10}, {"64KiB", 64 << 10}, {"1MiB", 1 << 20}}

// worstLimits admit a 1 MiB body, the largest max_body_bytes the gateway
// accepts; depth and string bounds are the defaults.
var worstLimits = Limits{MaxBytes: 1 << 20}

// nameOf returns the i-th of the names of width w over [a-z], most
// significant letter first, so consecutive names share their prefix.
func nameOf(i, w int) string {
	b := make([]byte, w)
	for j := w - 1; j >= 0; j-- {
		b[j] = 'a' + byte(i%26)
		i /= 26
	}
	return string(b)
}

// members returns comma-separated members item(0), item(1), ... totalling
// at most room bytes.
func members(room int, item func(i int) string) string {
	var b strings.Builder
	for i := 0; ; i++ {
		m := item(i)
		if i > 0 {
			m = "," + m
		}
		if b.Len()+len(m) > room {
			return b.String()
		}
		b.WriteString(m)
	}
}

// objectFamily builds the members of one JSON object, in at most room
// bytes, that make a generic object (payload.plain, an opened payload)
// work hardest.
type objectFamily struct {
	name  string
	items func(room int) string
}

var objectFamilies = []objectFamily{
	// Many members in one object: the folded-name set.
	{"members", func(room int) string {
		return members(room, func(i int) string { return `"` + nameOf(i, 5) + `":0` })
	}},
	// The same, every name written with an escape (decoded, then folded).
	{"escaped-names", func(room int) string {
		return members(room, func(i int) string { return `"\u0041` + nameOf(i, 4) + `":0` })
	}},
	// Objects of 16 members (the most compared pairwise) whose long names
	// differ only in their last letters.
	{"case-prefix-16", func(room int) string {
		prefix := strings.Repeat("N", 40)
		return members(room, func(i int) string {
			inner := make([]string, 16)
			for j := range inner {
				inner[j] = `"` + prefix + nameOf(j, 2) + `":0`
			}
			return `"` + nameOf(i, 5) + `":{` + strings.Join(inner, ",") + `}`
		})
	}},
	// Members whose values nest objects to the depth limit.
	{"deep", func(room int) string {
		const depth = 24 // below the default 32, inside body, payload, plain
		return members(room, func(i int) string {
			return `"` + nameOf(i, 5) + `":` + strings.Repeat(`{"a":`, depth) + `0` + strings.Repeat(`}`, depth)
		})
	}},
}

// bodyFamily builds an envelope body of exactly n bytes.
type bodyFamily struct {
	name string
	// unknown is true when the body is refused for its unknown members,
	// after the whole body was read; else it parses.
	unknown bool
	build   func(n int) []byte
}

func bodyFamilies() []bodyFamily {
	// wrap places items in the base body's payload (or after its last
	// member) and pads the body with trailing spaces to n bytes.
	wrap := func(n int, body func(items string) []byte, items func(room int) string) []byte {
		room := n - len(body(""))
		raw := body(items(room))
		if len(raw) > n {
			panic(fmt.Sprintf("worst-case body of %d bytes for %d", len(raw), n))
		}
		return append(raw, strings.Repeat(" ", n-len(raw))...)
	}
	fs := []bodyFamily{
		// Unknown body members: read to the end, then refused.
		{"body-unknown", true, func(n int) []byte {
			return wrap(n, plusRaw, func(room int) string {
				return members(room, func(i int) string { return `"` + nameOf(i, 5) + `":0` })
			})
		}},
		{"body-unknown-escaped", true, func(n int) []byte {
			return wrap(n, plusRaw, func(room int) string {
				return members(room, func(i int) string { return `"\u0041` + nameOf(i, 4) + `":0` })
			})
		}},
		// Unknown payload members.
		{"payload-unknown", true, func(n int) []byte {
			return wrap(n, func(items string) []byte { return withMember("payload", `{"plain":{},`+items+`}`) },
				func(room int) string {
					return members(room, func(i int) string { return `"` + nameOf(i, 5) + `":0` })
				})
		}},
	}
	for _, of := range objectFamilies {
		fs = append(fs, bodyFamily{"plain-" + of.name, false, func(n int) []byte {
			return wrap(n, func(items string) []byte { return plain(`{` + items + `}`) }, of.items)
		}})
	}
	return fs
}

// payloadOf returns an opened payload of exactly n bytes: one object
// holding of's members.
func payloadOf(of objectFamily, n int) []byte {
	raw := `{` + of.items(n-2) + `}`
	return []byte(raw + strings.Repeat(" ", n-len(raw)))
}

// parseWork parses raw and returns the name-detection work it took.
func parseWork(tb testing.TB, f bodyFamily, raw []byte) int {
	tb.Helper()
	var p parser
	_, err := p.parse(raw, worstLimits)
	var d *reason.Denial
	switch {
	case !f.unknown && err != nil:
		tb.Fatalf("Parse(%s, %d bytes) = %v; want it to parse", f.name, len(raw), err)
	case f.unknown && (!errors.As(err, &d) || d.Code != reason.MalformedEnvelope || !strings.HasPrefix(d.Detail, "unknown member")):
		tb.Fatalf("Parse(%s, %d bytes) = %v; want malformed_envelope: unknown member", f.name, len(raw), err)
	}
	return p.probes
}

// checkWork checks payload and returns the name-detection work it took.
func checkWork(tb testing.TB, name string, payload []byte) int {
	tb.Helper()
	var s scanner
	if err := s.checkPayload(payload, worstLimits); err != nil {
		tb.Fatalf("CheckPayload(%s, %d bytes) = %v; want nil", name, len(payload), err)
	}
	return s.probes
}

// TestNameWorkLinear: the work of duplicate-name detection (comparisons
// and set lookups, counted by the scanner) grows linearly with the input
// on every worst-case family: 16 times the bytes costs at most 17 times
// the work (quadratic work would cost 256 times), and never more than
// one probe per byte or two.
func TestNameWorkLinear(t *testing.T) {
	const small, large = 64 << 10, 1 << 20
	check := func(t *testing.T, workOf func(n int) int) {
		ws, wl := workOf(small), workOf(large)
		t.Logf("work: %d at %d bytes, %d at %d bytes", ws, small, wl, large)
		if ws == 0 {
			t.Fatalf("no name work at %d bytes: the input misses the path it is built for", small)
		}
		if wl > 17*ws {
			t.Errorf("work at %d bytes = %d, %.1f× the work at %d bytes (%d); want at most 17× for 16× the bytes", large, wl, float64(wl)/float64(ws), small, ws)
		}
		if wl > 2*large {
			t.Errorf("work at %d bytes = %d; want at most 2 per byte", large, wl)
		}
	}
	for _, f := range bodyFamilies() {
		t.Run("Parse/"+f.name, func(t *testing.T) {
			check(t, func(n int) int { return parseWork(t, f, f.build(n)) })
		})
	}
	for _, of := range objectFamilies {
		t.Run("CheckPayload/"+of.name, func(t *testing.T) {
			check(t, func(n int) int { return checkWork(t, of.name, payloadOf(of, n)) })
		})
	}
}

// reportPerByte reports the mean cost per input byte, the number that
// stays flat across sizes when the scan is linear.
func reportPerByte(b *testing.B, n int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/byte")
}

func BenchmarkParseWorstCase(b *testing.B) {
	for _, f := range bodyFamilies() {
		for _, sz := range worstSizes {
			b.Run(f.name+"/"+sz.name, func(b *testing.B) {
				raw := f.build(sz.n)
				parseWork(b, f, raw) // the input takes the path it is built for
				b.SetBytes(int64(len(raw)))
				b.ReportAllocs()
				for b.Loop() {
					_, _ = Parse(raw, worstLimits)
				}
				reportPerByte(b, len(raw))
			})
		}
	}
}

func BenchmarkDecodePayloadWorstCase(b *testing.B) {
	for _, of := range objectFamilies {
		for _, sz := range worstSizes {
			b.Run(of.name+"/"+sz.name, func(b *testing.B) {
				payload := payloadOf(of, sz.n)
				checkWork(b, of.name, payload)
				b.SetBytes(int64(len(payload)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := DecodePayload(payload, worstLimits); err != nil {
						b.Fatal(err)
					}
				}
				reportPerByte(b, len(payload))
			})
		}
	}
}
