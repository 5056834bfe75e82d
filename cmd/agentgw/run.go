package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/tracing"
	"github.com/agentgw/agentgw/internal/demo"
	"github.com/agentgw/agentgw/internal/devenv"
)

func runCmd(args []string) int {
	c := newCmd("run", "[--dir DIR] [--demo] [--json] [--port N]", `
Start an in-process nats-server (JetStream on file storage), write dev
material on first run (two tenants, tenant_a and tenant_b, each with its
issuer and agent, approver and consumer .creds; the operator's .creds,
the gateway's keys, a catalog and Cedar policies) and run the gateway on
it until Ctrl-C. With --demo, first play a scenario with
one message per gate and print each decision. SIGHUP reloads policies,
catalog and revocations. Development only: loopback, no TLS.

The server is not open: nats-server.conf (rendered from the dev keys) has
the accounts and permissions of deploy/accounts.conf, with nkey users.
The gateway and the admin are users of account AGENTGW; the operator of
account OPS, which may only read the denied and audit streams and ask
for replays; each tenant's agent, approver and consumer of its own
account (TENANT_A, TENANT_B), each allowed only its own subjects and
pre-created consumers (created here, as the admin, once the gateway has
made its streams), nothing of another tenant's. Connect as one of them:
'send' and 'approvals grant' use the key of --credential, the other
commands take --creds FILE (a seed file or a .creds file).

A tenant added to <dir>/gateway.yaml without issuers ('tenant_c: {}')
gets a dev issuer, its agent, approver and consumer in creds/<tenant>/
and its own account at the next start.`)
	dir := c.fs.String("dir", ".agentgw", "data directory for dev material, JetStream and the ledger")
	withDemo := c.fs.Bool("demo", false, "play the demo scenario once the gateway runs")
	asJSON := c.fs.Bool("json", false, "print demo rows as JSON lines")
	port := c.fs.Int("port", 0, "NATS port (0: from nats-server.conf, 4222; -1: any free port)")
	if code, ok := c.parse(args); !ok {
		return code
	}
	hup, stopHUP := catchHUP()
	defer stopHUP()
	if code, ok := c.noArgs(); !ok {
		return code
	}
	m, created, err := devenv.Ensure(*dir)
	if err != nil {
		return c.fail(err, "remove the directory to start afresh, or pass --dir")
	}
	srv, err := devenv.StartServer(m.NATSConf, filepath.Join(*dir, "jetstream"), *port)
	if err != nil {
		return c.fail(err, "another server may hold the port: try --port -1")
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	cfg, err := gateway.LoadConfig(m.Config)
	if err != nil {
		return c.fail(err, strings.TrimPrefix(gateway.ConfigHint(err)+"; ", "; ")+"fix "+m.Config+" or remove "+*dir+" to regenerate it")
	}
	if cfg.ScaleOut != nil {
		// The dev server's AGENTGW user has no rights on the journal, the
		// lease and holds buckets: a scaled-out gateway would stop at
		// its first journal append.
		return c.fail(errors.New("agentgw run: the development server does not scale out"), "remove scale_out from "+m.Config+"; deploy/ has the configuration of a scaled-out deployment")
	}
	// The gateway is a NATS user like any other (AGENTGW account): it
	// connects in-process with its own nkey. Material from before the dev
	// server had accounts has no nats.nkey in its config.
	if cfg.NATS.NKey == "" {
		cfg.NATS.NKey = m.GatewayNATS
	}
	nc, err := devenv.Connect(srv.ClientURL(), cfg.NATS.NKey, "agentgw-gateway",
		append(gateway.ClientOptions(gateway.NATSConfig{InboxPrefix: cfg.NATS.InboxPrefix}), nats.InProcessServer(srv))...)
	if err != nil {
		return c.fail(err, "")
	}
	defer nc.Close()
	if created {
		fmt.Fprintf(c.out, "wrote dev material to %s\n", m.Dir)
	}
	printMaterial(c, m, srv.ClientURL())

	logPath := filepath.Join(*dir, "gateway.log")
	if fi, err := os.Lstat(logPath); err == nil && !fi.Mode().IsRegular() {
		// The directory is the user's alone (devenv.Ensure): a link here
		// was not left by the gateway, and its log goes nowhere else.
		return c.fail(fmt.Errorf("%s is not a regular file", logPath), "remove it")
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return c.fail(err, "")
	}
	defer logFile.Close()
	tp, shutdown, err := tracing.Setup(context.Background(), cfg.Tracing, "agentgw")
	if err != nil {
		return c.fail(err, "set tracing.exporter in "+m.Config+" to none, stdout, file (with tracing.file) or otlp")
	}
	defer shutdown(context.Background())
	gw, err := gateway.New(cfg, gateway.WithConn(nc), gateway.WithTracerProvider(tp),
		gateway.WithLogger(zerolog.New(logFile).With().Timestamp().Logger()))
	if err != nil {
		return c.fail(err, "")
	}
	defer gw.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- gw.Run(ctx) }()
	go reloadOnHUP(ctx, hup, gw, c)

	select {
	case <-gw.Ready():
	case err := <-errc:
		return c.fail(err, "the gateway log is "+logPath)
	}
	// The streams exist now: create the consumers tenant users bind to.
	if err := provision(ctx, srv, m); err != nil {
		stop()
		<-errc
		return c.fail(err, "")
	}
	if *withDemo {
		if err := playDemo(ctx, c, srv, m, *asJSON); err != nil && !errors.Is(err, context.Canceled) {
			stop()
			<-errc
			return c.fail(err, "the gateway log is "+logPath)
		}
	}
	fmt.Fprintf(c.out, "\ngateway serving on %s (log: %s); Ctrl-C to stop\n", srv.ClientURL(), logPath)
	if err := <-errc; err != nil {
		return c.fail(err, "the gateway log is "+logPath)
	}
	return exitOK
}

