package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/internal/natstest"
)

// limitedServer runs a server whose only account, GW, has the given
// jetstream setting ("enabled", a limits block, or "" for none).
func limitedServer(t *testing.T, jetstreamSetting string) *nats.Conn {
	t.Helper()
	dir := t.TempDir()
	js := ""
	if jetstreamSetting != "" {
		js = "jetstream: " + jetstreamSetting
	}
	conf := filepath.Join(dir, "nats.conf")
	src := fmt.Sprintf("jetstream { store_dir: %q }\naccounts { GW { %s\n users: [{user: gw, password: gw}] } }\n", filepath.Join(dir, "js"), js)
	if err := os.WriteFile(conf, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	o.Host, o.Port, o.NoLog, o.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo("gw", "gw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestSetupHint: the errors a real server answers the gateway's stream
// setup with get a hint that names what to change.
func TestSetupHint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	streams := DefaultConfig().Streams
	plain := func(t *testing.T) jetstream.JetStream {
		js, err := jetstream.New(natstest.Connect(t, natstest.Start(t, natstest.Options{})))
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T) error
		want string
	}{
		{"replicas/single-node", func(t *testing.T) error {
			s := streams
			s.Replicas = 3
			return EnsureStreams(ctx, plain(t), s, 1)
		}, "set streams.replicas: 1 in gateway.yaml"},
		{"account/max-streams", func(t *testing.T) error {
			js, _ := jetstream.New(limitedServer(t, "{ max_streams: 2 }"))
			return EnsureStreams(ctx, js, streams, 1)
		}, "raise max_streams"},
		{"account/no-jetstream", func(t *testing.T) error {
			js, _ := jetstream.New(limitedServer(t, ""))
			return EnsureStreams(ctx, js, streams, 1)
		}, "add `jetstream: enabled` to that account"},
		{"server/no-jetstream", func(t *testing.T) error {
			srv := natstest.Start(t, natstest.Options{Configure: func(o *server.Options) { o.JetStream = false }})
			js, _ := jetstream.New(natstest.Connect(t, srv))
			return EnsureStreams(ctx, js, streams, 1)
		}, "add a jetstream block"},
		{"stream/subject-overlap", func(t *testing.T) error {
			js := plain(t)
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "MINE", Subjects: []string{"agentgw.cap.>"}}); err != nil {
				t.Fatal(err)
			}
			return EnsureStreams(ctx, js, streams, 1)
		}, "already takes some agentgw.> subjects"},
		{"stream/storage-change", func(t *testing.T) error {
			js := plain(t)
			sc := StreamConfigs(streams, 1)[0]
			sc.Storage = jetstream.MemoryStorage
			if _, err := js.CreateStream(ctx, sc); err != nil {
				t.Fatal(err)
			}
			return EnsureStreams(ctx, js, streams, 1)
		}, "cannot change storage type"},
		{"stream/name-in-use", func(t *testing.T) error {
			js := plain(t)
			sc := StreamConfigs(streams, 1)[1]
			other := sc
			other.Description = "made by hand"
			if _, err := js.CreateStream(ctx, other); err != nil {
				t.Fatal(err)
			}
			_, err := js.CreateStream(ctx, sc)
			return err
		}, "already exists with settings the gateway cannot change"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(t)
			if err == nil {
				t.Fatal("setup succeeded; want the server's refusal")
			}
			if hint := SetupHint(fmt.Errorf("gateway: wrapped: %w", err), "gateway.yaml"); !strings.Contains(hint, tc.want) {
				t.Fatalf("SetupHint(%v) = %q; want it to contain %q", err, hint, tc.want)
			}
		})
	}
	t.Run("connection/refused", func(t *testing.T) {
		_, err := nats.Connect("nats://127.0.0.1:1", nats.Timeout(time.Second))
		if err == nil {
			t.Fatal("connected to port 1")
		}
		if hint := SetupHint(err, "gateway.yaml"); hint != "" {
			t.Fatalf("SetupHint(%v) = %q; want none (no JetStream code)", err, hint)
		}
	})
}
