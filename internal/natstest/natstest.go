package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options adjust the embedded server. The zero value is a single node
// with JetStream on a random port.
type Options struct {
	// StoreDir is the JetStream directory; empty means t.TempDir().
	StoreDir string
	// Configure, when set, may change the server options before start
	// (accounts, users, TLS).
	Configure func(*server.Options)
}

// Start runs an embedded nats-server with JetStream and stops it when the
// test ends.
func Start(t testing.TB, o Options) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  o.StoreDir,
		NoLog:     true,
		NoSigs:    true,
	}
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	if o.Configure != nil {
		o.Configure(opts)
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("natstest: server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect opens a client connection that the test closes at its end.
func Connect(t testing.TB, s *server.Server, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}
