// Package devenv owns the development environment behind `agentgw run`:
// it writes dev material on first start (two tenants, tenant_a and
// tenant_b, each with its issuer, agent, approver and consumer
// credentials; the operator's; the gateway's keys, the NATS user keys of
// the gateway and the admin, a catalog, Cedar policies and a gateway
// config). On every start it gives each tenant of the gateway config the
// material it lacks (a tenant added without issuers gets a dev issuer and
// its actors), renders the nats-server config from its template, the
// keys, the tenants and the catalog, and starts an in-process nats-server
// from it.
//
// The dev server is not open: it has the accounts, nkey users and
// permissions of deploy/accounts.conf (AGENTGW for the gateway and the
// admin; OPS for the operator; one account per tenant of the gateway
// config for its agents, approvers and consumers, by their agentgw keys),
// without TLS. Connect connects as one
// of those users; Provision creates the pull consumers tenant users bind
// to, once the gateway has made its streams.
//
// Everything it writes is for development only and says so. It knows
// nothing of the decision pipeline; package gateway runs on what it
// writes.
package devenv
