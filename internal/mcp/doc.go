// Package mcp connects Model Context Protocol (MCP) clients and servers
// to agentgw. Both sides are SDK users of the gateway, never part of it:
//
//   - Bridge is the tool side: a capability consumer (client.Consumer)
//     for catalog targets mapped to upstream MCP servers (Streamable HTTP
//     or stdio). Only deliveries whose decision token, binding and
//     re-sealed payload verify reach its handler; it calls the upstream
//     tool with the verified arguments and answers once through the
//     gateway (client.Consumer.Respond), so the response passes the
//     response schema and redaction. Upstream credentials stay with the
//     bridge.
//   - Endpoint is the client side: an MCP server (stateless Streamable
//     HTTP) and OAuth 2.1 resource server. Each authenticated principal
//     acts through its own agent identity (an nkey and a curve key held
//     by the endpoint, a credential from the token exchange), so every
//     tools/call becomes a signed envelope with sealed arguments that
//     passes every gate; the result is the verified reply.
//
// Config is the file both read: which MCP tool is which catalog target
// and, for the bridge, which upstream serves it.
//
// Package mcp talks to the gateway through package client and the wire
// format only, and knows nothing of its ledger or streams. The one
// exception is read-only: when configured with the gateway's catalog and
// policy files, the endpoint evaluates the catalog gate and the
// authorize-stage policy decision itself to choose which tools tools/list
// shows a principal (a hint; the gateway decides every call). No error, log line or audit event of this
// package contains a bearer token, a credential, a seed or arguments.
package mcp
