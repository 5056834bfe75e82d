package gateway

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/identity"
)

// Connect dials NATS with the configured credentials and TLS, then extra
// (applied last). With TLS.Required the connection fails against a server
// that does not offer TLS rather than fall back to plaintext.
func Connect(c NATSConfig, name string, extra ...nats.Option) (*nats.Conn, error) {
	if c.URL == "" {
		return nil, fmt.Errorf("gateway: nats.url is required without an embedded server")
	}
	if c.Name != "" {
		name = c.Name
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(5 * time.Second),
	}
	// A seed pasted where a key file's path belongs must not reach the
	// log: nats.go repeats the path in its errors, so each is shown by
	// identity.SafePath, in ours and in the text of nats.go's.
	if c.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("gateway: nats.nkey %s: %w", identity.SafePath(c.NKey), safePathError(err))
		}
		opts = append(opts, o)
	}
	if c.Creds != "" {
		// nats.go reads the file only when it connects; read it now so
		// the error names the setting.
		f, err := os.Open(c.Creds)
		if err != nil {
			return nil, fmt.Errorf("gateway: nats.creds %s: %w", identity.SafePath(c.Creds), safePathError(err))
		}
		_ = f.Close()
	}
	opts = append(opts, ClientOptions(c)...)
	opts = append(opts, extra...)
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, ConnectError("gateway", c.URL, err)
	}
	return nc, nil
}

// ConnectError is err, from nats.Connect(u, ...), as "<who>: connect
// <u redacted>: …" with no secret of u in it: nats.go quotes the raw URL,
// password and all, when it does not parse, and such an error is
// replaced, not wrapped.
func ConnectError(who, u string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) || quotesURLSecret(err.Error(), u) {
		return fmt.Errorf("%s: connect %s: the server URL does not parse", who, RedactURL(u))
	}
	return fmt.Errorf("%s: connect %s: %w", who, RedactURL(u), safePathError(err))
}

// safePathError is err with any run of its text that could be an nkey
// seed replaced as identity.SafePath does (nats.go quotes the paths of
// its key and credential files); errors.Is and errors.As still see err.
func safePathError(err error) error {
	if err == nil {
		return nil
	}
	if msg := identity.SafePath(err.Error()); msg != err.Error() {
		return &safeError{msg: msg, err: err}
	}
	return err
}

// safeError shows msg in place of err's text and unwraps to err.
type safeError struct {
	msg string
	err error
}

func (e *safeError) Error() string { return e.msg }
func (e *safeError) Unwrap() error { return e.err }

// ClientOptions are the credential and TLS options shared by every
// agentgw client (gateway, SDK, CLI).
func ClientOptions(c NATSConfig) []nats.Option {
	var opts []nats.Option
	if c.Creds != "" {
		opts = append(opts, nats.UserCredentials(c.Creds))
	}
	if c.TLS.CA != "" {
		opts = append(opts, nats.RootCAs(c.TLS.CA))
	}
	if c.TLS.Cert != "" {
		opts = append(opts, nats.ClientCert(c.TLS.Cert, c.TLS.Key))
	}
	if c.TLS.Required || c.TLS.CA != "" || c.TLS.Cert != "" {
		opts = append(opts, nats.Secure())
	}
	if c.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	return opts
}

// RedactURL is u, one server URL or a comma-separated list as nats.go
// reads them, with the user information of each (user:password, or a
// token alone; after a scheme or without one) replaced by [redacted].
// A part whose port is not a number may be a password cut by a comma
// (nats.go splits the list at every comma): its authority is redacted.
func RedactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		start := len(p) - len(strings.TrimLeft(p, " \t"))
		if s := strings.Index(p, "://"); s >= 0 {
			start = s + 3
		}
		if at := strings.LastIndex(p, "@"); at >= start {
			parts[i] = p[:start] + "[redacted]@" + p[at+1:]
			continue
		}
		host := p[start:]
		if j := strings.IndexAny(host, "/?#"); j >= 0 {
			host = host[:j]
		}
		host = strings.TrimSpace(host)
		if k := strings.LastIndex(host, ":"); k >= 0 && !strings.HasSuffix(host, "]") && !allDigits(host[k+1:]) {
			parts[i] = p[:start] + "[redacted]"
		}
	}
	return strings.Join(parts, ",")
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// quotesURLSecret says whether msg holds the password or token of any
// server URL in u, as written or unescaped.
func quotesURLSecret(msg, u string) bool {
	for p := range strings.SplitSeq(u, ",") {
		start := 0
		if s := strings.Index(p, "://"); s >= 0 {
			start = s + 3
		}
		at := strings.LastIndex(p, "@")
		if at < start {
			continue
		}
		secret := p[start:at]
		if _, pw, ok := strings.Cut(secret, ":"); ok {
			secret = pw
		}
		candidates := []string{secret}
		if un, err := url.PathUnescape(secret); err == nil {
			candidates = append(candidates, un)
		}
		for _, c := range candidates {
			if len(c) >= 4 && strings.Contains(msg, c) {
				return true
			}
		}
	}
	return false
}
