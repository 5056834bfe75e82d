package natstest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ServerLog is a nats-server logger (server.Logger) that keeps warnings
// and errors: the server logs permission violations there with the
// client's connection name. Install it with Server.SetLoggerV2.
type ServerLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *ServerLog) add(format string, v ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf(format, v...))
	l.mu.Unlock()
}

// Noticef, Debugf and Tracef drop the line.
func (l *ServerLog) Noticef(string, ...any) {}

// Debugf drops the line.
func (l *ServerLog) Debugf(string, ...any) {}

// Tracef drops the line.
func (l *ServerLog) Tracef(string, ...any) {}

// Warnf keeps the line.
func (l *ServerLog) Warnf(f string, v ...any) { l.add(f, v...) }

// Errorf keeps the line.
func (l *ServerLog) Errorf(f string, v ...any) { l.add(f, v...) }

// Fatalf keeps the line.
func (l *ServerLog) Fatalf(f string, v ...any) { l.add(f, v...) }

// Violations returns the logged permission violations of connections
// whose log lines contain name.
func (l *ServerLog) Violations(name string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, s := range l.lines {
		if strings.Contains(s, "Violation") && strings.Contains(s, name) {
			out = append(out, s)
		}
	}
	return out
}

// AsyncErrs collects a connection's asynchronous errors (permission
// violations arrive this way). Install Handler with
// nats.ErrorHandler.
type AsyncErrs struct {
	mu   sync.Mutex
	errs []error
}

// Handler records err.
func (a *AsyncErrs) Handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	a.mu.Lock()
	a.errs = append(a.errs, err)
	a.mu.Unlock()
}

// Violation waits up to 5 s for the server's permissions violation for op
// ("publish" or "subscription") to subject, and fails t without one. A
// subject ending in "." matches any subject it prefixes.
func (a *AsyncErrs) Violation(t testing.TB, op, subject string) {
	t.Helper()
	want := strings.ToLower(fmt.Sprintf("permissions violation for %s to %q", op, subject))
	if strings.HasSuffix(subject, ".") {
		want = strings.TrimSuffix(want, `"`)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		for _, err := range a.errs {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(strings.ToLower(err.Error()), want) {
				a.mu.Unlock()
				return
			}
		}
		a.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	t.Errorf("no permissions violation for %s to %q; async errors: %v", op, subject, a.errs)
}

// Errors returns the errors recorded so far.
func (a *AsyncErrs) Errors() []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]error(nil), a.errs...)
}

// RefusedJetStreamPublish publishes {} to each subject through js and
// fails t if JetStream acknowledges one or the server reports no
// publish violation for it.
func (a *AsyncErrs) RefusedJetStreamPublish(t testing.TB, js jetstream.JetStream, subjects ...string) {
	t.Helper()
	for _, subj := range subjects {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		m := nats.NewMsg(subj)
		m.Data = []byte(`{}`)
		ack, err := js.PublishMsg(ctx, m)
		cancel()
		if err == nil {
			t.Errorf("JetStream publish to %s acknowledged (%+v); want no ack", subj, ack)
		}
		a.Violation(t, "publish", subj)
	}
}

// RefusedPublish publishes {} to each subject on nc and fails t unless
// the server reports a publish violation for it.
func (a *AsyncErrs) RefusedPublish(t testing.TB, nc *nats.Conn, subjects ...string) {
	t.Helper()
	for _, subj := range subjects {
		if err := nc.Publish(subj, []byte(`{}`)); err != nil {
			t.Fatalf("publish %s: %v", subj, err)
		}
		a.Violation(t, "publish", subj)
	}
}

// RefusedSubscribe subscribes nc to each subject and fails t unless the
// server reports a subscription violation and nothing is delivered.
func (a *AsyncErrs) RefusedSubscribe(t testing.TB, nc *nats.Conn, subjects ...string) {
	t.Helper()
	for _, subj := range subjects {
		sub, err := nc.SubscribeSync(subj)
		if err != nil {
			t.Fatalf("subscribe %s: %v", subj, err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatalf("flush: %v", err)
		}
		a.Violation(t, "subscription", subj)
		if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
			t.Errorf("subscription to %s delivered %s", subj, m.Subject)
		}
	}
}
