package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
)

// connFlags are the NATS connection flags every networked command takes,
// named and resolved as the nats CLI does: -s/--server, --creds (the
// NATS user), --context, and the environment variables NATS_URL,
// NATS_CREDS, NATS_NKEY, NATS_CONTEXT, NATS_CA, NATS_CERT and NATS_KEY.
// A flag wins over its environment variable, which wins over the
// context, which wins over the default.
type connFlags struct {
	server, creds, context, inbox, apiPrefix, ca, cert, key string
	tls                                                     bool

	// identity, set by a command that acts as an agentgw identity (its
	// --credential), is that .creds file: its key is the NATS user when
	// neither --creds, $NATS_CREDS, $NATS_NKEY nor the context names one.
	// Tenant accounts (deploy/, `agentgw run`) name every agent, approver
	// and consumer by its agentgw key.
	identity string
	// tenantSide marks a command a tenant user runs (consume, approvals):
	// connected as an nkey user to a server that requires authentication,
	// it reaches JetStream under client.TenantAPIPrefix and binds the
	// pre-created consumers instead of creating its own.
	tenantSide bool
	// operatorSide marks a command an operator runs (denied ls|show,
	// audit tail, policy test): connected to a server that requires
	// authentication, it reaches JetStream under client.OperatorAPIPrefix,
	// where the operators' account imports the reads of the denied and
	// audit streams.
	operatorSide bool
	// bound reports, after connect, that the tenant-user mode applies.
	bound bool

	fs *flag.FlagSet
}

// natsEnv are the environment variables of the nats CLI that agentgw
// honours, each the default of a flag.
var natsEnv = struct{ url, creds, nkey, context, ca, cert, key string }{
	"NATS_URL", "NATS_CREDS", "NATS_NKEY", "NATS_CONTEXT", "NATS_CA", "NATS_CERT", "NATS_KEY",
}

// flagAliases are the short forms of flags, printed beside the long one.
var flagAliases = map[string]string{"s": "server"}

func (cf *connFlags) register(fs *flag.FlagSet) {
	cf.fs = fs
	serverUsage := "NATS server `URL`s, comma separated (default: $NATS_URL, else the context's url, else " + nats.DefaultURL + ")"
	fs.StringVar(&cf.server, "server", "", serverUsage)
	fs.StringVar(&cf.server, "s", "", serverUsage)
	fs.StringVar(&cf.creds, "creds", "", "the NATS user to connect as: a NATS user .creds `file` or a user nkey seed file (SU…); an agentgw credential means the nkey user of its key (default: $NATS_CREDS or $NATS_NKEY, else the context's, else the key of --credential where the command has one)")
	fs.StringVar(&cf.context, "context", "", "nats CLI context `name` (or a context .json file) for the server, user and TLS (default: $NATS_CONTEXT, else the selected context)")
	fs.StringVar(&cf.inbox, "inbox-prefix", "", "reply inbox `prefix` (default: the context's, else _INBOX.<public key> when connecting as an nkey user, else _INBOX)")
	fs.StringVar(&cf.apiPrefix, "js-api-prefix", "", "JetStream API `prefix` (default: the context's, else $JS.API; "+client.TenantAPIPrefix+" for consume and approvals as an nkey user, and for denied, audit and policy test, of a server that requires authentication)")
	fs.StringVar(&cf.ca, "tls-ca", "", "CA certificate `file` to verify the server with (default: $NATS_CA, else the context's)")
	fs.StringVar(&cf.cert, "tls-cert", "", "client certificate `file` for mTLS, with --tls-key (default: $NATS_CERT, else the context's)")
	fs.StringVar(&cf.key, "tls-key", "", "client key `file` for mTLS, with --tls-cert (default: $NATS_KEY, else the context's)")
	fs.BoolVar(&cf.tls, "tls", false, "require TLS even without --tls-ca or a client certificate")
}

