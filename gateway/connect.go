package gateway

import (
	"fmt"
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
		return nil, fmt.Errorf("gateway: connect %s: %w", redactURL(c.URL), safePathError(err))
	}
	return nc, nil
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

// redactURL drops user:password from a URL before it reaches a log.
func redactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "[redacted]@" + p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}
