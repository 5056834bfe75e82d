package policy

import (
	"encoding/json"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// maxPayloadDepth bounds nesting of payload objects and arrays seen by
// policy; deeper values are omitted.
const maxPayloadDepth = 8

// maxPayloadElements bounds the array elements and object members, at
// every depth and across all fields, converted for one payload record; a
// field that would take the count past it is omitted, as one Cedar
// cannot hold is (BuiltinPayloadUnrepresentable). cedar-go's NewSet places each element at its hash and probes the
// next hash on a collision, and the hash of a Long is its value, of a
// Decimal its value × 10^4, of a Set the sum of its elements' hashes: an
// array such as [0, 1, …, n-1, 0.0001, 0.0002, …] costs about n²/4
// probes to convert, and so does every Contains on it. Bounded here, a
// payload's sets cost at most about 256²/4 probes whatever their shape.
// 256 covers the lists a policy judges (accounts, recipients, line
// items); a larger list belongs in the consumer, not in policy.
const maxPayloadElements = 256

// payloadRecord converts the policy-visible payload fields. Fields that
// cannot be represented are omitted with a note naming the top-level field
// (a catalog name), never its value. Fields, and the members of every
// object, are converted in name order, so which field the element bound
// (maxPayloadElements) leaves out, and the note saying why, do not depend
// on map order.
//
// omitted reports that a field was left out: when a policy that takes
// the request in reads the payload, the payload is then denied whole
// (evaluate), since a forbid guarded by `context.payload has f` would
// pass a field left out, and the element bound is shared, so one field
// can crowd out another.
func payloadRecord(m map[string]any, notes *[]string) (rec cedar.Record, omitted bool) {
	rm := make(cedar.RecordMap, len(m))
	start := len(*notes)
	left := maxPayloadElements
	for _, k := range slices.Sorted(maps.Keys(m)) {
		cv, why := convert(m[k], 1, &left)
		if why != "" {
			*notes = append(*notes, "payload."+k+": "+why+"; field omitted")
			// A field that is null is absent, for policy as for the
			// consumer: it hides no value. Anything else left out does.
			omitted = omitted || m[k] != nil
			continue
		}
		rm[cedar.String(k)] = cv
	}
	slices.Sort((*notes)[start:])
	return cedar.NewRecord(rm), omitted
}

// convert converts one JSON-decoded value, taking one from *left for each
// array element and object member it converts. A non-empty why means v is
// not representable and must be omitted. A container holding anything
// that is not is not representable either: a field is given to policy
// whole or not at all, so every condition reading it errors (and a forbid
// denies) rather than judging a set or record with elements left out (an
// allow-list's containsAll, a record compared whole). A container whose
// elements would take *left below zero is not representable: convert
// stops at the first element past the bound, so its work is bounded by
// maxPayloadElements whatever the container's length.
func convert(v any, depth int, left *int) (cedar.Value, string) {
	switch v := v.(type) {
	case string:
		return cedar.String(v), ""
	case bool:
		return cedar.Boolean(v), ""
	case float64:
		return fromFloat(v)
	case float32:
		return fromFloat(float64(v))
	case json.Number:
		return fromNumber(string(v))
	case int:
		return cedar.Long(v), ""
	case int64:
		return cedar.Long(v), ""
	case int32:
		return cedar.Long(v), ""
	case uint64:
		if v > math.MaxInt64 {
			return nil, "integer out of Long range"
		}
		return cedar.Long(v), ""
	case nil:
		return nil, "null has no Cedar value"
	case map[string]any:
		if depth >= maxPayloadDepth {
			return nil, "nested deeper than " + strconv.Itoa(maxPayloadDepth)
		}
		if len(v) > *left {
			return nil, tooMany
		}
		rm := make(cedar.RecordMap, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if *left == 0 {
				return nil, tooMany
			}
			*left--
			cv, why := convert(v[k], depth+1, left)
			if why != "" {
				return nil, inside(why)
			}
			rm[cedar.String(k)] = cv
		}
		return cedar.NewRecord(rm), ""
	case []any:
		if depth >= maxPayloadDepth {
			return nil, "nested deeper than " + strconv.Itoa(maxPayloadDepth)
		}
		if len(v) > *left {
			return nil, tooMany
		}
		vals := make([]cedar.Value, 0, len(v))
		for _, e := range v {
			if *left == 0 {
				return nil, tooMany
			}
			*left--
			cv, why := convert(e, depth+1, left)
			if why != "" {
				return nil, inside(why)
			}
			vals = append(vals, cv)
		}
		return cedar.NewSet(vals...), ""
	case []string:
		if len(v) > *left {
			return nil, tooMany
		}
		*left -= len(v)
		vals := make([]cedar.Value, len(v))
		for i, e := range v {
			vals[i] = cedar.String(e)
		}
		return cedar.NewSet(vals...), ""
	default:
		return nil, "unsupported Go type"
	}
}

// tooMany is why for a container whose elements would take the payload
// past maxPayloadElements.
var tooMany = "more than " + strconv.Itoa(maxPayloadElements) + " array elements and object members in the payload"

// inside is why for the container of a value that is not representable
// for why.
func inside(why string) string {
	if strings.HasPrefix(why, "inside: ") {
		return why
	}
	return "inside: " + why
}

// twoTo63 is 2^63 as a float64: the first integral float outside int64.
const twoTo63 = float64(1 << 63)

func fromFloat(f float64) (cedar.Value, string) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, "not a finite number"
	}
	if f == math.Trunc(f) {
		if f >= -twoTo63 && f < twoTo63 {
			return cedar.Long(int64(f)), ""
		}
		return nil, "integer out of Long range"
	}
	// The shortest decimal that round-trips is what the sender wrote
	// (or an equally valid spelling of the same float).
	return fromDecimal(strconv.FormatFloat(f, 'f', -1, 64))
}

