package demo

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/agentgw/agentgw/internal/natstest"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/internal/devenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}

// TestScenario runs what `make run` shows, on the dev material `agentgw
// run` writes, an embedded server from its nats-server.conf and the real
// gateway, and checks every decision.
func TestScenario(t *testing.T) {
	dir := t.TempDir()
	m, created, err := devenv.Ensure(dir)
	if err != nil || !created {
		t.Fatalf("Ensure = %v, created %v", err, created)
	}
	if _, again, err := devenv.Ensure(dir); err != nil || again {
		t.Fatalf("second Ensure rewrote the material (%v, %v)", again, err)
	}
	srv, err := devenv.StartServer(m.NATSConf, filepath.Join(dir, "js"), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	// The gateway connects as its own NATS user, as `agentgw run` does.
	nc, err := devenv.Connect(srv.ClientURL(), m.GatewayNATS, "agentgw-gateway")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Every permission the gateway uses must be granted: a refusal is
	// reported to the connection's error handler.
	var violations []string
	var vmu sync.Mutex
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(err.Error(), "Permissions Violation") {
			vmu.Lock()
			violations = append(violations, err.Error())
			vmu.Unlock()
		}
	})
	defer func() {
		vmu.Lock()
		defer vmu.Unlock()
		if len(violations) > 0 {
			t.Errorf("the gateway's NATS user was refused:\n%s", strings.Join(violations, "\n"))
		}
	}()
	cfg, err := gateway.LoadConfig(m.Config)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg, gateway.WithConn(nc))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	errc := make(chan error, 1)
	go func() { errc <- gw.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	<-gw.Ready()
	admin, err := devenv.Connect(srv.ClientURL(), m.AdminNATS, "agentgw-admin")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ajs, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	if err := devenv.Provision(ctx, ajs, m); err != nil {
		t.Fatal(err)
	}
	var rows []Row
	if err := Run(ctx, srv.ClientURL(), m, func(r Row) { rows = append(rows, r) }); err != nil {
		t.Fatal(err)
	}
	want := []struct{ decision, reason string }{
		{"allow", ""}, {"deny", "replay_detected"}, {"deny", "bad_signature"}, {"deny", "wrong_audience"},
		{"deny", "missing_scope"}, {"deny", "message_expired"}, {"deny", "tenant_mismatch"}, {"deny", "content_denied"},
		{"allow", ""}, {"reply", ""}, {"reply", ""}, {"deny", "missing_scope"}, {"approval", ""}, {"allow", ""}, {"deny", "approval_invalid"},
		// tenant_b: its own tool and policy, then its attempts on tenant_a.
		{"allow", ""}, {"deny", "content_denied"}, {"deny", "tenant_not_allowed"}, {"deny", "untrusted_issuer"}, {"deny", "tenant_mismatch"},
		{"refused", "permission violation"}, {"refused", "permission violation"},
	}
	for _, r := range rows {
		if strings.Contains(r.What, "jane.doe") {
			t.Errorf("row %d shows the sensitive field: %s", r.Step, r.What)
		}
	}
	if len(rows) != len(want) {
		t.Fatalf("demo printed %d rows; want %d", len(rows), len(want))
	}
	for i, w := range want {
		if rows[i].Decision != w.decision || rows[i].Reason != w.reason {
			t.Errorf("row %d %q: %s %s; want %s %s", i+1, rows[i].What, rows[i].Decision, rows[i].Reason, w.decision, w.reason)
		}
	}
	// tenant_b's traffic goes to its own subjects and is decided by its
	// own policy; its attempts on tenant_a land in its own denied
	// subjects, never in tenant_a's.
	where := map[int]string{
		16: "agentgw.cap.tenant_b.orders.lookup", 17: "agentgw.denied.tenant_b.content_denied",
		18: "agentgw.denied.tenant_b.tenant_not_allowed", 19: "agentgw.denied.tenant_b.untrusted_issuer",
		20: "agentgw.denied.tenant_b.tenant_mismatch",
	}
	for step, w := range where {
		if r := rows[step-1]; r.Where != w {
			t.Errorf("row %d %q went to %q; want %q", step, r.What, r.Where, w)
		}
	}
	if p := rows[16].Policy; len(p) != 1 || p[0] != "orders.eu_only" {
		t.Errorf("row 17 policy = %q; want tenant_b's orders.eu_only", p)
	}
}