// provision creates the pre-created consumers as the admin.
func provision(ctx context.Context, srv *server.Server, m *devenv.Material) error {
	nc, err := devenv.Connect(srv.ClientURL(), m.AdminNATS, "agentgw-admin", nats.InProcessServer(srv))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return devenv.Provision(pctx, js, m)
}

func printMaterial(c *cmd, m *devenv.Material, url string) {
	fmt.Fprintf(c.out, "NATS        %s (in-process; JetStream in %s)\n", url, filepath.Join(m.Dir, "jetstream"))
	fmt.Fprintf(c.out, "            accounts and users in %s: every client connects as an nkey\n", m.NATSConf)
	fmt.Fprintf(c.out, "gateway     signing %s\n            curve   %s\n", m.GatewayKey, m.GatewayXKey)
	fmt.Fprintf(c.out, "config      %s\n", m.Config)
	for _, t := range m.Tenants {
		fmt.Fprintf(c.out, "%-11s account %s\n", t.Name, t.Account)
		for _, a := range []devenv.Actor{t.Agent, t.Approver, t.Consumer} {
			if _, err := os.Stat(a.Creds); err == nil {
				fmt.Fprintf(c.out, "  %-9s %s (curve seed %s)\n", a.Name, a.Creds, filepath.Base(a.Curve))
			}
		}
	}
	fmt.Fprintf(c.out, "%-11s %s (curve seed %s)\n", m.Operator.Name, m.Operator.Creds, filepath.Base(m.Operator.Curve))
	fmt.Fprintf(c.out, "admin       %s (NATS user for the nats CLI: --nkey)\n", m.AdminNATS)
	fmt.Fprintf(c.out, "connect as  --credential %s for send; --creds %s for consume, %s for approvals ls,\n"+
		"            %s for denied, audit and policy test\n",
		filepath.Base(m.Agent.Creds), filepath.Base(m.Consumer.Creds), filepath.Base(m.Approver.Creds), filepath.Base(m.Operator.Creds))
}

func playDemo(ctx context.Context, c *cmd, srv *server.Server, m *devenv.Material, asJSON bool) error {
	fmt.Fprintln(c.out)
	var emit func(demo.Row)
	if asJSON {
		j := newJSONLines(c.out)
		emit = func(r demo.Row) { _ = j.write(r) }
	} else {
		t := newTable(c.out, true,
			column{"#", 2}, column{"WHO", 8}, column{"WHAT", 48}, column{"DECISION", 8},
			column{"REASON", 20}, column{"POLICY", 24}, column{"WHERE", 0})
		emit = func(r demo.Row) {
			t.row(fmt.Sprint(r.Step), r.Who, r.What, r.Decision, dash(r.Reason), dash(strings.Join(r.Policy, ",")), r.Where)
		}
	}
	return demo.Run(ctx, srv.ClientURL(), m, emit, nats.InProcessServer(srv))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// catchHUP takes SIGHUP from the process's start: by default it ends a
// Go program, and a reload asked for while the gateway starts (say
// systemctl reload right after a restart) would stop it for good
// (systemd counts SIGHUP as a clean exit). One that comes before the
// gateway runs is kept for reloadOnHUP. stop releases it.
func catchHUP() (hup chan os.Signal, stop func()) {
	hup = make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

// reloadOnHUP reloads policies, catalog and revocations on each SIGHUP
// catchHUP took, until ctx is done.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, gw *gateway.Gateway, c *cmd) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := gw.Reload(); err != nil {
				fmt.Fprintf(c.err, "agentgw: reload kept the previous version of what failed: %s\n", identity.SafeText(err.Error()))
			}
		}
	}
}