// fromNumber converts a JSON number literal exactly where it can. Every
// spelling of one value converts alike: 150, 150.0, 1.5e2 and 15000e-2
// are Long 150, and a value that needs more than four fractional digits
// is omitted however it is written (100000.00000000000000001 and
// 100000.00000000000000001e0 alike), never rounded to a neighbour.
func fromNumber(s string) (cedar.Value, string) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return cedar.Long(i), ""
	}
	if strings.ContainsAny(s, "eE") {
		return fromExponent(s)
	}
	if !strings.Contains(s, ".") {
		if isDigits(strings.TrimPrefix(s, "-")) {
			return nil, "integer out of Long range"
		}
		return nil, "not a JSON number"
	}
	return fromDecimal(s)
}

// maxLongDigits is the number of decimal digits of the largest Long
// magnitude, 9223372036854775808 (-2^63).
const maxLongDigits = 19

// fromExponent converts a JSON number in exponent form
// (-?int(.frac)?[eE][+-]?digits) exactly. It rewrites the literal as the
// plain decimal it denotes and converts that as fromNumber converts a
// plain literal, so rounding never enters (strconv.ParseFloat would turn
// 9007199254740993e0 into 9007199254740992).
//
// The plain spelling is written only when it is short: a value whose
// integer digits cannot fit a Long, or whose fraction needs more than
// four digits, is refused from the digit count and the exponent alone.
// So the work is linear in len(s) whatever the exponent, even for a
// json.Number that did not come through the envelope scanner (which caps
// exponents at 1000 and number tokens at 64 bytes).
func fromExponent(s string) (cedar.Value, string) {
	const notNumber = "not a JSON number"
	mant, exp, _ := strings.Cut(strings.Replace(s, "E", "e", 1), "e")
	sign := ""
	if strings.HasPrefix(mant, "-") {
		sign, mant = "-", mant[1:]
	}
	intPart, frac, dot := strings.Cut(mant, ".")
	if !isDigits(intPart) || len(intPart) > 1 && intPart[0] == '0' || dot && !isDigits(frac) {
		return nil, notNumber
	}
	expNeg := strings.HasPrefix(exp, "-")
	if expNeg || strings.HasPrefix(exp, "+") {
		exp = exp[1:]
	}
	if !isDigits(exp) {
		return nil, notNumber
	}
	// The value is digits × 10^(e − len(frac)); leading zeros of digits
	// do not change it, trailing ones move into the exponent.
	digits := strings.TrimLeft(intPart+frac, "0")
	if digits == "" {
		return cedar.Long(0), "" // -0e5 is 0, as -0 and -0.0 are
	}
	trimmed := strings.TrimRight(digits, "0")
	// Saturate the exponent at bound: |k| below then exceeds both
	// maxLongDigits and 4, so the verdict is the one the exact exponent
	// would give, and the arithmetic cannot overflow.
	bound := len(s) + maxLongDigits
	e := 0
	for i := 0; i < len(exp) && e <= bound; i++ {
		e = e*10 + int(exp[i]-'0')
	}
	e = min(e, bound+1)
	if expNeg {
		e = -e
	}
	k := e - len(frac) + len(digits) - len(trimmed) // value = trimmed × 10^k
	n := len(trimmed)
	if k >= 0 {
		if n+k > maxLongDigits {
			return nil, "integer out of Long range"
		}
		i, err := strconv.ParseInt(sign+trimmed+strings.Repeat("0", k), 10, 64)
		if err != nil {
			return nil, "integer out of Long range"
		}
		return cedar.Long(i), ""
	}
	if -k > 4 {
		return nil, "more than 4 fractional digits, not representable as decimal"
	}
	if n > -k {
		return fromDecimal(sign + trimmed[:n+k] + "." + trimmed[n+k:])
	}
	return fromDecimal(sign + "0." + strings.Repeat("0", -k-n) + trimmed)
}

// fromDecimal converts a plain "-?digits.digits" literal to a Long when
// its fraction is zero, else to a Decimal when it has at most four
// fractional digits and fits Cedar's decimal range.
func fromDecimal(s string) (cedar.Value, string) {
	intPart, frac, ok := strings.Cut(s, ".")
	if !ok || !isDigits(strings.TrimPrefix(intPart, "-")) || !isDigits(frac) {
		return nil, "not a JSON number"
	}
	frac = strings.TrimRight(frac, "0")
	if frac == "" {
		i, err := strconv.ParseInt(intPart, 10, 64)
		if err != nil {
			return nil, "integer out of Long range"
		}
		return cedar.Long(i), ""
	}
	if len(frac) > 4 {
		return nil, "more than 4 fractional digits, not representable as decimal"
	}
	d, err := types.ParseDecimal(intPart + "." + frac)
	if err != nil {
		return nil, "out of decimal range"
	}
	return d, ""
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
