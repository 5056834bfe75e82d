// Package delivery is the body of a message on a capability subject: the
// agent's envelope exactly as it signed it, with what the gateway adds
// to it: its decision token, the agent's signature and the payload
// re-sealed to the consumer.
//
//	{"v":1,"decision":"<token>","signature":"<base64url>",
//	 "sealed":"<base64url>","sealed_from":"X…","envelope":{…}}
//
// "sealed" and "sealed_from" are absent for plain targets. "envelope" is
// the agent's bytes, verbatim: the token binds their digest.
//
// These travel in the body, not in headers, because headers are not
// free: nats-server scans a stored message's whole header block once for
// every header it looks for, and a token plus a sealed payload are
// kilobytes. Headers keep what JetStream and operators match on
// (Nats-Msg-Id, Agentgw-Route, Agentgw-Ingress-Seq, Agentgw-Message-Id).
package delivery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	jsonv2 "github.com/go-json-experiment/json"
)

// Version is the delivery format written by Append and accepted by Parse.
const Version = 1

// Doc is a delivery.
type Doc struct {
	// Decision is the gateway's decision token.
	Decision string
	// Signature is the agent's base64url Ed25519 signature over the
	// domain-separated Envelope.
	Signature string
	// Sealed is the payload re-sealed to the consumer, base64url; empty
	// for a plain target.
	Sealed string
	// SealedFrom is the gateway curve key that sealed it.
	SealedFrom string
	// Envelope is the agent's envelope body, exactly as signed.
	Envelope []byte
}

// ErrInvalid is matched (errors.Is) by every error of Append, Check and
// Parse.
var ErrInvalid = errors.New("delivery: invalid")

// invalid is an error that matches ErrInvalid and says why.
type invalid string

func (e invalid) Error() string        { return "delivery: " + string(e) }
func (e invalid) Is(target error) bool { return target == ErrInvalid }

func errorf(format string, args ...any) error { return invalid(fmt.Sprintf(format, args...)) }

// Append appends d's encoding to b. Every string field must be in the
// alphabet of its kind (tokens, base64url and nkeys need no escaping);
// Envelope must be a JSON object (the gateway passes a parsed envelope).
func (d Doc) Append(b []byte) ([]byte, error) {
	if d.Decision == "" {
		return b, invalid("decision token")
	}
	return d.AppendWith(b, func(b []byte) []byte { return append(b, d.Decision...) })
}

// AppendWith is Append with the decision token written by token, which
// appends it to its argument (decision.Signed.AppendToken), instead of
// taken from d.Decision: the token is never held on its own. What token
// appends is checked as Append checks d.Decision.
func (d Doc) AppendWith(b []byte, token func([]byte) []byte) ([]byte, error) {
	if !in(&base64Chars, d.Sealed) {
		return b, invalid("sealed payload")
	}
	if err := d.Check(); err != nil {
		return b, err
	}
	n := len(b)
	b = append(b, `{"v":1,"decision":"`...)
	start := len(b)
	b = token(b)
	if tok := b[start:]; len(tok) == 0 || !in(&tokenChars, tok) {
		return b[:n], invalid("decision token")
	}
	if d.Signature != "" {
		b = append(b, `","signature":"`...)
		b = append(b, d.Signature...)
	}
	if d.Sealed != "" {
		b = append(b, `","sealed":"`...)
		b = append(b, d.Sealed...)
		b = append(b, `","sealed_from":"`...)
		b = append(b, d.SealedFrom...)
	}
	b = append(b, `","envelope":`...)
	b = append(b, d.Envelope...)
	return append(b, '}'), nil
}

// Check reports whether Append will accept d once it has a decision
// token, but for the alphabet of Sealed (the gateway's own encoding,
// kilobytes long, checked by Append): the fields an agent supplies.
func (d Doc) Check() error {
	switch {
	case !in(&base64Chars, d.Signature):
		return invalid("signature")
	case !in(&base64Chars, d.SealedFrom) || (d.Sealed == "") != (d.SealedFrom == ""):
		return invalid("sealed payload")
	case len(d.Envelope) < 2 || d.Envelope[0] != '{' || d.Envelope[len(d.Envelope)-1] != '}':
		return invalid("envelope is not a JSON object")
	}
	return nil
}

// Size is the length of d's encoding, for sizing a buffer.
func (d Doc) Size() int {
	return 80 + len(d.Decision) + len(d.Signature) + len(d.Sealed) + len(d.SealedFrom) + len(d.Envelope)
}

// Alphabets: base64url (which includes nkeys' base32) and, for tokens,
// base64url and dots. Tables of 0 (in) and 1 (out): Append checks
// kilobytes per call, and or-ing table entries has no branch per byte
// (a third of the time of a loop that returns at the first stranger).
var base64Chars, tokenChars = func() (b, t [256]byte) {
	for c := range 256 {
		in64 := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
		if !in64 {
			b[c] = 1
		}
		if !in64 && c != '.' {
			t[c] = 1
		}
	}
	return b, t
}()

