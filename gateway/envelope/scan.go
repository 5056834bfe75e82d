package envelope

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/agentgw/agentgw/subjects/reason"
)

// Number tokens are bounded so that a payload schema validator downstream,
// which may turn numbers into big.Rat, cannot be made to compute 10^1e9.
const (
	maxNumberLen = 64
	maxExponent  = 1000
)

// Objects with more members than this switch from pairwise comparison to
// a set of case-folded names, keeping duplicate detection linear.
const foldSetThreshold = 16

// scanner reads strict JSON (RFC 8259 plus the rules in doc.go) from one
// buffer. It allocates nothing on the success path except for member names
// written with escapes and for objects above foldSetThreshold members.
type scanner struct {
	data    []byte
	pos     int
	lim     Limits
	names   nameStack // decoded names of the open generic objects
	scratch []byte    // unescaped string; valid until the next string
	// probes counts member-name comparisons and name-set lookups: the
	// work of duplicate detection, which must grow linearly with the
	// input (TestNameWorkLinear).
	probes int
}

// fail is a MalformedEnvelope denial at the current offset. Its detail
// names the rule broken and never quotes the input: the scanner also
// reads opened sealed payloads, whose bytes must not reach a denied
// record, an audit event or a log.
func (s *scanner) fail(format string, args ...any) error {
	return reason.Deny(reason.MalformedEnvelope, "offset %d: "+format, append([]any{s.pos}, args...)...)
}

func (s *scanner) skipWS() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at end of input.
func (s *scanner) peek() byte {
	s.skipWS()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

// expect consumes c (after whitespace) or fails.
func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		if s.pos >= len(s.data) {
			return s.fail("unexpected end of input, want %q", c)
		}
		return s.fail("unexpected byte, want %q", c)
	}
	s.pos++
	return nil
}

// end checks that only whitespace follows the top-level value.
func (s *scanner) end() error {
	if s.peek() != 0 || s.pos != len(s.data) {
		return s.fail("data after the top-level value")
	}
	return nil
}

// str reads a string whose opening quote is at s.pos. It returns the
// decoded bytes (a sub-slice of data when there are no escapes, else
// s.scratch) and whether escapes were present. max bounds the decoded
// length in bytes.
func (s *scanner) str(max int) (v []byte, escaped bool, err error) {
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return nil, false, s.fail("want a string")
	}
	start := s.pos + 1
	i := start
	for i < len(s.data) {
		// Fast path: printable ASCII other than '"' and '\\'.
		for i < len(s.data) && plainASCII[s.data[i]] {
			i++
		}
		if i >= len(s.data) {
			break
		}
		c := s.data[i]
		switch {
		case c == '"':
			s.pos = i + 1
			if i-start > max {
				return nil, false, s.fail("string longer than %d bytes", max)
			}
			return s.data[start:i], false, nil
		case c == '\\':
			s.pos = i
			return s.strEscaped(start, max)
		case c < 0x20:
			s.pos = i
			return nil, false, s.fail("control character in string")
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(s.data[i:])
			if r == utf8.RuneError && n == 1 {
				s.pos = i
				return nil, false, s.fail("invalid UTF-8")
			}
			i += n
		}
	}
	s.pos = i
	return nil, false, s.fail("unterminated string")
}

// plainASCII marks the bytes a string may hold that need no attention.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// strEscaped continues str from the first backslash at s.pos, decoding
// into s.scratch.
func (s *scanner) strEscaped(start, max int) ([]byte, bool, error) {
	out := append(s.scratch[:0], s.data[start:s.pos]...)
	i := s.pos
	for i < len(s.data) {
		if len(out) > max {
			s.pos = i
			return nil, false, s.fail("string longer than %d bytes", max)
		}
		c := s.data[i]
		switch {
		case c == '"':
			s.pos = i + 1
			s.scratch = out
			return out, true, nil
		case c == '\\':
			if i+1 >= len(s.data) {
				s.pos = i
				return nil, false, s.fail("unterminated escape")
			}
			e := s.data[i+1]
			i += 2
			switch e {
			case '"', '\\', '/':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := hex4(s.data, i)
				if !ok {
					s.pos = i
					return nil, false, s.fail("bad \\u escape")
				}
				i += 4
				if utf8.ValidRune(r) {
					out = utf8.AppendRune(out, r)
					break
				}
				// A surrogate: only a high one followed by a low one is a
				// character; anything else is invalid UTF-16, refused like
				// invalid UTF-8.
				if r >= 0xDC00 || i+6 > len(s.data) || s.data[i] != '\\' || s.data[i+1] != 'u' {
					s.pos = i
					return nil, false, s.fail("unpaired surrogate escape")
				}
				lo, ok := hex4(s.data, i+2)
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					s.pos = i
					return nil, false, s.fail("unpaired surrogate escape")
				}
				i += 6
				out = utf8.AppendRune(out, 0x10000+(r-0xD800)<<10+(lo-0xDC00))
			default:
				s.pos = i - 1
				return nil, false, s.fail("bad escape")
			}
		case c < 0x20:
			s.pos = i
			return nil, false, s.fail("control character in string")
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, n := utf8.DecodeRune(s.data[i:])
			if r == utf8.RuneError && n == 1 {
				s.pos = i
				return nil, false, s.fail("invalid UTF-8")
			}
			out = append(out, s.data[i:i+n]...)
			i += n
		}
	}
	s.pos = i
	return nil, false, s.fail("unterminated string")
}

