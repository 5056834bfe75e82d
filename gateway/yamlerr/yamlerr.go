// Package yamlerr turns a go-yaml error into one that says where the
// problem is and what it is, never what the file holds. go-yaml's own
// errors carry a numbered excerpt of the source, so a secret file
// given where a YAML file belongs (a .creds file as a catalog, a seed
// file as the revocations list) would be printed by its error.
package yamlerr

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/agentgw/agentgw/gateway/identity"
)

// Error is a YAML problem without source text.
type Error struct {
	Line, Column int    // 0 when go-yaml gave no position
	Msg          string // the problem, with no value from the file
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Msg)
	}
	return e.Msg
}

// Clean is err, from go-yaml, without its source excerpt: its position
// and its first message line. Quoted values in the message are replaced
// by their length, except the key named by an unknown-field or
// duplicate-key error, which is kept when short and not shaped like a
// key or token. Clean(nil) is nil. The result does not unwrap to err,
// whose text holds the source.
func Clean(err error) error {
	if err == nil {
		return nil
	}
	out := &Error{}
	msg := err.Error()
	var ye yaml.Error
	if errors.As(err, &ye) {
		msg = ye.GetMessage()
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			out.Line, out.Column = tk.Position.Line, tk.Position.Column
		}
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	// A message without a token may still start with "[line:col] ".
	if m := position.FindStringSubmatch(msg); m != nil && out.Line == 0 {
		fmt.Sscan(m[1], &out.Line)
		fmt.Sscan(m[2], &out.Column)
		msg = msg[len(m[0]):]
	}
	var uf *yaml.UnknownFieldError
	var dk *yaml.DuplicateKeyError
	keepKey := errors.As(err, &uf) || errors.As(err, &dk)
	out.Msg = quoted.ReplaceAllStringFunc(msg, func(q string) string {
		v := q[1 : len(q)-1]
		if keepKey && len(v) <= 40 && !secretShaped.MatchString(v) {
			return q
		}
		return fmt.Sprintf("<%d characters>", len(v))
	})
	// A few messages name a value unquoted ("cannot find anchor by alias
	// name X"): a seed or a token there goes too (identity.SafeText; Go
	// field and type names, which such messages also hold, are neither).
	out.Msg = identity.SafeText(out.Msg)
	return out
}

// Message is the problem Clean(err) describes, without its position,
// for a caller that names the place itself.
func Message(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	errors.As(Clean(err), &e)
	return e.Msg
}

var (
	position = regexp.MustCompile(`^\[(\d+):(\d+)\] `)
	quoted   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'[^']*'`)
	// secretShaped: a run of 20 or more base32/base64 characters, as in
	// an nkey, a JWT or a bearer token.
	secretShaped = regexp.MustCompile(`[A-Za-z0-9+/_=-]{20,}`)
)