// natsSettings is where a command connects and as whom, resolved from
// flags, environment and context.
type natsSettings struct {
	cfg       gateway.NATSConfig
	extra     []nats.Option
	apiPrefix string
	// who names the NATS identity for messages: "NATS user U… (--creds
	// FILE)". It holds no secret.
	who string
	// nkeyDefault: the NATS user is only the default, the key of
	// --credential.
	nkeyDefault bool
}

// pick returns the first non-empty value and where it came from.
func pick(pairs ...string) (value, source string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i] != "" {
			return pairs[i], pairs[i+1]
		}
	}
	return "", ""
}

// resolve applies the precedence flag > environment > context > default.
func (cf *connFlags) resolve() (*natsSettings, error) {
	set := map[string]bool{}
	if cf.fs != nil {
		cf.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	}
	flagged := func(v string, names ...string) string {
		for _, n := range names {
			if set[n] {
				return v
			}
		}
		return ""
	}
	if (cf.cert == "") != (cf.key == "") && (set["tls-cert"] || set["tls-key"]) {
		return nil, usageError("--tls-cert and --tls-key go together")
	}
	var nctx *natsContext
	ctxName, ctxSource := pick(flagged(cf.context, "context"), "--context", os.Getenv(natsEnv.context), "$"+natsEnv.context)
	if ctxName == "" {
		ctxName, ctxSource = selectedContext(), "the selected context"
	}
	if ctxName != "" {
		var err error
		if nctx, err = loadContext(ctxName, ctxSource); err != nil {
			return nil, err
		}
	} else {
		nctx = &natsContext{}
	}
	inCtx := func(field string) string { return fmt.Sprintf("context %q (%s)", nctx.name, field) }

	s := &natsSettings{}
	s.cfg.URL, _ = pick(flagged(cf.server, "server", "s"), "", os.Getenv(natsEnv.url), "", nctx.URL, "", nats.DefaultURL, "")
	var caSrc, certSrc string
	s.cfg.TLS.CA, caSrc = pick(flagged(cf.ca, "tls-ca"), "--tls-ca", os.Getenv(natsEnv.ca), "$"+natsEnv.ca, nctx.CA, inCtx("ca"))
	s.cfg.TLS.Cert, certSrc = pick(flagged(cf.cert, "tls-cert"), "--tls-cert", os.Getenv(natsEnv.cert), "$"+natsEnv.cert, nctx.Cert, inCtx("cert"))
	s.cfg.TLS.Key, _ = pick(flagged(cf.key, "tls-key"), "--tls-key", os.Getenv(natsEnv.key), "$"+natsEnv.key, nctx.Key, inCtx("key"))
	if (s.cfg.TLS.Cert == "") != (s.cfg.TLS.Key == "") {
		return nil, fmt.Errorf("a client certificate needs its key and a key its certificate: --tls-cert and --tls-key (or $%s and $%s, or the context's cert and key) go together", natsEnv.cert, natsEnv.key)
	}
	for _, p := range []struct{ path, src string }{{s.cfg.TLS.CA, caSrc}, {s.cfg.TLS.Cert, certSrc}} {
		if p.path == "" {
			continue
		}
		if f := classify(p.path); f.kind == kindMissing || f.kind == kindDir || f.kind == kindUnreadable {
			return nil, &fileError{source: p.src, want: "a PEM certificate file", got: f}
		}
	}
	s.cfg.TLS.Required = cf.tls || nctx.TLSFirst
	if nctx.TLSFirst {
		s.extra = append(s.extra, nats.TLSHandshakeFirst())
	}

	// The NATS user: one identity, never a mix of sources.
	envCreds, envNKey := os.Getenv(natsEnv.creds), os.Getenv(natsEnv.nkey)
	var path, source string
	switch {
	case flagged(cf.creds, "creds") != "":
		path, source = cf.creds, "--creds"
	case envCreds != "" && envNKey != "":
		return nil, fmt.Errorf("$%s and $%s are both set: they name the NATS user, give one (or pass --creds)", natsEnv.creds, natsEnv.nkey)
	case envCreds != "":
		path, source = envCreds, "$"+natsEnv.creds
	case envNKey != "":
		path, source = envNKey, "$"+natsEnv.nkey
	case nctx.User != "":
		s.extra = append(s.extra, nats.UserInfo(nctx.User, nctx.Password))
		s.who = fmt.Sprintf("NATS user %q (%s)", clean(nctx.User), inCtx("user"))
	case nctx.Creds != "":
		path, source = nctx.Creds, inCtx("creds")
	case nctx.NKey != "":
		path, source = nctx.NKey, inCtx("nkey")
	case nctx.Token != "":
		s.extra = append(s.extra, nats.Token(nctx.Token))
		s.who = "the NATS user of the token of " + inCtx("token")
	case cf.identity != "" && !(cf.operatorSide && s.cfg.TLS.Cert != ""):
		// An operator (denied replay) with a client certificate is the
		// certificate's user of account OPS: nats-server checks a
		// presented nkey before it maps the certificate, so presenting
		// the credential's key would be refused. The credential still
		// signs the request. Tenant users (send, approvals grant, mcp)
		// are nkey users that also present a certificate: they keep it.
		path, source, s.nkeyDefault = cf.identity, "--credential", true
	}
	if path != "" {
		f, err := checkNATSIdentity(source, path)
		if err != nil {
			return nil, err
		}
		if f.kind == kindUserCreds {
			s.cfg.Creds = path
		} else {
			s.cfg.NKey = path
			s.cfg.InboxPrefix = "_INBOX." + f.pub
		}
		s.who = fmt.Sprintf("NATS user %s (%s %s)", f.pub, source, path)
		if f.name != "" {
			s.who = fmt.Sprintf("NATS user %q %s (%s %s)", f.name, f.pub, source, path)
		}
	}
	if s.who == "" {
		switch {
		case s.cfg.TLS.Cert != "":
			s.who = fmt.Sprintf("the NATS user of client certificate %s (%s)", s.cfg.TLS.Cert, certSrc)
		case strings.Contains(s.cfg.URL, "@"):
			s.who = "the NATS user of the server URL"
		default:
			s.who = "the anonymous NATS user (no --creds, $" + natsEnv.creds + ", $" + natsEnv.nkey + " or context names one)"
		}
	}
	if v, _ := pick(flagged(cf.inbox, "inbox-prefix"), "", nctx.InboxPrefix, ""); v != "" {
		s.cfg.InboxPrefix = v
	}
	s.apiPrefix, _ = pick(flagged(cf.apiPrefix, "js-api-prefix"), "", nctx.JSAPIPrefix, "")
	if s.apiPrefix == "" && nctx.JSDomain != "" {
		s.apiPrefix = "$JS." + nctx.JSDomain + ".API"
	}
	return s, nil
}

