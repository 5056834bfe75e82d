package identity

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/nats-io/nkeys"
	"log/slog"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
)

// Seed is an encoded nkey seed ("SU…", "SA…", "SX…"). Every printed form
// (fmt with any verb, JSON, text, zerolog, slog) is redacted and names only
// the key's role; Reveal returns the secret.
//
// fmt cannot call methods on unexported struct fields, so a Seed held in an
// unexported field of a struct printed with %v is NOT redacted: keep
// secrets in exported fields or never print the holder.
type Seed []byte

// Reveal returns the seed bytes. The slice is shared, not copied.
func (s Seed) Reveal() []byte { return []byte(s) }

// Wipe overwrites the seed bytes with zeros.
func (s Seed) Wipe() { clear(s) }

// String returns a redacted form such as "[redacted user seed]".
func (s Seed) String() string {
	if k := seedKind(s); k != "" {
		return "[redacted " + k + " seed]"
	}
	return "[redacted seed]"
}

// GoString returns the redacted form for %#v.
func (s Seed) GoString() string { return "identity.Seed(" + strconv.Quote(s.String()) + ")" }

// Format prints the redacted form for every verb.
func (s Seed) Format(f fmt.State, verb rune) { formatRedacted(f, verb, s.String(), s.GoString()) }

// MarshalJSON returns the redacted form as a JSON string.
func (s Seed) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText returns the redacted form.
func (s Seed) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalZerologObject logs the redacted form: {"seed":"redacted","kind":…}.
func (s Seed) MarshalZerologObject(e *zerolog.Event) {
	e.Str("seed", "redacted")
	if k := seedKind(s); k != "" {
		e.Str("kind", k)
	}
}

// LogValue returns the redacted form for log/slog.
func (s Seed) LogValue() slog.Value { return slog.StringValue(s.String()) }

// seedKind names the role encoded in a seed's first two characters. Those
// characters carry only prefix bits, no secret bits.
func seedKind(s []byte) string {
	if len(s) < 2 || s[0] != 'S' {
		return ""
	}
	switch s[1] {
	case 'U':
		return "user"
	case 'A':
		return "account"
	case 'O':
		return "operator"
	case 'N':
		return "server"
	case 'C':
		return "cluster"
	case 'X':
		return "curve"
	}
	return ""
}

// Token is a compact JWT: a credential or a decision token. Every printed
// form is redacted to "jwt[jti=…]" when the jti is readable and safe to
// log, else "[redacted jwt]". Reveal returns the token.
//
// The same caveat as Seed applies to unexported struct fields.
type Token string

// Reveal returns the compact JWT.
func (t Token) Reveal() string { return string(t) }

// JTI returns the token's unverified jti claim if it is present and made
// only of safe characters ([A-Za-z0-9._:-], at most 128), else "". It
// decodes the payload, so it costs microseconds: use it to name a token
// in a log, never to decide anything.
func (t Token) JTI() string {
	p := t.unverified()
	if !isSafeID(p.ID) {
		return ""
	}
	return p.ID
}

// Issuer returns the token's unverified iss claim if it is an account
// public key (A…), else "". Like JTI, it names a token (a revocation
// scoped to its issuer), never decides anything.
func (t Token) Issuer() string {
	p := t.unverified()
	if !isPublic(p.Issuer, nkeys.PrefixByteAccount) {
		return ""
	}
	return p.Issuer
}

// unverified decodes the claims JTI and Issuer read, unverified.
func (t Token) unverified() (p struct {
	ID     string `json:"jti"`
	Issuer string `json:"iss"`
}) {
	s := string(t)
	i := strings.IndexByte(s, '.')
	if i < 0 {
		return p
	}
	rest := s[i+1:]
	j := strings.IndexByte(rest, '.')
	if j < 0 || j > MaxTokenSize {
		return p
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest[:j])
	if err != nil {
		return p
	}
	_ = json.Unmarshal(raw, &p)
	return p
}

// String returns "jwt[jti=…]" or "[redacted jwt]".
func (t Token) String() string {
	if id := t.JTI(); id != "" {
		return "jwt[jti=" + id + "]"
	}
	return "[redacted jwt]"
}

// GoString returns the redacted form for %#v.
func (t Token) GoString() string { return "identity.Token(" + strconv.Quote(t.String()) + ")" }

// Format prints the redacted form for every verb.
func (t Token) Format(f fmt.State, verb rune) { formatRedacted(f, verb, t.String(), t.GoString()) }

// MarshalJSON returns the redacted form as a JSON string.
func (t Token) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }

// MarshalText returns the redacted form.
func (t Token) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// MarshalZerologObject logs {"jwt":"redacted","jti":…}.
func (t Token) MarshalZerologObject(e *zerolog.Event) {
	e.Str("jwt", "redacted")
	if id := t.JTI(); id != "" {
		e.Str("jti", id)
	}
}

// LogValue returns the redacted form for log/slog.
func (t Token) LogValue() slog.Value { return slog.StringValue(t.String()) }

func formatRedacted(f fmt.State, verb rune, s, gs string) {
	switch {
	case verb == 'v' && f.Flag('#'):
		s = gs
	case verb == 'q':
		s = strconv.Quote(s)
	}
	_, _ = f.Write([]byte(s))
}

// isSafeID reports whether s is 1–128 characters of [A-Za-z0-9._:-]: safe
// to place in a log line or an error detail.
func isSafeID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !safeChar(s[i]) {
			return false
		}
	}
	return true
}

func safeChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == ':' || c == '-'
}
