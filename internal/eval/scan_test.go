package eval_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/internal/eval"
	"github.com/agentgw/agentgw/internal/natstest"
)

// TestScanThatCannotReadFails: a run whose NATS user may not list the
// streams or read their messages cannot scan them for secrets, and says
// so (an error) rather than report no redaction failure, while a secret
// sits in a stream the scan is meant to read. A user who may read finds
// it.
func TestScanThatCannotReadFails(t *testing.T) {
	outs := []string{gateway.StreamCap, gateway.StreamApproval, gateway.StreamDenied, gateway.StreamAudit}
	var pub []string
	pub = append(pub, "agentgw.in.>")
	for _, s := range outs {
		pub = append(pub, "$JS.API.STREAM.INFO."+s, "$JS.API.CONSUMER.CREATE."+s+".>", "$JS.API.CONSUMER.MSG.NEXT."+s+".>", "$JS.API.CONSUMER.DELETE."+s+".>")
	}
	srv := natstest.Start(t, natstest.Options{Configure: func(o *server.Options) {
		o.Users = []*server.User{
			{Username: "admin", Password: "a"},
			{Username: "eval", Password: "e", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: pub},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
			}},
		}
	}})
	admin := natstest.Connect(t, srv, nats.UserInfo("admin", "a"))
	ctx := context.Background()
	js, _ := jetstream.New(admin)
	if err := gateway.EnsureStreams(ctx, js, gateway.StreamsConfig{Replicas: 1, MaxAge: time.Hour, IngressMaxAge: time.Hour, DuplicateWindow: time.Minute}, 1); err != nil {
		t.Fatal(err)
	}
	secret := "not-a-seed-but-a-secret-of-this-test"
	// A response or notice the gateway wrote with a secret in it.
	if _, err := js.Publish(ctx, "agentgw.reply.tenant_a.agent", []byte(`{"oops":"`+secret+`"}`)); err != nil {
		t.Fatal(err)
	}
	for _, user := range []struct {
		name, pass string
		reads      bool
	}{{"admin", "a", true}, {"eval", "e", false}} {
		nc := natstest.Connect(t, srv, nats.UserInfo(user.name, user.pass), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		tgt := &eval.Target{NC: nc, Audience: "aud", Secrets: []string{secret}}
		rep, err := eval.Run(ctx, tgt, nil, eval.Options{Timeout: time.Second})
		switch {
		case user.reads && (err != nil || rep.Totals.RedactionFailures == 0):
			t.Errorf("user %s, who may read: err %v, report %+v; want the secret in AGENTGW_REPLY found", user.name, err, rep)
		case !user.reads && err == nil:
			t.Errorf("user %s, who may not read: no error, redaction failures %d (%s); want the run to fail",
				user.name, rep.Totals.RedactionFailures, strings.Join(rep.Redaction, "; "))
		}
	}
}

// TestScanFindsPlaintextEscapedInJSONLog: the gateway logs JSON lines.
// A sealed plaintext logged as a string field or inside an error is
// JSON-escaped there ({\"amount_cents\":...}); the scan finds it all the
// same, and the run is rejected.
func TestScanFindsPlaintextEscapedInJSONLog(t *testing.T) {
	files := suite(t)[:1] // demo.yaml
	var plain string
	for _, c := range files[0].Cases {
		if c.Send.Sealed != nil {
			b, _ := json.Marshal(c.Send.Sealed)
			plain = string(b)
			break
		}
	}
	var line bytes.Buffer
	zl := zerolog.New(&line)
	zl.Warn().Err(errors.New("opened payload: " + plain)).Msg("leak")
	t.Logf("injected log line: %s", strings.TrimSpace(line.String()))
	ctx := context.Background()
	sb, err := eval.StartSandbox(ctx, files[0], eval.SandboxOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	tgt := sb.Target
	logs := tgt.Logs
	tgt.Logs = func() string { return logs() + line.String() }
	rep, err := eval.Run(ctx, &tgt, files, eval.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Totals.RedactionFailures == 0 || !rep.Rejected() {
		t.Fatalf("a sealed plaintext of the run in the gateway's log: redaction failures %d (%v), rejected %v; want it reported",
			rep.Totals.RedactionFailures, rep.Redaction, rep.Rejected())
	}
}
