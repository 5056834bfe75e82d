package natstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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

// Lines returns every kept line: what a test prints when a server
// failed to start.
func (l *ServerLog) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

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

// Republish tries every way a JetStream reader can make the server
// write what it may read onto subjects of its own choosing: for each
// API prefix (such as "$JS.API" or an imported "agentgw.js"), each
// stream and each target subject it
//
//   - creates a push consumer whose deliver subject is the target;
//   - creates a pull consumer and asks for its next messages with the
//     target as the reply subject;
//   - asks for stream info, a message (message get and direct get) with
//     the target as the reply subject;
//
// and it sends a request to each of services with each target as the
// reply subject. It returns the consumers the server created, as
// "stream/name -> deliver subject" (a pull consumer: "-> pull"). The
// caller checks that none was created and that nothing reached the
// targets.
func Republish(t testing.TB, nc *nats.Conn, prefixes, streams, targets, services []string) []string {
	t.Helper()
	var created []string
	create := func(prefix, stream, name, deliver string) bool {
		cfg := map[string]any{"durable_name": name, "ack_policy": "none", "deliver_policy": "all"}
		if deliver != "" {
			cfg["deliver_subject"] = deliver
		}
		req, _ := json.Marshal(map[string]any{"stream_name": stream, "config": cfg})
		resp, err := nc.Request(prefix+".CONSUMER.CREATE."+stream+"."+name, req, 500*time.Millisecond)
		if err != nil {
			return false
		}
		var r struct {
			Error  *struct{ Description string } `json:"error"`
			Config *struct{}                     `json:"config"`
		}
		if json.Unmarshal(resp.Data, &r) != nil || r.Error != nil || r.Config == nil {
			return false
		}
		what := "pull"
		if deliver != "" {
			what = deliver
		}
		created = append(created, fmt.Sprintf("%s/%s -> %s", stream, name, what))
		return true
	}
	publish := func(subject, reply string, data []byte) {
		if err := nc.PublishMsg(&nats.Msg{Subject: subject, Reply: reply, Data: data}); err != nil {
			t.Fatalf("publish %s: %v", subject, err)
		}
	}
	for i, prefix := range prefixes {
		for _, stream := range streams {
			pull := fmt.Sprintf("republish-pull-%d", i)
			pulled := create(prefix, stream, pull, "")
			for j, target := range targets {
				create(prefix, stream, fmt.Sprintf("republish-push-%d-%d", i, j), target)
				if pulled {
					publish(prefix+".CONSUMER.MSG.NEXT."+stream+"."+pull, target, []byte(`{"batch":16}`))
				}
				publish(prefix+".STREAM.INFO."+stream, target, nil)
				publish(prefix+".STREAM.MSG.GET."+stream, target, []byte(`{"seq":1}`))
				publish(prefix+".STREAM.MSG.GET."+stream, target, []byte(`{"next_by_subj":">"}`))
				publish(prefix+".DIRECT.GET."+stream, target, []byte(`{"seq":1}`))
				publish(prefix+".DIRECT.GET."+stream, target, []byte(`{"next_by_subj":">","batch":16}`))
			}
		}
	}
	for _, svc := range services {
		for _, target := range targets {
			publish(svc, target, []byte(`{}`))
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	return created
}
