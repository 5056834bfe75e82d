package policy

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// TestExponentNumbers: a number in exponent form converts to the value it
// denotes exactly, or is omitted; it is never rounded to a neighbour that
// a ceiling policy would let through.
func TestExponentNumbers(t *testing.T) {
	dec := func(s string) cedar.Value {
		d, err := types.ParseDecimal(s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	tests := []struct {
		name string
		in   string
		want cedar.Value // nil: omitted
	}{
		// strconv.ParseFloat rounded these: to 100000, to 2^53, to 100000.
		{"omit/fraction beyond float precision", "100000.00000000000000001e0", nil},
		{"long/above 2^53", "9007199254740993e0", cedar.Long(9007199254740993)},
		{"omit/fraction after shift", "1000000000000000000001e-16", nil},
		{"omit/five fractional digits", "100000.00001e0", nil},
		{"omit/five digits after shift", "10000000001e-5", nil},
		{"omit/just above a ceiling", "1000000000000000000000001e-19", nil},

		{"long/plain exponent", "1e3", cedar.Long(1000)},
		{"long/upper case E", "1E3", cedar.Long(1000)},
		{"long/plus sign", "1e+3", cedar.Long(1000)},
		{"long/fraction shifted out", "1.25e2", cedar.Long(125)},
		{"long/negative exponent integral", "15000e-2", cedar.Long(150)},
		{"long/trailing zeros in fraction", "2.500e3", cedar.Long(2500)},
		{"long/negative", "-2.5e1", cedar.Long(-25)},
		{"long/max", "9223372036854775807e0", cedar.Long(9223372036854775807)},
		{"long/max shifted", "922337203685477580.7e1", cedar.Long(9223372036854775807)},
		{"long/max from more digits", "92233720368547758070e-1", cedar.Long(9223372036854775807)},
		{"long/min", "-9223372036854775808e0", cedar.Long(-9223372036854775808)},
		{"long/min shifted", "-9.223372036854775808e18", cedar.Long(-9223372036854775808)},
		{"omit/max plus one", "9223372036854775808e0", nil},
		{"omit/min minus one", "-9.223372036854775809e18", nil},
		{"omit/twenty digits", "1e19", nil},

		{"decimal/four digits", "12345e-4", dec("1.2345")},
		{"decimal/leading fraction zeros", "1e-4", dec("0.0001")},
		{"decimal/negative", "-125e-2", dec("-1.25")},
		{"decimal/fraction with trailing zeros", "1.2340000e0", dec("1.234")},
		{"decimal/max", "922337203685477.5807e0", dec("922337203685477.5807")},
		{"decimal/min", "-9223372036854775808e-4", dec("-922337203685477.5808")},
		{"omit/beyond decimal max", "9223372036854775808e-4", nil},
		{"omit/beyond decimal min", "-9223372036854775809e-4", nil},

		{"zero/exponent", "0e0", cedar.Long(0)},
		{"zero/negative", "-0e0", cedar.Long(0)},
		{"zero/negative fraction", "-0.000e-3", cedar.Long(0)},
		{"zero/huge exponent", "0e1000", cedar.Long(0)},
		{"zero/huge negative exponent", "-0.0e-1000", cedar.Long(0)},
		{"zero/exponent beyond any bound", "0e" + strings.Repeat("9", 10000), cedar.Long(0)},

		{"omit/big exponent", "1e1000", nil},
		{"omit/big negative exponent", "1e-1000", nil},
		{"omit/exponent beyond int", "1e99999999999999999999999999", nil},
		{"omit/negative exponent beyond int", "-1e-99999999999999999999999999", nil},
		{"omit/exponent of a million digits", "1e" + strings.Repeat("9", 1<<20), nil},
		{"long/exponent with leading zeros", "1e" + strings.Repeat("0", 1<<20) + "3", cedar.Long(1000)},
		{"long/digits cancelled by exponent", "1" + strings.Repeat("0", 2000) + "e-2000", cedar.Long(1)},
		{"decimal/long fraction shifted back", "0." + strings.Repeat("0", 2000) + "15e2001", dec("1.5")},

		{"garbage/no exponent digits", "1e", nil},
		{"garbage/sign only", "1e+", nil},
		{"garbage/two signs", "1e-+5", nil},
		{"garbage/two exponents", "1e5e3", nil},
		{"garbage/no mantissa", "e5", nil},
		{"garbage/empty fraction", "1.e5", nil},
		{"garbage/no integer part", ".5e1", nil},
		{"garbage/leading zero", "01e1", nil},
		{"garbage/plus mantissa", "+1e1", nil},
		{"garbage/trailing byte", "1e5x", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := fromNumber(tt.in)
			if tt.want == nil {
				if why == "" {
					t.Errorf("fromNumber(%.40q) = %v; want omitted", tt.in, got)
				}
				return
			}
			if why != "" || !tt.want.Equal(got) {
				t.Errorf("fromNumber(%.40q) = %v, %q; want %v", tt.in, got, why, tt.want)
			}
		})
	}
}

// TestNumberSpellingsAgree: a plain number and every exponent spelling of
// it convert to the same Cedar value, or are both omitted for the same
// reason.
func TestNumberSpellingsAgree(t *testing.T) {
	plains := []string{
		"0", "-0", "0.0", "7", "-7", "150", "2500.000", "12.34", "-0.5", "0.0001", "0.00001",
		"100000", "100000.0001", "100000.00001", "100000.00000000000000001",
		"9007199254740992", "9007199254740993", "9223372036854775807", "9223372036854775808",
		"-9223372036854775808", "-9223372036854775809", "922337203685477.5807", "922337203685477.5808",
		"-922337203685477.5808", "-922337203685477.5809", "99999999999999999999", "1000000000000000000000.5",
	}
	shifts := []int{-40, -25, -20, -19, -5, -4, -3, -1, 0, 1, 2, 3, 4, 5, 16, 19, 20, 40}
	for _, p := range plains {
		for _, e := range shifts {
			checkSpelling(t, p, e, "e")
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		p := randomPlain(r)
		checkSpelling(t, p, r.IntN(61)-30, [...]string{"e", "E", "e+"}[r.IntN(3)])
	}
}

// FuzzNumberSpellings is TestNumberSpellingsAgree on fuzzed numbers.
func FuzzNumberSpellings(f *testing.F) {
	f.Add("100000.00000000000000001", 0)
	f.Add("9007199254740993", 3)
	f.Add("-0.0001", -4)
	f.Add("922337203685477.5807", 15)
	f.Fuzz(func(t *testing.T, raw string, shift int) {
		// Every input is checked: raw is read as a plain number
		// (plainFrom) and the shift kept within ±2000.
		plain := plainFrom(raw)
		if !isPlainJSONNumber(plain) {
			t.Fatalf("plainFrom(%q) = %q, not a plain JSON number", raw, plain)
		}
		checkSpelling(t, plain, shift%2001, "e")
	})
}

// plainFrom is s as a plain JSON number: s itself when it is one, else
// one spelled from its bytes (a sign, digits, and a fraction after the
// first '.'-like byte), so a fuzzer's arbitrary string still names a
// number to respell.
func plainFrom(s string) string {
	if isPlainJSONNumber(s) {
		return s
	}
	var b strings.Builder
	if len(s) > 0 && s[0]%2 == 1 {
		b.WriteByte('-')
	}
	frac := false
	n := 0
	for i := 0; i < len(s) && n < 40; i++ {
		c := s[i]
		if c%7 == 0 && !frac && n > 0 {
			b.WriteByte('.')
			frac = true
			continue
		}
		d := '0' + c%10
		if n == 0 && d == '0' && i+1 < len(s) {
			continue // no leading zero before more digits
		}
		b.WriteByte(d)
		n++
	}
	out := strings.TrimSuffix(b.String(), ".")
	if out == "" || out == "-" {
		return "0"
	}
	return out
}

func checkSpelling(t *testing.T, plain string, shift int, marker string) {
	t.Helper()
	spelled := respell(plain, shift, marker)
	want, wantWhy := fromNumber(plain)
	got, gotWhy := fromNumber(spelled)
	if (wantWhy == "") != (gotWhy == "") || wantWhy == "" && !want.Equal(got) || wantWhy != "" && gotWhy != wantWhy {
		t.Errorf("fromNumber(%s) = %v, %q; fromNumber(%s) = %v, %q; want the same", spelled, got, gotWhy, plain, want, wantWhy)
	}
}

// respell writes the plain JSON number p as mantissa × 10^shift, in the
// JSON grammar (no leading zeros in the integer part).
func respell(p string, shift int, marker string) string {
	sign := ""
	if strings.HasPrefix(p, "-") {
		sign, p = "-", p[1:]
	}
	intPart, frac, _ := strings.Cut(p, ".")
	digits := intPart + frac
	point := len(intPart) - shift // where the point goes in digits
	if point < 1 {
		digits = strings.Repeat("0", 1-point) + digits
		point = 1
	}
	if point > len(digits) {
		digits += strings.Repeat("0", point-len(digits))
	}
	i, f := strings.TrimLeft(digits[:point], "0"), digits[point:]
	if i == "" {
		i = "0"
	}
	m := i
	if f != "" {
		m += "." + f
	}
	if marker == "e+" && shift < 0 {
		marker = "e"
	}
	return sign + m + marker + strconv.Itoa(shift)
}

func randomPlain(r *rand.Rand) string {
	digits := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteByte(byte('0' + r.IntN(10)))
		}
		return b.String()
	}
	i := strings.TrimLeft(digits(r.IntN(22)), "0")
	if i == "" {
		i = "0"
	}
	s := i
	if r.IntN(2) == 0 {
		s = "-" + s
	}
	if r.IntN(3) > 0 {
		s += "." + digits(1+r.IntN(8)) + strings.Repeat("0", r.IntN(3))
	}
	return s
}

func isPlainJSONNumber(s string) bool {
	var n json.Number
	if json.Unmarshal([]byte(s), &n) != nil || string(n) != s || strings.ContainsAny(s, "eE") {
		return false
	}
	return true
}
