package natstest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// Dial opens a connection as one NATS user.
type Dial func() (*nats.Conn, error)

// AccountConnectionLimit checks an account's max_connections from
// outside. dial connects a user of the account: limit connections are
// taken and the next is refused with
// nats.ErrMaxAccountConnectionsExceeded; each of others (users of other
// accounts) still connects while the account is full; and once one of
// the account's connections closes, a new one is taken again. Every
// connection it opens is closed at t's cleanup.
func AccountConnectionLimit(t testing.TB, limit int, dial Dial, others ...Dial) {
	t.Helper()
	open := func(d Dial) (*nats.Conn, error) {
		nc, err := d()
		if err == nil {
			t.Cleanup(nc.Close)
		}
		return nc, err
	}
	var held []*nats.Conn
	for i := range limit {
		nc, err := open(dial)
		if err != nil {
			t.Fatalf("connection %d of the %d the account allows: %v", i+1, limit, err)
		}
		held = append(held, nc)
	}
	if _, err := open(dial); !errors.Is(err, nats.ErrMaxAccountConnectionsExceeded) {
		t.Fatalf("connection %d of an account limited to %d: %v; want %v", limit+1, limit, err, nats.ErrMaxAccountConnectionsExceeded)
	}
	for i, d := range others {
		if _, err := open(d); err != nil {
			t.Errorf("another account's user %d, while this one is full: %v", i+1, err)
		}
	}
	held[0].Close()
	// The server counts the closed connection out asynchronously.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := open(dial)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after one of its connections closed, the account still refuses one: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SubscriptionLimit checks an account's max_subscriptions, which
// nats-server applies to each connection of the account: nc, holding no
// subscription, subscribes to limit subjects <prefix>.<n> without an
// error and the next is refused (nats.ErrMaxSubscriptionsExceeded,
// reported asynchronously to a, nc's error handler). The connection
// stays up.
func (a *AsyncErrs) SubscriptionLimit(t testing.TB, nc *nats.Conn, limit int, prefix string) {
	t.Helper()
	refused := func() bool {
		for _, err := range a.Errors() {
			if errors.Is(err, nats.ErrMaxSubscriptionsExceeded) {
				return true
			}
		}
		return false
	}
	for n := range limit {
		if _, err := nc.SubscribeSync(fmt.Sprintf("%s.%d", prefix, n)); err != nil {
			t.Fatalf("subscription %d of %d: %v", n+1, limit, err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if refused() {
		t.Fatalf("a subscription within the limit of %d was refused: %v", limit, a.Errors())
	}
	if _, err := nc.SubscribeSync(fmt.Sprintf("%s.%d", prefix, limit)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !refused() {
		if time.Now().After(deadline) {
			t.Fatalf("subscription %d of a connection limited to %d was not refused; async errors: %v", limit+1, limit, a.Errors())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := nc.Flush(); err != nil || nc.IsClosed() {
		t.Fatalf("the connection after a refused subscription: flush %v, closed %v; want it up", err, nc.IsClosed())
	}
}

// PayloadLimit checks an account's max_payload as nc, one of its
// connections, is told it: nc.MaxPayload() is limit, and publishing a
// message of limit+1 bytes fails with nats.ErrMaxPayload before it is
// sent.
func PayloadLimit(t testing.TB, nc *nats.Conn, limit int, subject string) {
	t.Helper()
	// The server sends the account's limit in an INFO after CONNECT;
	// the PONG of a flush comes after it.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := nc.MaxPayload(); got != int64(limit) {
		t.Fatalf("max payload of a connection of the account = %d; want %d", got, limit)
	}
	if err := nc.Publish(subject, make([]byte, limit+1)); !errors.Is(err, nats.ErrMaxPayload) {
		t.Fatalf("publish of %d bytes with max_payload %d = %v; want %v", limit+1, limit, err, nats.ErrMaxPayload)
	}
}