// in reports whether every byte of s is in alphabet.
func in[T string | []byte](alphabet *[256]byte, s T) bool {
	var out byte
	for len(s) >= 8 {
		out |= alphabet[s[0]] | alphabet[s[1]] | alphabet[s[2]] | alphabet[s[3]] |
			alphabet[s[4]] | alphabet[s[5]] | alphabet[s[6]] | alphabet[s[7]]
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		out |= alphabet[s[i]]
	}
	return out == 0
}

// Parse reads a delivery of at most max bytes. It checks the shape only:
// that the token verifies and binds Envelope and Sealed is the
// consumer's to check (client.VerifyDelivery). The document is read
// strictly, one way only, as the TypeScript SDK reads it: member names
// exactly v, decision, signature, sealed, sealed_from and envelope (a
// name that differs in case is unknown), each at most once; v the number
// 1 written as 1; decision, signature, sealed and sealed_from strings
// (null reads as absent); envelope an object, kept as its exact bytes.
// Unknown or duplicate members, another version, trailing data or a
// missing token or envelope are errors. The envelope's own rules are
// checked when it is parsed, after the token binds its digest, so a
// forged body is reported as what it is.
func Parse(data []byte, max int) (Doc, error) {
	if len(data) > max {
		return Doc{}, errorf("%d bytes, more than %d", len(data), max)
	}
	var d Doc
	version, err := parseMembers(data, &d)
	if err != nil {
		return Doc{}, err
	}
	switch {
	case version != "1":
		return Doc{}, errorf("version is not %d", Version)
	case d.Decision == "":
		return Doc{}, invalid("no decision token")
	case len(d.Envelope) == 0:
		return Doc{}, invalid("no envelope object")
	}
	return d, nil
}

// parseMembers reads the document's members into d and returns v's text.
// Every failure is the one error the TypeScript SDK gives for a document
// that does not scan: the detail never depends on the document.
func parseMembers(data []byte, d *Doc) (version string, err error) {
	notDoc := invalid("body is not a delivery document")
	raws, err := Members(data, names[:])
	if errors.Is(err, ErrTrailingData) {
		return "", invalid("data after the document")
	}
	if err != nil {
		return "", notDoc
	}
	for i, raw := range raws {
		if raw == nil {
			continue
		}
		switch names[i] {
		case "v":
			if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
				return "", notDoc
			}
			version = string(raw)
		case "envelope":
			if raw[0] != '{' {
				return "", notDoc
			}
			d.Envelope = raw
		default:
			var v *string
			if err := json.Unmarshal(raw, &v); err != nil {
				return "", notDoc
			}
			if v != nil {
				*fields(d)[i] = *v
			}
		}
	}
	return version, nil
}

// ErrNotDocument and ErrTrailingData are Members' errors.
var (
	ErrNotDocument  = errors.New("not a flat JSON document")
	ErrTrailingData = errors.New("data after the document")
)

// Members reads data as one JSON object whose member names are all in
// names, each at most once (a name that differs in case is unknown), and
// returns each member's value, exactly as written, at the index of its
// name in names (nil where absent). It is how the gateway's documents
// that carry a decision token beside verbatim bytes (a delivery, a
// decision notice) are read one way only: an unknown or duplicate
// member, anything but one object, or invalid JSON is ErrNotDocument;
// anything but white space after the object is ErrTrailingData. The
// values' own rules are the caller's.
func Members(data []byte, names []string) ([]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, ErrNotDocument
	}
	raws := make([]json.RawMessage, len(names))
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, ErrNotDocument
		}
		name, _ := t.(string)
		i := slices.Index(names, name)
		if i < 0 || raws[i] != nil {
			// The gateway writes neither unknown nor duplicate members:
			// a document is read one way only.
			return nil, ErrNotDocument
		}
		if err := dec.Decode(&raws[i]); err != nil {
			return nil, ErrNotDocument
		}
		// encoding/json would read invalid UTF-8 and lone surrogate
		// escapes as U+FFFD; the TypeScript reader refuses them, and so
		// does this one. Objects are their readers' to check (the
		// envelope and notice parsers are strict).
		var str string
		if raws[i][0] == '"' && jsonv2.Unmarshal(raws[i], &str) != nil {
			return nil, ErrNotDocument
		}
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, ErrNotDocument
	}
	// Only JSON's white space may follow (bytes.TrimSpace would also skip
	// \v, \f, U+0085 and U+00A0).
	for _, c := range data[dec.InputOffset():] {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return nil, ErrTrailingData
		}
	}
	return raws, nil
}

// TokenBytes reports whether b is made only of a decision token's
// characters (base64url and dots): what a document writes between quotes
// without escaping.
func TokenBytes(b []byte) bool { return in(&tokenChars, b) }

// names are the document's members, in the order Append writes them.
var names = [...]string{"v", "decision", "signature", "sealed", "sealed_from", "envelope"}

// fields are d's string members, indexed as names.
func fields(d *Doc) [len(names)]*string {
	return [len(names)]*string{1: &d.Decision, 2: &d.Signature, 3: &d.Sealed, 4: &d.SealedFrom}
}
