package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/agentgw/agentgw/internal/scaffold"
)

func deployCmd(args []string) int {
	return group("deploy", "Write the files of a production deployment: NATS servers, accounts, TLS, keys, gateway config.", []subcommand{
		{"init", "write keys, certificates, server and gateway config, consumers and an example catalog", deployInit},
	}, args)
}

func deployInit(args []string) int {
	c := newCmd("deploy init", "--dir DIR --tenants T1,T2 --hosts H1[,H2,H3] [flags]", `
Write everything a deployment needs into DIR, nothing to edit by hand:

  ca/                 the client CA (unless --ca-cert/--ca-key name yours)
                      and, for a cluster, the route CA
  nats/<host>/        per node: nats-server.conf, accounts.conf and tls/
                      (CA, server certificate; route certificate in a
                      cluster). One host is a single node; three are a
                      cluster with routes over mutual TLS.
  gateway/            gateway.yaml, its keys and client certificate, an
                      example catalog, Cedar policies, JSON schemas,
                      revocations.yaml
  consumers/          the pull consumers the admin pre-creates
                      (<STREAM>.<durable>.json)
  admin/, operator/   client certificates of the admin and the operator;
                      the operator's agentgw credential per tenant
  tenants/<tenant>/   the tenant's issuer seed; an agent, an approver and a
                      consumer: .creds, curve seed, client certificate

Secrets are written 0600 in 0700 directories. A directory that exists
already (--dir, or one below it) must be yours and writable by nobody
else (group and others may keep read and search): one open to others is
refused, naming it, and nothing is written. An existing file is never
overwritten unless --force is given; then every file is replaced (new
keys, new CA unless given one). Paths in nats-server.conf are absolute:
--nats-dir says where a node's directory lives on its host (default:
where it is written). gateway.yaml uses paths relative to itself.
deploy/README.md shows the steps that follow.`)
	dir := c.fs.String("dir", "", "`directory` to write into (created if missing)")
	var tenants, hosts, sans listFlag
	c.fs.Var(&tenants, "tenants", "tenant `names`, comma separated or repeated: one NATS account each")
	c.fs.Var(&hosts, "hosts", "NATS node `names` or addresses as clients dial them: one, or three for a cluster")
	c.fs.Var(&sans, "san", "extra DNS `name` or IP address in every server certificate (repeatable)")
	instances := c.fs.Int("instances", 1, "gateway `instances` sharing the ingress partitions (more than 1 writes scale_out)")
	audience := c.fs.String("audience", "agentgw", "the gateway's audience (credentials' aud)")
	caCert := c.fs.String("ca-cert", "", "existing client CA certificate `file` (PEM) to sign with")
	caKey := c.fs.String("ca-key", "", "its private key `file` (PEM); never copied")
	clientPort := c.fs.Int("client-port", 4222, "NATS client `port`")
	routePort := c.fs.Int("route-port", 6222, "NATS cluster route `port`")
	natsDir := c.fs.String("nats-dir", "", "absolute `directory` of a node's files on its host, e.g. /etc/nats (default: where written)")
	store := c.fs.String("nats-store", "", "absolute JetStream store `directory`, e.g. /var/lib/nats/jetstream (default: <nats-dir>/jetstream)")
	dataDir := c.fs.String("data-dir", "", "the gateway's data_dir, e.g. /var/lib/agentgw (default: data, next to gateway.yaml)")
	days := c.fs.Int("days", 365, "validity of the leaf certificates in `days` (a new CA: ten times that)")
	credsTTL := c.fs.Duration("creds-ttl", 12*time.Hour, "lifetime of the example credentials (at most 24h)")
	tenantConns := c.fs.Int("tenant-max-connections", scaffold.DefaultTenantMaxConnections, "`connections` each tenant account may hold in all (accounts.conf TENANT_LIMITS)")
	tenantSubs := c.fs.Int("tenant-max-subscriptions", scaffold.DefaultTenantMaxSubscriptions, "`subscriptions` each connection of a tenant account may hold")
	force := c.fs.Bool("force", false, "replace existing files")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	if code, ok := c.require("dir", "tenants", "hosts"); !ok {
		return code
	}
	if *tenantConns < 1 || *tenantSubs < 1 {
		// Options take 0 for the default; a flag of 0 asks for none.
		return c.usageErr("--tenant-max-connections and --tenant-max-subscriptions: want at least 1")
	}
	if *caKey != "" {
		c.warnLoose(*caKey) // the key every certificate of the deployment rests on
	}
	d, err := scaffold.Write(scaffold.Options{
		Dir: *dir, Tenants: tenants, Hosts: hosts, Instances: *instances, Audience: *audience,
		CACert: *caCert, CAKey: *caKey, ServerSANs: sans, ClientPort: *clientPort, RoutePort: *routePort,
		NATSDir: *natsDir, StoreDir: *store, DataDir: *dataDir,
		Validity: time.Duration(*days) * 24 * time.Hour, CredentialTTL: *credsTTL, Force: *force,
		TenantMaxConnections: *tenantConns, TenantMaxSubscriptions: *tenantSubs,
	})
	switch {
	case errors.Is(err, scaffold.ErrOptions):
		return c.usageErr("%v", err)
	case errors.Is(err, scaffold.ErrExists):
		return c.fail(err, "nothing was written: choose another --dir, or pass --force to replace every file (new keys and certificates)")
	case errors.Is(err, scaffold.ErrOpenDir):
		return c.fail(err, "nothing was written: choose another --dir, or make each directory named yours and writable by you alone (chown, chmod go-w) once nothing in it is someone else's")
	case errors.Is(err, scaffold.ErrCA):
		return c.fail(err, "--ca-cert and --ca-key must be a CA certificate and its own private key, PEM")
	case err != nil:
		return c.fail(err, "")
	}
	var secrets int
	for _, f := range d.Files {
		if f.Secret() {
			secrets++
		}
	}
	kind := "a single node (streams.replicas: 1)"
	if d.Cluster {
		kind = fmt.Sprintf("a %d-node cluster (streams.replicas: %d)", len(hosts), d.Replicas)
	}
	fmt.Fprintf(c.out, "wrote %d files (%d secrets, mode 0600) to %s for %s\n", len(d.Files), secrets, d.Dir, kind)
	fmt.Fprintf(c.out, "gateway signing key (consumers trust it): %s\n", d.GatewayKey)
	fmt.Fprintf(c.out, "gateway curve key (agents seal to it):    %s\n", d.GatewayXKey)
	fmt.Fprintf(c.out, "\nNext (deploy/README.md):\n")
	for _, h := range hosts {
		fmt.Fprintf(c.out, "  %s: nats-server -c %s/nats-server.conf\n", h, nodePath(*natsDir, d.Dir, h))
	}
	serve := "agentgw serve --config " + d.Dir + "/" + scaffold.GatewayConfig
	if *instances > 1 {
		serve += " --instance gwN"
	}
	fmt.Fprintf(c.out, "  gateway: %s\n", serve)
	fmt.Fprintf(c.out, "  admin:   create the consumers in %s/%s with the admin certificate\n", d.Dir, scaffold.ConsumersDir)
	if d.NewCA {
		fmt.Fprintf(c.out, "Keep %s/%s/ca-key.pem off the servers: whoever holds it can be the gateway.\n", d.Dir, scaffold.CADir)
	}
	return exitOK
}

// nodePath is where host's nats-server.conf lives on the host.
func nodePath(natsDir, dir, host string) string {
	if natsDir != "" {
		return natsDir
	}
	return dir + "/" + scaffold.NodeDir(host)
}
