package envelope

import (
	"time"

	"github.com/agentgw/agentgw/subjects"
)

// Alphabets of the field rules (docs/wire.md). Every one is ASCII, so a
// length in bytes is a length in characters.
//
//   - message_id: [A-Za-z0-9._:-], 16-128. It is also the Nats-Msg-Id.
//   - idempotency_key: [A-Za-z0-9._:/+=@-], 1-128: the message id
//     alphabet plus what URL paths, base64 and e-mail-like keys need;
//     no spaces, quotes or backslashes, so a key is safe in logs.
//   - audience: [A-Za-z0-9._:/-], 1-128: host names, URNs and URL-ish
//     names, as in a credential's aud.
//   - tenant and each target part: [a-z0-9_-], 1-64: a NATS subject token
//     by construction, so a valid tenant or target is always routable.
var (
	messageIDChars   = charset("A-Za-z0-9._:-")
	idempotencyChars = charset("A-Za-z0-9._:/+=@-")
	audienceChars    = charset("A-Za-z0-9._:/-")
	tokenChars       = charset("a-z0-9_-")
	base64URLChars   = charset("A-Za-z0-9_-")
	lowerHexChars    = charset("0-9a-f")
)

// charset builds a byte table from ranges like "a-z" and single bytes; a
// '-' that ends the spec is literal.
func charset(spec string) *[256]bool {
	var t [256]bool
	for i := 0; i < len(spec); i++ {
		if i+2 < len(spec) && spec[i+1] == '-' {
			for c := spec[i]; c <= spec[i+2]; c++ {
				t[c] = true
			}
			i += 2
			continue
		}
		t[spec[i]] = true
	}
	return &t
}

func allIn(b []byte, t *[256]bool, minLen, maxLen int) bool {
	if len(b) < minLen || len(b) > maxLen {
		return false
	}
	for _, c := range b {
		if !t[c] {
			return false
		}
	}
	return true
}

func validMessageID(b []byte) bool      { return allIn(b, messageIDChars, 16, 128) }
func validIdempotencyKey(b []byte) bool { return allIn(b, idempotencyChars, 1, 128) }
func validAudience(b []byte) bool       { return allIn(b, audienceChars, 1, 128) }
func validTenant(b []byte) bool         { return allIn(b, tokenChars, 1, 64) }

// validTraceID: 32 lowercase hex digits, not all zero.
func validTraceID(b []byte) bool {
	if !allIn(b, lowerHexChars, 32, 32) {
		return false
	}
	for _, c := range b {
		if c != '0' {
			return true
		}
	}
	return false
}

// validTarget: dot-separated parts, each [a-z0-9_-]{1,64}, at most 255
// bytes in all.
func validTarget(b []byte) bool {
	if len(b) == 0 || len(b) > 255 {
		return false
	}
	start := 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			if !validTenant(b[start:i]) {
				return false
			}
			start = i + 1
		}
	}
	return true
}

// validSealed: non-empty base64url without padding whose length is
// possible (len%4 != 1) and whose unused trailing bits are zero, so each
// ciphertext has one encoding. The JSON Schema states the same rule as a
// pattern.
func validSealed(b []byte) bool {
	if len(b) == 0 || len(b)%4 == 1 || !allIn(b, base64URLChars, 1, len(b)) {
		return false
	}
	last := b64val(b[len(b)-1])
	switch len(b) % 4 {
	case 2:
		return last&0x0f == 0
	case 3:
		return last&0x03 == 0
	}
	return true
}

func b64val(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c - 'A'
	case 'a' <= c && c <= 'z':
		return c - 'a' + 26
	case '0' <= c && c <= '9':
		return c - '0' + 52
	case c == '-':
		return 62
	}
	return 63 // '_'
}

// userKeyLen is the length of an nkeys public key.
const userKeyLen = 56

// validRequestRef checks a respond target: "<U key>/<message id>".
func validRequestRef(b []byte) bool {
	if len(b) <= userKeyLen || b[userKeyLen] != '/' || !validMessageID(b[userKeyLen+1:]) {
		return false
	}
	return subjects.ValidAgent(string(b[:userKeyLen]))
}

// validCurveKey checks a curve key in the wire's strict form
// (subjects.ValidKey).
func validCurveKey(b []byte) bool { return subjects.ValidKey(string(b), 'X') }

func parseCapability(b []byte) (Capability, bool) {
	switch string(b) {
	case "read":
		return Read, true
	case "delegate":
		return Delegate, true
	case "tool_call":
		return ToolCall, true
	case "workflow_command":
		return WorkflowCommand, true
	case "approve":
		return Approve, true
	case "respond":
		return Respond, true
	}
	return "", false
}

// ParseTime reads a time as the envelope's issued_at and expires_at are
// read (parseTime). Other documents with times (operator requests) use it
// so that a time has one text form.
func ParseTime(s string) (time.Time, bool) { return parseTime([]byte(s)) }

// parseTime reads YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z exactly: RFC 3339 in UTC
// with upper-case T and Z. Other offsets (even +00:00), lower-case t/z,
// and second 60 (time.Time has no leap seconds) are refused.
func parseTime(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[len(b)-1] != 'Z' {
		return time.Time{}, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	if month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		f, ok := digits(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(frac) {
			f *= 10
		}
		nsec = f
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

func daysIn(year, month int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
