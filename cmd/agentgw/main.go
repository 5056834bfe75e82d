// Command agentgw runs the agentgw gateway and is the operator's and the
// agent developer's tool around it: keys, credentials, sending and
// consuming envelopes, approvals, the denied stream, the audit trail and
// policy checks.
//
// This package holds one file per subcommand and no logic: each parses
// its flags, builds a config, calls a package and prints. See usage below
// for the commands and the exit codes.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes. Every subcommand returns one of these.
const (
	exitOK       = 0 // done as asked
	exitError    = 1 // a runtime error: I/O, connection, a stream missing
	exitUsage    = 2 // bad flags or arguments: nothing was done
	exitRejected = 3 // the thing checked was refused: a denial, a verification failure, a broken policy
	// exitUndetermined: the answer asked for is not known from what the
	// command could see: a dry run that does not predict, a what-if with
	// decisions it cannot re-evaluate (and none that flips).
	exitUndetermined = 4
)

// topCommand is one first-level subcommand.
type topCommand struct {
	name    string
	summary string
	run     func(args []string) int
}

// commands lists the subcommands in the order usage shows them. run and
// serve live in run.go and serve.go.
var commands = []topCommand{
	{"run", "start an embedded NATS server, the gateway and the demo", runCmd},
	{"serve", "run the gateway against a NATS server", serveCmd},
	{"deploy", "write a production deployment: TLS, keys, NATS and gateway config", deployCmd},
	{"keys", "create nkeys (issuer, agent, gateway, curve) and show public keys", keysCmd},
	{"creds", "issue, show and revoke agent credentials", credsCmd},
	{"send", "sign, seal and publish one envelope as an agent", sendCmd},
	{"consume", "read and verify deliveries of a capability subject", consumeCmd},
	{"mcp", "bridge MCP tool servers and serve MCP clients through the gateway", mcpCmd},
	{"approvals", "list, watch, grant and deny held requests", approvalsCmd},
	{"denied", "list and inspect denied messages", deniedCmd},
	{"audit", "read the audit trail", auditCmd},
	{"policy", "check Cedar policy files (and a capability catalog)", policyCmd},
	{"eval", "run security evaluation cases against a sandbox or a gateway", evalCmd},
	{"bench", "measure the gateway against a raw and a crypto relay", benchCmd},
	{"version", "print the module version, VCS revision and Go version", versionCmd},
}

func main() { os.Exit(dispatch(os.Args[1:])) }

// dispatch runs the subcommand named by args[0].
func dispatch(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			return dispatch([]string{args[1], "--help"})
		}
		usage(os.Stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:])
		}
	}
	fmt.Fprintf(os.Stderr, "agentgw: unknown command %q\nRun 'agentgw --help' for the list of commands.\n", args[0])
	return exitUsage
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("agentgw verifies signed agent envelopes on NATS JetStream and routes each\n")
	b.WriteString("to its capability subject, an approval queue or the denied stream.\n\n")
	b.WriteString("Usage:\n  agentgw <command> [subcommand] [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Run 'agentgw <command> --help' for a command's subcommands and flags.

Commands that talk to NATS take the nats CLI's connection flags:
-s/--server URL, the NATS user as --creds FILE (a NATS user .creds file or
an nkey seed file; an agentgw credential means the nkey user of its key),
--context NAME (a nats CLI context), and --tls-ca, --tls-cert, --tls-key.
A flag wins over $NATS_URL, $NATS_CREDS, $NATS_NKEY, $NATS_CA, $NATS_CERT
and $NATS_KEY, which win over the context ($NATS_CONTEXT, else the one
'nats context select' chose), which wins over nats://127.0.0.1:4222 and
no user. --credential FILE is always an agentgw credential (from 'agentgw
creds issue'); a command that has one connects as its key when nothing
else names the NATS user, as tenant accounts require. A permission the
server refuses is reported at once with the user and the subject.
The 'agentgw run' server has no anonymous user: see 'agentgw run --help'.
Listing commands take --json and then print one JSON object per line.

Secrets: a seed is written to a new 0600 file, or printed on stdout only
when asked to ('keys new --out -'); no command prints a credential JWT or
a header that holds one. 'consume' prints payloads because that is what it is for.

Exit codes:
  0  ok
  1  runtime error (I/O, connection, missing stream)
  2  usage error (bad flags or arguments; nothing was done)
  3  denied or verification failure (a rejected delivery, a refused
     approval, a policy or catalog that does not load, a forged credential)
  4  not determined ('denied replay --dry-run' that does not predict the
     decision; 'policy test' with decisions it cannot re-evaluate; 'send'
     whose wait for a notice or a reply ended with nothing)
`)
	_, _ = io.WriteString(w, b.String())
}
