package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
)

// cmd is one subcommand's flag set and its way of reporting.
type cmd struct {
	name string // "denied ls"
	fs   *flag.FlagSet
	args []string // positional arguments, after parse
	out  io.Writer
	err  io.Writer
	// usage prints the help: synopsis, text and flags.
	usage func(io.Writer)
	// refused is the permission refusal of the connection, once connect
	// made one; it has been reported already.
	refused *refusal
}

// newCmd returns a command whose --help prints synopsis, help and the
// flags. synopsis is the part after "agentgw <name> ".
func newCmd(name, synopsis, help string) *cmd {
	c := &cmd{name: name, fs: flag.NewFlagSet("agentgw "+name, flag.ContinueOnError), out: os.Stdout, err: os.Stderr}
	// parse prints: the flag package would print the usage itself, and
	// to one writer whatever the case.
	c.fs.SetOutput(io.Discard)
	c.fs.Usage = func() {}
	c.usage = func(w io.Writer) {
		fmt.Fprintf(w, "Usage: %s\n\n%s\n", strings.TrimSpace("agentgw "+name+" "+synopsis), strings.TrimSpace(help))
		var n int
		c.fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintf(w, "\nFlags:\n")
			printFlags(w, c.fs)
		}
	}
	return c
}

// printFlags lists the flags of fs as --name, the way help texts and the
// README write them, each with its usage and non-zero default.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	short := map[string]string{}
	for s, long := range flagAliases {
		if fs.Lookup(s) != nil {
			short[long] = s
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if long, ok := flagAliases[f.Name]; ok && fs.Lookup(long) != nil {
			return // printed with its long form
		}
		arg, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if s, ok := short[f.Name]; ok {
			line = "  -" + s + ", --" + f.Name
		}
		if arg != "" {
			line += " " + arg
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		switch f.DefValue {
		case "", "0", "false", "0s", "[]":
		default:
			fmt.Fprintf(w, " (default %q)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
}

// flagError rewrites the flag package's "-name" in err as "--name".
var flagError = strings.NewReplacer(
	"flag provided but not defined: -", "flag provided but not defined: --",
	"flag needs an argument: -", "flag needs an argument: --",
	" for flag -", " for flag --",
)

// identityFlags are names other NATS tools and agentgw's own identity
// flags suggest, each with the flag that does the job here.
var identityFlags = map[string]string{
	"nats":       "The NATS server is -s/--server URL.",
	"nkey":       "The NATS user is --creds FILE: a NATS user .creds or an nkey seed file.",
	"nats-nkey":  "The NATS user is --creds FILE: a NATS user .creds or an nkey seed file.",
	"nats-creds": "The NATS user is --creds FILE: a NATS user .creds or an nkey seed file.",
	"creds":      "An agentgw credential is --credential FILE.",
	"user":       "A NATS user and password come from a NATS context (--context) or the server URL.",
	"tlscert":    "The client certificate is --tls-cert FILE.",
	"tlskey":     "The client key is --tls-key FILE.",
	"tlsca":      "The CA is --tls-ca FILE.",
}

// flagHint says which flag to use for an undefined identity flag.
func flagHint(err error) string {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return ""
	}
	return identityFlags[strings.TrimPrefix(name, "-")]
}

// parse parses args, flags and positional arguments in any order ("--"
// ends the flags); the positional ones land in c.args. When it returns
// ok false the command must return code: --help (0, the help once on
// stdout) or a flag error (2, the error and the help once on stderr).
func (c *cmd) parse(args []string) (code int, ok bool) {
	var rest []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, rest = args[:i], args[i+1:]
	}
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.usage(c.out)
				return exitOK, false
			}
			fmt.Fprintf(c.err, "agentgw %s: %s\n", c.name, flagError.Replace(err.Error()))
			if hint := flagHint(err); hint != "" {
				fmt.Fprintf(c.err, "  %s\n", hint)
			}
			c.usage(c.err)
			return exitUsage, false
		}
		args = c.fs.Args()
		if len(args) == 0 {
			break
		}
		c.args = append(c.args, args[0])
		args = args[1:]
	}
	c.args = append(c.args, rest...)
	return exitOK, true
}

// usageErr reports a usage error and what to run next; it returns 2.
func (c *cmd) usageErr(format string, args ...any) int {
	fmt.Fprintf(c.err, "agentgw %s: %s\nRun 'agentgw %s --help' for usage.\n", c.name, fmt.Sprintf(format, args...), c.name)
	return exitUsage
}

// fail reports a runtime error and, when hint is not empty, what to do
// about it; it returns 1. After a permission refusal, which was reported
// when it happened, err is its consequence and is not repeated.
func (c *cmd) fail(err error, hint string) int {
	if c.refused.get() != "" {
		return exitError
	}
	fmt.Fprintf(c.err, "agentgw %s: %v\n", c.name, err)
	if hint != "" {
		fmt.Fprintf(c.err, "  %s\n", hint)
	}
	return exitError
}

