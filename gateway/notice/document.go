package notice

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/agentgw/agentgw/gateway/delivery"
)

// DocVersion is the notice document format written by AppendDoc and read
// by ParseDoc.
const DocVersion = 1

// MaxDocSize bounds a notice document: the notice (MaxSize), its decision
// token (at most 16 KiB) and the members around them.
const MaxDocSize = MaxSize + 16<<10 + 64

// A notice travels as a document that carries its decision token:
//
//	{"v":1,"decision":"<token>","notice":{…}}
//
// "notice" is the notice's bytes verbatim: the token's payload digest is
// theirs. The token travels in the body rather than in a header because
// nats-server scans a stored message's whole header block once for
// every header it looks for, and a token is more than a kilobyte.

// DocOverhead is what a notice document adds to its token and notice.
const DocOverhead = len(`{"v":1,"decision":"","notice":}`)

// AppendDoc appends the document of a notice's encoding n (Marshal) and
// its decision token to b. token must be a token's characters (base64url
// and dots: nothing to escape) and n a JSON object.
func AppendDoc(b []byte, token string, n []byte) ([]byte, error) {
	if token == "" {
		return b, fmt.Errorf("%w: decision token", ErrInvalid)
	}
	b = slices.Grow(b, DocOverhead+len(token)+len(n))
	return AppendDocWith(b, func(b []byte) []byte { return append(b, token...) }, n)
}

// AppendDocWith is AppendDoc with the token written by token, which
// appends it to its argument (decision.Signed.AppendToken): the token is
// never held on its own. What token appends is checked as AppendDoc
// checks its token.
func AppendDocWith(b []byte, token func([]byte) []byte, n []byte) ([]byte, error) {
	if len(n) < 2 || n[0] != '{' || n[len(n)-1] != '}' {
		return b, fmt.Errorf("%w: notice is not a JSON object", ErrInvalid)
	}
	size := len(b)
	b = append(b, `{"v":1,"decision":"`...)
	start := len(b)
	b = token(b)
	if tok := b[start:]; len(tok) == 0 || !delivery.TokenBytes(tok) {
		return b[:size], fmt.Errorf("%w: decision token", ErrInvalid)
	}
	b = append(b, `","notice":`...)
	b = append(b, n...)
	return append(b, '}'), nil
}

// ParseDoc reads a notice document of at most MaxDocSize bytes and
// returns its token and the notice's exact bytes, unverified: that the
// token verifies and binds the notice is the reader's to check, then
// Parse decodes the notice. The document is read strictly, one way only,
// as the TypeScript SDK reads it (delivery.Members): member names
// exactly v, decision and notice, each once; v the number 1 written as
// 1; decision a non-empty string; notice an object. Unknown or duplicate
// members, another version or trailing data are errors (ErrInvalid); the
// detail never quotes the document.
func ParseDoc(data []byte) (token string, n []byte, err error) {
	notDoc := fmt.Errorf("%w: not a notice document", ErrInvalid)
	if len(data) > MaxDocSize {
		return "", nil, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, len(data), MaxDocSize)
	}
	raws, err := delivery.Members(data, docNames[:])
	if errors.Is(err, delivery.ErrTrailingData) {
		return "", nil, fmt.Errorf("%w: data after the document", ErrInvalid)
	}
	if err != nil {
		return "", nil, notDoc
	}
	version, decision, n := string(raws[0]), raws[1], raws[2]
	if decision != nil && (decision[0] != '"' || json.Unmarshal(decision, &token) != nil) {
		return "", nil, notDoc
	}
	if n != nil && n[0] != '{' {
		return "", nil, notDoc
	}
	switch {
	case version != "1":
		return "", nil, fmt.Errorf("%w: document version is not %d", ErrInvalid, DocVersion)
	case token == "":
		return "", nil, fmt.Errorf("%w: no decision token", ErrInvalid)
	case n == nil:
		return "", nil, fmt.Errorf("%w: no notice object", ErrInvalid)
	}
	return token, n, nil
}

// docNames are the document's members, in the order AppendDoc writes them.
var docNames = [...]string{"v", "decision", "notice"}