// usageError is a resolve error that is a misuse of flags (exit 2).
type usageError string

func (e usageError) Error() string { return string(e) }

// refusalHint says what to do about a permission refusal.
const refusalHint = "The server's permissions for this user do not allow it: connect as the user meant for this command (--creds, $NATS_CREDS, $NATS_NKEY or --context; 'agentgw run' prints which file is whom), or grant the permission in the server's configuration."

// permissionRE finds the operation and subject in a permissions
// violation of the server: `Permissions Violation for Publish to "x"`.
var permissionRE = regexp.MustCompile(`(?i)permissions violation for (publish|subscription) to "([^"]*)"`)

// refusal is the first permission refusal of a command's connection.
type refusal struct {
	mu  sync.Mutex
	msg string
}

func (r *refusal) get() string {
	if r == nil {
		return ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msg
}

// refusedBy turns a permissions violation into "NATS user U… (--creds F)
// may not publish to X"; ok false for any other error.
func refusedBy(who string, err error) (string, bool) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return "", false
	}
	verb, subject := "publish to or subscribe to", "a subject"
	if m := permissionRE.FindStringSubmatch(err.Error()); m != nil {
		verb, subject = "publish to", clean(m[2])
		if strings.EqualFold(m[1], "subscription") {
			verb = "subscribe to"
		}
	}
	return who + " may not " + verb + " " + subject, true
}

