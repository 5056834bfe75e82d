package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	mcpgw "github.com/agentgw/agentgw/internal/mcp"
	"github.com/agentgw/agentgw/subjects/reason"
)

func mcpCmd(args []string) int {
	return group("mcp", "Connect MCP (Model Context Protocol) clients and tool servers to the gateway.", []subcommand{
		{"bridge", "serve catalog targets from upstream MCP servers as a verified consumer", mcpBridge},
		{"serve", "run the MCP endpoint (an OAuth resource server) for MCP clients", mcpServe},
	}, args)
}

func mcpBridge(args []string) int {
	c := newCmd("mcp bridge", "--config FILE --credential FILE --curve-seed FILE --gateway-key N... [flags]", `
Consume the capability subjects of the tools in --config (mcp.yaml) that
have an upstream, as their capability consumer (client.Consumer): only a
delivery whose decision token, binding and re-sealed payload verify is
turned into a tools/call on the upstream MCP server (Streamable HTTP or
stdio), with the verified arguments. The result goes back to the
requester as a response through the gateway (response schema,
redaction, routed once). Upstream bearer tokens are read from the
environment variables the config names and never leave the bridge.

--credential is the bridge's agent identity (respond:<target> for each
tool), and its key the NATS user unless --creds, $NATS_CREDS, $NATS_NKEY or
a NATS context name another; --curve-seed is the catalog's consumer_xkey
of the targets.

Each target is read by its own durable consumer, <durable>~<target> (every
dot of the target as ~), so a restarted bridge resumes where it stopped
and several instances share the work. Connected as a tenant nkey user (the
least-privilege accounts of deploy/ and 'agentgw run'), it binds the
pre-created consumers <tenant>~<target> through the API prefix
`+client.TenantAPIPrefix+` (--durable defaults to the tenant there);
otherwise --durable is required and the consumers are created. --bind
forces binding. A crash between an upstream call and its acknowledgement
calls that one tool again on restart (at-least-once). A delivery refused
for want of a key (signed with a gateway key not among --gateway-key,
say while the gateway's key rotates) is handed back on the durable for a
bridge that has the key, not terminated: it comes back every second,
printed each time, until a bridge with the key takes it (once the
token's decision_ttl has passed, as expired) or the stream drops it.
Refusals a right clock or a fuller record would lift are handed back
too; every other refusal is terminated.`)
	var cf connFlags
	cf.register(c.fs)
	cf.tenantSide = true
	config := c.fs.String("config", "", "the MCP mapping `file` (mcp.yaml)")
	creds := c.credentialFlag("the bridge's (respond:<target> scopes)")
	curve := c.fs.String("curve-seed", "", "the consumer's curve seed `file` (SX…), the targets' consumer_xkey")
	gwX := c.fs.String("gateway-xkey", "", "the gateway's public curve `key` (X…): answers are sealed to it")
	durable := c.fs.String("durable", "", "durable consumer name `prefix`, without ~: each target is read by <prefix>~<target> (required unless bound; bound, default the tenant: the pre-created consumers; another prefix must be no tenant's name)")
	bind := c.fs.Bool("bind", false, "bind the existing durables <durable>~<target> instead of creating them; automatic as a tenant nkey user")
	var gwKeys listFlag
	c.fs.Var(&gwKeys, "gateway-key", "trusted gateway public `key` (N…), repeatable")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	if code, ok := c.require("config", "curve-seed", "gateway-xkey"); !ok {
		return code
	}
	cfg, err := mcpgw.LoadConfig(*config)
	if err != nil {
		return c.usageErr("%v", err)
	}
	if code, ok := c.needCredential(*creds, &cf); !ok {
		return code
	}
	kp, err := c.seedFile(*curve, "SX")
	if err != nil {
		return c.fail(err, "--curve-seed must be the consumer's curve seed file.")
	}
	defer kp.Wipe()
	nc, js, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	bound := cf.bound || *bind
	if bound && *durable == "" {
		*durable = cfg.Tenant
	}
	if *durable == "" {
		return c.usageErr("--durable is required: an ephemeral consumer would hand a restarted bridge every unexpired delivery again, and the upstream tools would run twice")
	}
	acfg := client.DefaultAgentConfig()
	acfg.GatewayXKey = *gwX
	responder, err := client.AgentFromCreds(nc, *creds, *curve, acfg)
	if err != nil {
		return c.fail(err, "Check that --credential is the bridge's .creds file and --curve-seed its curve seed (the credential's xkey).")
	}
	ccfg := bridgeConsumerConfig(kp, gwKeys, responder, *durable, bound, c.err)
	b, err := mcpgw.NewBridge(js, cfg, ccfg)
	if err != nil {
		return c.usageErr("%v", err)
	}
	ctx, cancel := interruptible()
	defer cancel()
	fmt.Fprintf(c.err, "agentgw mcp bridge: bridging the tools of tenant %s\n", cfg.Tenant)
	if err := b.Run(ctx); err != nil {
		hint := streamHint(gateway.StreamCap, err)
		if bound {
			hint = "Binding failed: each target's consumer " + mcpgw.BridgeConsumerName(*durable, "<target>") + " must exist ('agentgw run' and deploy/ create one per catalog target) and the NATS user must be allowed to read it."
		}
		return c.fail(err, hint)
	}
	return exitOK
}