// require reports the first empty flag among names as a usage error.
func (c *cmd) require(names ...string) (int, bool) {
	for _, n := range names {
		if f := c.fs.Lookup(n); f != nil && f.Value.String() == "" {
			return c.usageErr("--%s is required", n), false
		}
	}
	return exitOK, true
}

// noArgs reports positional arguments as a usage error.
func (c *cmd) noArgs() (int, bool) {
	if len(c.args) > 0 {
		return c.usageErr("unexpected argument %q", c.args[0]), false
	}
	return exitOK, true
}

// subcommand is one second-level command (keys new, denied ls, ...).
type subcommand struct {
	name    string
	summary string
	run     func(args []string) int
}

// group runs the subcommand of group named by args[0].
func group(name, summary string, subs []subcommand, args []string) int {
	help := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: agentgw %s <subcommand> [flags]\n\n%s\n\nSubcommands:\n", name, summary)
		for _, s := range subs {
			fmt.Fprintf(w, "  %-8s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(w, "\nRun 'agentgw %s <subcommand> --help' for its flags.\n", name)
	}
	if len(args) == 0 {
		help(os.Stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		help(os.Stdout)
		return exitOK
	}
	for _, s := range subs {
		if s.name == args[0] {
			return s.run(args[1:])
		}
	}
	fmt.Fprintf(os.Stderr, "agentgw %s: unknown subcommand %q\nRun 'agentgw %s --help' for the list.\n", name, args[0], name)
	return exitUsage
}

// listFlag is a string list flag: repeatable, and comma separated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

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
	case cf.identity != "":
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
	if cf != nil {
		cf.identity = path
	}
	return exitOK, true
}

// errConsumed, from a scanBound callback, says it acknowledged the
// message: it is not handed back, and the scan goes on.
var errConsumed = errors.New("consumed")

// scanBound is scan for a tenant user: it binds the pre-created consumer
// durable on stream (it may not create one) and hands fn each message
// once, oldest first. Everything it fetched is handed back (nak) when it
// returns, so a listing consumes nothing; messages another reader holds
// unacknowledged are not seen until they come back. Without follow it
// returns once nothing more is available; with follow it waits for new
// messages until ctx is done.
func scanBound(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, stream, durable string, follow bool, fn func(jetstream.Msg) error) error {
	cons, err := js.Consumer(ctx, stream, durable)
	if err != nil {
		return fmt.Errorf("stream %s, consumer %s: %w", stream, durable, err)
	}
	held := map[uint64]jetstream.Msg{}
	defer func() {
		for _, m := range held {
			_ = m.Nak()
		}
		_ = nc.Flush()
	}()
	for ctx.Err() == nil {
		var batch jetstream.MessageBatch
		if follow {
			batch, err = cons.Fetch(64, jetstream.FetchMaxWait(time.Second))
		} else {
			batch, err = cons.FetchNoWait(64)
		}
		if err != nil {
			return fmt.Errorf("stream %s, consumer %s: %w", stream, durable, err)
		}
		n := 0
		var fnErr error
		// The batch is read to its end even after fn failed: a pull
		// request left open would take back what is handed back below.
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				_ = m.Nak()
				continue
			}
			_, seen := held[md.Sequence.Stream]
			held[md.Sequence.Stream] = m // the latest delivery is the one to hand back
			if seen || fnErr != nil {
				continue
			}
			fnErr = fn(m)
			if errors.Is(fnErr, errConsumed) {
				delete(held, md.Sequence.Stream) // fn acknowledged it: not handed back
				fnErr = nil
			}
		}
		if fnErr != nil {
			return fnErr
		}
		if err := batch.Error(); err != nil && ctx.Err() == nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("stream %s, consumer %s: %w", stream, durable, err)
		}
		if !follow && n == 0 {
			return nil
		}
	}
	return nil
}

// streamHint says what to do about an error reading stream.
func streamHint(stream string, err error) string {
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return "Stream " + stream + " does not exist on this server: point -s/--server at the gateway's NATS, or start the gateway once ('agentgw serve' creates its streams)."
	case errors.Is(err, client.ErrNoDirectGet):
		return "Stream " + stream + " predates direct gets: start the gateway once ('agentgw serve' updates its streams)."
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders):
		return "No answer from the JetStream API: operators reach it under " + client.OperatorAPIPrefix + " (their account imports it there), users of the gateway's account (the admin) under $JS.API: pass --js-api-prefix to choose."
	}
	return ""
}

