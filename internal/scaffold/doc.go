// Package scaffold owns `agentgw deploy init`: it renders a complete
// production deployment into a directory, so that nothing is edited by
// hand before the first start.
//
// What it writes (Deployment.Files lists every file with its mode;
// secrets are 0600):
//
//   - TLS for mutual TLS, made with crypto/x509: a client CA (or the
//     operator's existing one), a server certificate per host, client
//     certificates for the gateway, the admin, the operator, the system
//     user and every tenant user; for a cluster, a separate route CA and
//     a route certificate per host.
//   - Keys: a credential issuer per tenant, the gateway's signing and
//     curve keys, and per tenant an agent, an approver and a capability
//     consumer (the refunds tool, whose user binds that target's consumer
//     only), each an nkey user of its tenant's NATS account with an
//     agentgw credential (.creds) and a curve seed.
//   - The nats-server configuration of every host (one node, or a
//     three-node cluster with routes over mutual TLS) and accounts.conf:
//     the accounts, users and permissions of deploy/accounts.conf, for
//     the tenants asked for.
//   - gateway.yaml, an example catalog, Cedar policies and JSON schemas
//     the gateway loads, and the pre-created pull consumers as
//     <STREAM>.<durable>.json files.
//
// It never overwrites a file unless asked to (Options.Force), and checks
// every path before it writes any. It knows nothing of running what it
// writes: that is nats-server's and package gateway's job.
package scaffold