// name reads a member name whose opening quote is at s.pos, as str does,
// and refuses one holding a control character (Unicode category Cc:
// U+0000-U+001F, U+007F-U+009F), escaped or not. Values may carry them
// (text has line breaks); a name may not: decoders downstream end a key
// at U+0000 (cJSON) or drop or rewrite controls, so {"tenant\u0000":"b"}
// would reach a consumer as tenant while every check here, matching
// names exactly, saw another member.
func (s *scanner) name() (v []byte, escaped bool, err error) {
	at := s.pos
	v, escaped, err = s.str(s.lim.MaxString)
	if err == nil && hasControl(v) {
		s.pos = at
		return nil, false, s.fail("control character in member name")
	}
	return v, escaped, err
}

// hasControl reports whether the valid UTF-8 b holds a rune of category
// Cc: a byte below 0x20, 0x7F, or U+0080-U+009F (0xC2 0x80-0x9F; 0xC2 is
// never a continuation byte).
func hasControl(b []byte) bool {
	for i, c := range b {
		if c < 0x20 || c == 0x7f || c == 0xc2 && i+1 < len(b) && b[i+1] <= 0x9f {
			return true
		}
	}
	return false
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number reads a JSON number token and returns its bytes.
func (s *scanner) number() ([]byte, error) {
	start := s.pos
	d := s.data
	i := start
	digits := func() int {
		n := 0
		for i < len(d) && '0' <= d[i] && d[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case digits() == 0:
		s.pos = i
		return nil, s.fail("bad number")
	}
	if i < len(d) && d[i] == '.' {
		i++
		if digits() == 0 {
			s.pos = i
			return nil, s.fail("bad number fraction")
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		expStart := i
		if digits() == 0 {
			s.pos = i
			return nil, s.fail("bad number exponent")
		}
		exp := 0
		for _, c := range d[expStart:i] {
			exp = exp*10 + int(c-'0')
			if exp > maxExponent {
				s.pos = start
				return nil, s.fail("number exponent beyond %d", maxExponent)
			}
		}
	}
	if i-start > maxNumberLen {
		s.pos = start
		return nil, s.fail("number longer than %d bytes", maxNumberLen)
	}
	s.pos = i
	return d[start:i], nil
}

func (s *scanner) literal(lit string) error {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
		return s.fail("bad literal")
	}
	s.pos += len(lit)
	return nil
}

// value reads and validates any JSON value. depth is the nesting level of
// the container holding it (0 for a top-level value).
func (s *scanner) value(depth int) error {
	switch c := s.peek(); c {
	case '{':
		return s.object(depth + 1)
	case '[':
		return s.array(depth + 1)
	case '"':
		_, _, err := s.str(s.lim.MaxString)
		return err
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	case 0:
		return s.fail("unexpected end of input")
	default:
		if c == '-' || '0' <= c && c <= '9' {
			_, err := s.number()
			return err
		}
		return s.fail("unexpected byte")
	}
}

func (s *scanner) array(depth int) error {
	if depth > s.lim.MaxDepth {
		return s.fail("nesting deeper than %d", s.lim.MaxDepth)
	}
	s.pos++ // '['
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		if err := s.value(depth); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.fail("want ',' or ']' in array")
		}
	}
}

// object reads a generic object, rejecting duplicate names (under case
// folding) among its members.
func (s *scanner) object(depth int) error {
	if depth > s.lim.MaxDepth {
		return s.fail("nesting deeper than %d", s.lim.MaxDepth)
	}
	s.pos++ // '{'
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	base := s.names.len()
	defer s.names.truncate(base)
	var set map[string]struct{}
	for {
		if s.peek() != '"' {
			return s.fail("want a member name")
		}
		at := s.pos
		name, escaped, err := s.name()
		if err != nil {
			return err
		}
		if set != nil {
			f := foldBytes(name)
			s.probes++
			n := len(set)
			set[f] = struct{}{} // one hash: a duplicate leaves the size as it was
			if len(set) == n {
				s.pos = at
				return s.fail("duplicate member name (names differing only in case are duplicates)")
			}
		} else {
			if s.names.hasFold(base, name, &s.probes) {
				s.pos = at
				return s.fail("duplicate member name (names differing only in case are duplicates)")
			}
			if escaped {
				name = bytes.Clone(name)
			}
			s.names.push(name)
			if s.names.len()-base > foldSetThreshold {
				set = make(map[string]struct{}, 2*foldSetThreshold)
				for i := base; i < s.names.len(); i++ {
					set[foldBytes(s.names.at(i))] = struct{}{}
				}
			}
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := s.value(depth); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.fail("want ',' or '}' in object")
		}
	}
}

