package gateway

import (
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
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
	if c.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("gateway: nats.nkey %s: %w", c.NKey, err)
		}
		opts = append(opts, o)
	}
	opts = append(opts, ClientOptions(c)...)
	opts = append(opts, extra...)
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("gateway: connect %s: %w", redactURL(c.URL), err)
	}
	return nc, nil
}

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
