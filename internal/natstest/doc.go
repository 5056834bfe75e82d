// Package natstest starts real nats-server instances for tests: an
// embedded server in-process with JetStream on file storage in a temp dir.
// It fakes nothing; it only owns the server's lifetime.
package natstest
