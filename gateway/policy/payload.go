package policy

import (
	"encoding/json"
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

// payloadRecord converts the policy-visible payload fields. Fields that
// cannot be represented are omitted with a note naming the top-level field
// (a catalog name), never its value.
func payloadRecord(m map[string]any, notes *[]string) cedar.Record {
	rm := make(cedar.RecordMap, len(m))
	start := len(*notes)
	for k, v := range m {
		cv, why := toValue(v, 1, k, notes)
		if why != "" {
			*notes = append(*notes, "payload."+k+": "+why+"; field omitted")
			continue
		}
		rm[cedar.String(k)] = cv
	}
	slices.Sort((*notes)[start:]) // map order is random; notes are not
	return cedar.NewRecord(rm)
}

// toValue converts one JSON-decoded value. A non-empty why means v is not
// representable and must be omitted; omissions inside containers are
// noted against the top-level field.
func toValue(v any, depth int, field string, notes *[]string) (cedar.Value, string) {
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
		rm := make(cedar.RecordMap, len(v))
		for k, e := range v {
			cv, why := toValue(e, depth+1, field, notes)
			if why != "" {
				*notes = append(*notes, "payload."+field+": nested value "+why+"; omitted inside")
				continue
			}
			rm[cedar.String(k)] = cv
		}
		return cedar.NewRecord(rm), ""
	case []any:
		if depth >= maxPayloadDepth {
			return nil, "nested deeper than " + strconv.Itoa(maxPayloadDepth)
		}
		vals := make([]cedar.Value, 0, len(v))
		for _, e := range v {
			cv, why := toValue(e, depth+1, field, notes)
			if why != "" {
				*notes = append(*notes, "payload."+field+": element "+why+"; omitted inside")
				continue
			}
			vals = append(vals, cv)
		}
		return cedar.NewSet(vals...), ""
	case []string:
		vals := make([]cedar.Value, len(v))
		for i, e := range v {
			vals[i] = cedar.String(e)
		}
		return cedar.NewSet(vals...), ""
	default:
		return nil, "unsupported Go type"
	}
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

// fromNumber converts a JSON number literal exactly where it can.
func fromNumber(s string) (cedar.Value, string) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return cedar.Long(i), ""
	}
	if strings.ContainsAny(s, "eE") {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, "number out of range"
		}
		return fromFloat(f)
	}
	if !strings.Contains(s, ".") {
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return nil, "integer out of Long range"
		}
		return nil, "not a JSON number"
	}
	return fromDecimal(s)
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