// connect dials NATS with gateway.Connect, so the CLI, the SDK and the
// gateway share one set of credential and TLS options, and sets cf.bound.
// A permission refusal on the connection is reported at once, naming the
// identity and the subject, and closes the connection: whatever the
// command was waiting for then fails at once instead of timing out.
func (c *cmd) connect(cf *connFlags) (*nats.Conn, jetstream.JetStream, int, bool) {
	s, err := cf.resolve()
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			return nil, nil, c.usageErr("%v", err), false
		}
		return nil, nil, c.fail(err, ""), false
	}
	for _, f := range []string{s.cfg.Creds, s.cfg.NKey, s.cfg.TLS.Key} {
		if f != "" {
			c.warnLoose(f)
		}
	}
	c.refused = &refusal{}
	onError := nats.ErrorHandler(func(nc *nats.Conn, _ *nats.Subscription, err error) {
		msg, ok := refusedBy(s.who, err)
		if !ok {
			return
		}
		c.refused.mu.Lock()
		first := c.refused.msg == ""
		if first {
			c.refused.msg = msg
			fmt.Fprintf(c.err, "agentgw %s: %s\n  %s\n", c.name, msg, refusalHint)
		}
		c.refused.mu.Unlock()
		if first {
			nc.Close()
		}
	})
	name := "agentgw " + c.name
	nc, err := gateway.Connect(s.cfg, name, append(s.extra, onError)...)
	if errors.Is(err, nats.ErrNkeysNotSupported) && s.nkeyDefault {
		// The key of --credential was only a default: a server without
		// nkey users (an open test server) gets an anonymous connection.
		s.cfg.NKey, s.cfg.InboxPrefix = "", cf.inbox
		s.who = "the anonymous NATS user"
		nc, err = gateway.Connect(s.cfg, name, append(s.extra, onError)...)
	}
	if err != nil {
		hint := "Is NATS running there? Pass -s/--server URL (or set $NATS_URL, or use a context), and --creds / --tls-* if the server requires them."
		if errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization") {
			hint = "The server refused " + s.who + ". Connect as one of its users: --creds FILE (a NATS user .creds or nkey seed file, or an agentgw credential for its key; 'agentgw run' prints which file is whom)."
		}
		return nil, nil, c.fail(err, hint), false
	}
	prefix := s.apiPrefix
	switch {
	case prefix != "":
	case cf.tenantSide && s.cfg.NKey != "" && nc.AuthRequired():
		prefix = client.TenantAPIPrefix
	case cf.operatorSide && nc.AuthRequired():
		prefix = client.OperatorAPIPrefix
	}
	cf.bound = prefix == client.TenantAPIPrefix
	var js jetstream.JetStream
	if prefix == "" {
		js, err = jetstream.New(nc)
	} else {
		js, err = jetstream.NewWithAPIPrefix(nc, prefix)
	}
	if err != nil {
		nc.Close()
		return nil, nil, c.fail(err, ""), false
	}
	return nc, js, exitOK, true
}

// credentialFlag registers --credential, the agentgw credential the
// command acts as, with usage saying whose.
func (c *cmd) credentialFlag(whose string) *string {
	return c.fs.String("credential", "", whose+" agentgw credential: the .creds `file` from 'agentgw creds issue'")
}

// needCredential checks the file of --credential. A missing one is a
// usage error that, when --creds was given an agentgw credential, says
// that it belongs in --credential; a file of another kind is an error
// saying what it is.
func (c *cmd) needCredential(path string, cf *connFlags) (int, bool) {
	if path == "" {
		if cf != nil && cf.creds != "" && classify(cf.creds).kind == kindCredential {
			return c.usageErr("--credential is required: --creds %s is an agentgw credential, which names the NATS user only; give it as --credential", cf.creds), false
		}
		return c.usageErr("--credential is required"), false
	}
	if _, err := checkCredential("--credential", path); err != nil {
		return c.fail(err, ""), false
	}
	c.warnLoose(path)
	if cf != nil {
		cf.identity = path
	}
	return exitOK, true
}

// errConsumed, from a scanBound callback, says it acknowledged the
// message: it is not handed back, and the scan goes on.
var errConsumed = errors.New("consumed")
