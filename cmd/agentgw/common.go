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
	"slices"
	"strings"
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
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
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
// about it; it returns 1.
func (c *cmd) fail(err error, hint string) int {
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

// connFlags are the NATS connection flags every networked command takes.
type connFlags struct {
	url, creds, nkey, inbox, apiPrefix, ca, cert, key string
	tls                                               bool

	// identity, set by a command that acts as an agentgw identity (send
	// --creds, approvals grant --creds, denied replay --creds), is that
	// .creds file: its key is the NATS user unless --nats-nkey or
	// --nats-creds name another. Tenant accounts (deploy/, `agentgw run`)
	// name every agent, approver and consumer by its agentgw key.
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
}

func (cf *connFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("NATS_URL")
	if def == "" {
		def = nats.DefaultURL
	}
	fs.StringVar(&cf.url, "nats", def, "NATS server `URL`s, comma separated (default from $NATS_URL)")
	fs.StringVar(&cf.creds, "nats-creds", "", "NATS user .creds `file` for the connection (decentralized auth: a NATS user JWT, not an agentgw credential)")
	fs.StringVar(&cf.nkey, "nats-nkey", "", "connect as the nkey user of this `file`: an nkey seed, or an agentgw .creds (its key); default: the key of --creds where the command has one")
	fs.StringVar(&cf.inbox, "inbox-prefix", "", "reply inbox `prefix` (default _INBOX.<public key> when connecting as an nkey user, else _INBOX)")
	fs.StringVar(&cf.apiPrefix, "js-api-prefix", "", "JetStream API `prefix` (default $JS.API; "+client.TenantAPIPrefix+" for consume and approvals as an nkey user, and for denied, audit and policy test, of a server that requires authentication)")
	fs.StringVar(&cf.ca, "tls-ca", "", "CA certificate `file` to verify the server with")
	fs.StringVar(&cf.cert, "tls-cert", "", "client certificate `file` for mTLS (with --tls-key)")
	fs.StringVar(&cf.key, "tls-key", "", "client key `file` for mTLS (with --tls-cert)")
	fs.BoolVar(&cf.tls, "tls", false, "require TLS even without --tls-ca or a client certificate")
}

// connect dials NATS with gateway.Connect, so the CLI, the SDK and the
// gateway share one set of credential and TLS options, and sets cf.bound.
func (c *cmd) connect(cf *connFlags) (*nats.Conn, jetstream.JetStream, int, bool) {
	if (cf.cert == "") != (cf.key == "") {
		return nil, nil, c.usageErr("--tls-cert and --tls-key go together"), false
	}
	if cf.creds != "" && cf.nkey != "" {
		return nil, nil, c.usageErr("--nats-creds and --nats-nkey are alternatives; give one"), false
	}
	nkey, inbox := cf.nkey, cf.inbox
	if nkey == "" && cf.creds == "" {
		nkey = cf.identity
	}
	if nkey != "" && inbox == "" {
		pub, err := client.UserKey(nkey)
		if err != nil {
			return nil, nil, c.fail(err, "--nats-nkey (or --creds) must hold a user nkey seed ('SU…'): a seed file or a .creds file."), false
		}
		inbox = "_INBOX." + pub
	}
	cfg := gateway.NATSConfig{
		URL:         cf.url,
		Creds:       cf.creds,
		NKey:        nkey,
		InboxPrefix: inbox,
		TLS:         gateway.TLSConfig{CA: cf.ca, Cert: cf.cert, Key: cf.key, Required: cf.tls},
	}
	nc, err := gateway.Connect(cfg, "agentgw "+c.name)
	if errors.Is(err, nats.ErrNkeysNotSupported) && cf.nkey == "" {
		// The key of --creds was only a default: a server without nkey
		// users (an open test server) gets an anonymous connection.
		nkey, cfg.NKey, cfg.InboxPrefix = "", "", cf.inbox
		nc, err = gateway.Connect(cfg, "agentgw "+c.name)
	}
	if err != nil {
		hint := "Is NATS running there? Pass --nats URL (or set NATS_URL), and --nats-nkey / --nats-creds / --tls-* if the server requires them."
		if errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization") {
			hint = "The server refused this identity. Connect as one of its users: --nats-nkey FILE (an nkey seed or a .creds file; 'agentgw run' prints which file is whom) or --nats-creds FILE."
		}
		return nil, nil, c.fail(err, hint), false
	}
	prefix := cf.apiPrefix
	switch {
	case prefix != "":
	case cf.tenantSide && nkey != "" && nc.AuthRequired():
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
		return "Stream " + stream + " does not exist on this server: point --nats at the gateway's NATS, or start the gateway once ('agentgw serve' creates its streams)."
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
// "SX"; "S" for any). The error never quotes the file.
func readSeed(path, role string) (nkeys.KeyPair, error) {
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
		return nil, fmt.Errorf("%s: the seed is not a %s… seed", path, role)
	}
	return kp, nil
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
