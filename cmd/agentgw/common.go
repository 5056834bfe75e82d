package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/nats-io/nkeys"

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
	// warned holds the files warnLoose has warned of.
	warned map[string]bool
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
			// The flag package quotes the value: a seed or token pasted
			// into a flag is shown by SafeText, as every usage error is.
			fmt.Fprintf(c.err, "agentgw %s: %s\n", c.name, identity.SafeText(flagError.Replace(err.Error())))
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
	// A secret pasted into a flag or an argument (a seed, a token)
	// must not be echoed back: every usage error is shown by SafeText.
	fmt.Fprintf(c.err, "agentgw %s: %s\nRun 'agentgw %s --help' for usage.\n", c.name, identity.SafeText(fmt.Sprintf(format, args...)), c.name)
	return exitUsage
}

// fail reports a runtime error and, when hint is not empty, what to do
// about it; it returns 1. After a permission refusal, which was reported
// when it happened, err is its consequence and is not repeated.
func (c *cmd) fail(err error, hint string) int {
	if c.refused.get() != "" {
		return exitError
	}
	fmt.Fprintf(c.err, "agentgw %s: %s\n", c.name, identity.SafeText(err.Error()))
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
		return c.usageErr("unexpected argument %q", identity.SafeText(c.args[0])), false
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

// interruptible returns a context cancelled by SIGINT or SIGTERM.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// seedFile is readSeed, and warns on the command's error output when the
// file is open to its group or others (warnLoose).
func (c *cmd) seedFile(path, role string) (nkeys.KeyPair, error) {
	kp, err := readSeed(path, role)
	if err == nil {
		c.warnLoose(path)
	}
	return kp, err
}

// warnLoose warns when the secret file at path (a seed, a credential)
// grants its group or others any access. It does not refuse: a secret an
// orchestrator mounts is often 0644 in a directory only its pod reads.
func (c *cmd) warnLoose(path string) {
	if c.warned[path] {
		return
	}
	if mode, loose := identity.LooseMode(path); loose {
		if c.warned == nil {
			c.warned = map[string]bool{}
		}
		c.warned[path] = true
		fmt.Fprintf(c.err, "agentgw %s: warning: %s is open to its group or others (mode %04o); chmod 600 it\n", c.name, identity.SafePath(path), mode)
	}
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
		return nil, fmt.Errorf("%s: %w", identity.SafePath(path), err)
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
