package gateway

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/internal/natstest"
)

// TestConnectErrorsHideAPastedSeed: a seed pasted into nats.nkey or
// nats.creds (where its file's path belongs) is not printed by the error
// Connect returns, neither in ours nor in the text of nats.go's, which
// repeats the path; errors.Is still sees the cause.
func TestConnectErrorsHideAPastedSeed(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seedBytes, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	seed := string(seedBytes)
	dir := t.TempDir()
	// A directory named by the seed opens, so nats.go itself reads it
	// at connect and fails with the path in its error.
	if err := os.Mkdir(filepath.Join(dir, "d"+seed), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cfg     NATSConfig
		setting string
		wantIs  error
	}{
		{"nkey/bare", NATSConfig{NKey: seed}, "nats.nkey", fs.ErrNotExist},
		{"nkey/resolved", NATSConfig{NKey: filepath.Join(dir, seed)}, "nats.nkey", fs.ErrNotExist},
		{"creds/bare", NATSConfig{Creds: seed}, "nats.creds", fs.ErrNotExist},
		{"creds/read-by-nats.go", NATSConfig{Creds: filepath.Join(dir, "d"+seed)}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.URL = srv.ClientURL()
			nc, err := Connect(tc.cfg, "test")
			if err == nil {
				nc.Close()
				t.Fatal("Connect succeeded")
			}
			if strings.Contains(err.Error(), seed) || strings.Contains(err.Error(), seed[:20]) {
				t.Errorf("Connect error prints the seed: %v", err)
			}
			if !strings.Contains(err.Error(), tc.setting) || !strings.Contains(err.Error(), "S…(58 characters)") {
				t.Errorf("Connect error = %v; want it to name %s and the path by identity.SafePath", err, tc.setting)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.wantIs)
			}
		})
	}
}