// scan hands fn the messages of stream on subjects matching filter,
// stored in the last d (zero: all), oldest first, with direct gets
// (client.ReadRecords: no consumer, nothing left on the server). Without
// follow it returns after the last message stored when it started; with
// follow it waits for new ones until ctx is done. An interrupt (ctx done)
// is not an error.
func scan(ctx context.Context, js jetstream.JetStream, stream, filter string, d time.Duration, follow bool, fn func(*jetstream.RawStreamMsg) error) error {
	q := client.RecordQuery{Stream: stream, Subject: filter, Follow: follow}
	if d > 0 {
		q.Since = time.Now().Add(-d)
	}
	return client.ReadRecords(ctx, js, q, fn)
}

// scanOrdered hands fn the messages of stream that match oc, oldest
// first, through an ordered consumer (no server-side state is left
// behind), for a user that may create consumers (an open server, the
// admin). Without follow it returns after the last message that matched
// when it started; with follow it waits for new ones until ctx is done.
// An interrupt (ctx done) is not an error.
func scanOrdered(ctx context.Context, js jetstream.JetStream, stream string, oc jetstream.OrderedConsumerConfig, follow bool, fn func(jetstream.Msg) error) error {
	cons, err := js.OrderedConsumer(ctx, stream, oc)
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	defer it.Stop()
	if info := cons.CachedInfo(); !follow && info != nil && info.NumPending == 0 {
		return nil
	}
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("stream %s: %w", stream, err)
		}
		if err := fn(m); err != nil {
			return err
		}
		if md, err := m.Metadata(); !follow && err == nil && md.NumPending == 0 {
			return nil
		}
	}
}

// interruptible returns a context cancelled by SIGINT or SIGTERM.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// readSeed reads an nkey seed file with identity.ReadSeedFile and checks
// that it holds a seed of role, the seed prefix wanted ("SA", "SU", "SN",
// "SX"; "S" for any). A user seed may come from a .creds file. The error
// says what the file holds instead, and never quotes it.
func readSeed(path, role string) (nkeys.KeyPair, error) {
	want, ok := seedRoles[seedPrefix[role]]
	want = "an nkey seed of " + want
	if !ok {
		want = "an nkey seed file"
	}
	f := classify(path)
	switch {
	case f.kind == kindSeed && (role == "S" || f.seed == seedPrefix[role]):
	case (f.kind == kindCredential || f.kind == kindUserCreds) && (role == "S" || role == "SU"):
	default:
		return nil, &fileError{want: want, got: f}
	}
	kp, err := identity.ReadSeedFile(path)
	if err != nil {
		return nil, err
	}
	// Seed returns the key pair's own bytes: not to be cleared here.
	seed, err := kp.Seed()
	if err != nil {
		kp.Wipe()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !bytes.HasPrefix(seed, []byte(role)) {
		kp.Wipe()
		return nil, &fileError{want: want, got: f}
	}
	return kp, nil
}

// seedPrefix maps the written prefix of a seed to its role.
var seedPrefix = map[string]nkeys.PrefixByte{
	"SU": nkeys.PrefixByteUser, "SA": nkeys.PrefixByteAccount, "SO": nkeys.PrefixByteOperator,
	"SN": nkeys.PrefixByteServer, "SC": nkeys.PrefixByteCluster, "SX": nkeys.PrefixByteCurve,
}

// clean makes a value from a stream safe for one terminal cell: control
// characters (escape sequences, tabs, newlines) become spaces; empty is "-".
func clean(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
}

// short abbreviates a public nkey for a table: "UABC…WXYZ".
func short(k string) string {
	if len(k) <= 12 {
		return clean(k)
	}
	return clean(k[:5] + "…" + k[len(k)-4:])
}

// stamp formats a time for a table, in UTC.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// table prints aligned rows. In stream mode (a --follow) each row is
// written at once, its cells padded to the header's widths, since rows
// to come cannot be measured.
type table struct {
	tw     *tabwriter.Writer
	w      io.Writer
	widths []int
	stream bool
}

// column is a header and, for stream mode, its cell width.
type column struct {
	name  string
	width int
}

func newTable(w io.Writer, stream bool, cols ...column) *table {
	t := &table{w: w, stream: stream}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
		t.widths = append(t.widths, max(c.width, len(c.name)))
	}
	if !stream {
		t.tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	}
	t.row(names...)
	return t
}

func (t *table) row(cells ...string) {
	if !t.stream {
		fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
		return
	}
	var b strings.Builder
	for i, c := range cells {
		if i == len(cells)-1 {
			b.WriteString(c)
			break
		}
		fmt.Fprintf(&b, "%-*s  ", t.widths[i], c)
	}
	fmt.Fprintln(t.w, b.String())
}

func (t *table) flush() {
	if t.tw != nil {
		_ = t.tw.Flush()
	}
}

// jsonLines writes one JSON object per line.
type jsonLines struct{ enc *json.Encoder }

func newJSONLines(w io.Writer) *jsonLines {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &jsonLines{enc: enc}
}

func (j *jsonLines) write(v any) error { return j.enc.Encode(v) }
