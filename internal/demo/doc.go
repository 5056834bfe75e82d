// Package demo plays the scenario `agentgw run --demo` shows: one
// message per gate, valid and hostile, sent to a running gateway as real
// agents (and attackers) would, with each decision read back from the
// audit stream; then the second tenant's own traffic and its attempts on
// the first tenant's, each a typed denial or a refusal by the NATS
// server. It uses only public packages (client, envelope, identity)
// and the dev material of package devenv; it knows nothing of the
// gateway's internals.
package demo
