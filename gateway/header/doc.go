// Package header names the NATS message headers of the agentgw protocol.
// Agents set the first group; only the gateway sets the rest. It is a
// vocabulary package: constants only, no behaviour.
package header
