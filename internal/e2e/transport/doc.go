// Package transport holds the end-to-end tests of the transport boundary
// (docs/security.md): TLS and mTLS, the NATS accounts and permissions of deploy/,
// and consumers rejecting what reaches a capability subject without the
// gateway.
//
// The tests start real nats-server instances from the repository's own
// deploy/ files (parsed by server.ProcessConfigFile, with test keys and
// certificates substituted for the placeholders), generate every
// certificate at test time with crypto/x509, and run the real gateway,
// which dials NATS itself with gateway.Connect. Nothing is faked.
//
// It has no non-test code and knows nothing of the gateway's internals.
package transport