// nameStack holds the member names of the open objects. The first 16
// live in the scanner itself, so typical payloads need no allocation.
type nameStack struct {
	fixed [16][]byte
	more  [][]byte
	n     int
}

func (st *nameStack) len() int { return st.n }

func (st *nameStack) at(i int) []byte {
	if i < len(st.fixed) {
		return st.fixed[i]
	}
	return st.more[i-len(st.fixed)]
}

func (st *nameStack) push(name []byte) {
	if st.n < len(st.fixed) {
		st.fixed[st.n] = name
	} else {
		st.more = append(st.more[:st.n-len(st.fixed)], name)
	}
	st.n++
}

func (st *nameStack) truncate(n int) { st.n = n }

// hasFold reports whether name equals one of the names from index from
// on under Unicode simple case folding, counting each comparison in
// *probes. Callers keep the names compared at most foldSetThreshold.
func (st *nameStack) hasFold(from int, name []byte, probes *int) bool {
	for i := from; i < st.n; i++ {
		*probes++
		if bytes.EqualFold(st.at(i), name) {
			return true
		}
	}
	return false
}

// CheckPayload checks that payload is one JSON object under the same
// strict rules as the envelope (doc.go): valid UTF-8, no control
// character in a member name and no duplicate member names at any depth
// (names differing only in case count as duplicates), depth and string
// bounds, bounded numbers, nothing after the object.
// The gateway runs it on an opened sealed payload before its schema and
// content policy see it: a plain payload was checked with the envelope,
// and a sealed one must not give the policy one reading of a duplicated
// member and the consumer another. Failures are MalformedEnvelope
// denials with an offset, never the payload's bytes.
func CheckPayload(payload []byte, lim Limits) error {
	var s scanner
	return s.checkPayload(payload, lim)
}

func (s *scanner) checkPayload(payload []byte, lim Limits) error {
	lim = lim.withDefaults()
	if len(payload) > lim.MaxBytes {
		return reason.Deny(reason.Oversized, "payload is %d bytes; limit %d", len(payload), lim.MaxBytes)
	}
	*s = scanner{data: payload, lim: lim}
	if s.peek() != '{' {
		return s.fail("payload is not a JSON object")
	}
	if err := s.value(1); err != nil {
		return err
	}
	return s.end()
}

// DecodePayload is CheckPayload that also returns the object, decoded
// the way the schema validator's decoder does it (encoding/json with
// UseNumber: objects as map[string]any, arrays as []any, numbers as
// json.Number, strings unescaped) — from the bytes the strict scan
// accepted, by the same string decoder, so what the schema and the
// content policy read is exactly what was checked.
func DecodePayload(payload []byte, lim Limits) (map[string]any, error) {
	if err := CheckPayload(payload, lim); err != nil {
		return nil, err
	}
	s := scanner{data: payload, lim: lim.withDefaults()}
	s.peek()
	v, err := s.decode()
	if err != nil {
		return nil, err // cannot happen after CheckPayload
	}
	obj, _ := v.(map[string]any)
	return obj, nil
}

// decode reads a value already validated by value.
func (s *scanner) decode() (any, error) {
	switch c := s.peek(); c {
	case '{':
		s.pos++
		obj := map[string]any{}
		if s.peek() == '}' {
			s.pos++
			return obj, nil
		}
		for {
			s.peek()
			name, _, err := s.str(s.lim.MaxString)
			if err != nil {
				return nil, err
			}
			key := string(name)
			if err := s.expect(':'); err != nil {
				return nil, err
			}
			v, err := s.decode()
			if err != nil {
				return nil, err
			}
			obj[key] = v
			if s.peek() == ',' {
				s.pos++
				continue
			}
			s.pos++ // '}'
			return obj, nil
		}
	case '[':
		s.pos++
		arr := []any{}
		if s.peek() == ']' {
			s.pos++
			return arr, nil
		}
		for {
			v, err := s.decode()
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
			if s.peek() == ',' {
				s.pos++
				continue
			}
			s.pos++ // ']'
			return arr, nil
		}
	case '"':
		v, _, err := s.str(s.lim.MaxString)
		return string(v), err
	case 't':
		s.pos += 4
		return true, nil
	case 'f':
		s.pos += 5
		return false, nil
	case 'n':
		s.pos += 4
		return nil, nil
	default:
		n, err := s.number()
		return json.Number(n), err
	}
}
