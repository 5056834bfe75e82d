// Package devenv owns the development environment behind `agentgw run`:
// it writes dev material on first start (tenant issuer, agent, approver,
// consumer and operator credentials, the gateway's keys, a catalog, Cedar
// policies, a gateway config and the nats-server config) and starts an
// in-process nats-server from that config. Everything it writes is for
// development only and says so. It knows nothing of the decision
// pipeline; package gateway runs on what it writes.
package devenv