// bridgeConsumerConfig is the bridge's consumer configuration: durable
// always, so what it refuses for want of a key (a gateway signing key not
// among --gateway-key, during a rotation; a payload re-sealed to another
// curve key) is handed back for the bridges that have the key, rather
// than terminated for all of them. Every refusal is printed to stderr.
func bridgeConsumerConfig(curve nkeys.KeyPair, gwKeys []string, responder *client.Agent, durable string, bound bool, stderr io.Writer) client.ConsumerConfig {
	ccfg := client.DefaultConsumerConfig()
	ccfg.Curve, ccfg.TrustedGateways, ccfg.Responder = curve, gwKeys, responder
	ccfg.Durable, ccfg.Bind, ccfg.Stream = durable, bound, gateway.StreamCap
	ccfg.HandBackUnknownKeys = true
	ccfg.OnReject = func(subject string, err error) {
		back := ""
		if errors.Is(err, client.ErrUnknownKey) {
			back = ", for want of a key: handed back for a bridge that has it"
		}
		fmt.Fprintf(stderr, "agentgw mcp bridge: rejected a delivery on %s: %s%s\n", subject, reason.Of(err), back)
	}
	return ccfg
}

func mcpServe(args []string) int {
	c := newCmd("mcp serve", "--config FILE --listen ADDR [flags]", `
Run the MCP endpoint of --config (mcp.yaml, its endpoint section): an MCP
server over stateless Streamable HTTP at the path of endpoint.resource,
and an OAuth 2.1 resource server with its protected resource metadata at
/.well-known/oauth-protected-resource<path>. Bearer tokens must be issued
by an endpoint.authorization_servers issuer for endpoint.resource; each
principal acts through its own agent identity (keys in endpoint.key_dir,
a credential from the token exchange), so every tools/call is a signed
envelope with sealed arguments that passes every gate. With
endpoint.catalog and endpoint.policies (the gateway's files), tools/list
shows a principal only the tools the catalog gate and the authorize-stage
policy allow it; without them, the tools its scopes cover. A decision
notice or reply of a call that does not verify is ignored, the first of
each call printed to stderr: one whose token names a gateway key not
among endpoint.trusted_gateways says so, and names the key (unverified):
the gateway's signing key may have changed without this endpoint, whose
calls then end with no reply.

Serve TLS in front of it (a reverse proxy) for anything but loopback.`)
	var cf connFlags
	cf.register(c.fs)
	config := c.fs.String("config", "", "the MCP mapping `file` (mcp.yaml) with an endpoint section")
	listen := c.fs.String("listen", "127.0.0.1:8787", "HTTP listen `address`")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	if code, ok := c.require("config"); !ok {
		return code
	}
	cfg, err := mcpgw.LoadConfig(*config)
	if err != nil {
		return c.usageErr("%v", err)
	}
	nc, _, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	var printing sync.Mutex // calls refuse at once
	ep, err := mcpgw.NewEndpoint(nc, cfg, mcpgw.WithOnReject(func(tool string, err error) {
		what := string(reason.Of(err))
		if errors.Is(err, client.ErrUnknownKey) {
			what += "; it " + unverifiedKey(err, "endpoint.trusted_gateways")
		}
		printing.Lock()
		defer printing.Unlock()
		fmt.Fprintf(c.err, "agentgw mcp serve: tools/call %s: refused a decision notice or reply: %s\n", clean(tool), what)
	}))
	if err != nil {
		return c.usageErr("%v", err)
	}
	defer func() { _ = ep.Close() }() // before nc.Close
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return c.fail(err, "")
	}
	srv := mcpHTTPServer(ep)
	ctx, cancel := interruptible()
	defer cancel()
	fmt.Fprintf(c.err, "agentgw mcp serve: endpoint %s listening on %s\n", cfg.Endpoint.Resource, ln.Addr())
	err = serveUntilDone(ctx, srv, ln, ep)
	cancel()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return c.fail(err, "")
	}
	return exitOK
}

// mcpShutdownWait bounds how long a stopping endpoint waits for the
// answers of the requests in flight.
const mcpShutdownWait = 10 * time.Second

// serveUntilDone serves on ln until ctx ends or Serve fails, then shuts
// down and returns only once the requests in flight are answered (at
// most mcpShutdownWait): the listener closes, then ep (its running tasks
// end, and the calls waiting for the gateway are answered -32012
// no_reply, the call may still run, rather than cut off, so that a
// client does not call again a tool that may run), and Shutdown waits
// for those answers to be written. The caller closes the NATS
// connection after it returns. The error is Serve's.
func serveUntilDone(ctx context.Context, srv *http.Server, ln net.Listener, ep io.Closer) error {
	closed := make(chan struct{})
	srv.RegisterOnShutdown(func() { // run once the listener is closed
		defer close(closed)
		_ = ep.Close()
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, stop := context.WithTimeout(context.Background(), mcpShutdownWait)
		defer stop()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	cancel() // a Serve that failed shuts down too
	<-stopped
	<-closed
	return err
}

// mcpHTTPServer is the endpoint's HTTP server: a client must send its
// headers (at most mcpMaxHeaderBytes) within 10 s and its body (at most
// 1 MiB) within 30 s, and an idle keep-alive connection is closed after
// 2 minutes, so slow or idle clients cannot hold connections open. No
// WriteTimeout: a response waits for the gateway (up to approval_wait
// for a call held for approval) and may stream.
func mcpHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    mcpMaxHeaderBytes,
	}
}

// mcpMaxHeaderBytes bounds a request's headers, read before anyone is
// authenticated: room for a bearer token of the most the endpoint reads
// (16 KiB) and the usual headers, not net/http's 1 MiB.
const mcpMaxHeaderBytes = 64 << 10
