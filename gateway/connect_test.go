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

// TestConnectErrorsHideURLSecrets: a password or token in the server URL,
// in any form nats.go accepts (with or without a scheme, a token alone,
// in a list, not parsing), is in neither the error nor the URL it names.
func TestConnectErrorsHideURLSecrets(t *testing.T) {
	for _, tc := range []struct{ url, secret string }{
		{"alice:S3CRETPW@127.0.0.1:1", "S3CRETPW"},
		{"nats://alice:S3CRETPW@127.0.0.1:1", "S3CRETPW"},
		{"nats://alice:S3CR%zzETPW@127.0.0.1:1", "S3CR"},
		{"nats://T0KENVALUE@127.0.0.1:1", "T0KENVALUE"},
		{"T0KENVALUE@127.0.0.1:1", "T0KENVALUE"},
		{"nats://127.0.0.1:1, bob:S3CRETPW@127.0.0.1:2", "S3CRETPW"},
		{"tls://127.0.0.1:1,nats://T0KENVALUE@127.0.0.1:2", "T0KENVALUE"},
		{"nats://alice:S3CR,ETPW@127.0.0.1:1", "S3CR"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			nc, err := Connect(NATSConfig{URL: tc.url}, "test")
			if err == nil {
				nc.Close()
				t.Fatal("Connect succeeded")
			}
			if strings.Contains(err.Error(), tc.secret) || strings.Contains(err.Error(), "ETPW") {
				t.Errorf("Connect error prints the secret: %v", err)
			}
			if !strings.Contains(err.Error(), "127.0.0.1") {
				t.Errorf("Connect error = %v; want it to name the server", err)
			}
		})
	}
	for in, want := range map[string]string{
		"nats://[::1]:4222":             "nats://[::1]:4222",
		"nats://[::1]":                  "nats://[::1]",
		"localhost:4222, tls://h:4443/": "localhost:4222, tls://h:4443/",
		"u:p@h:1,nats://t@h:2":          "[redacted]@h:1,nats://[redacted]@h:2",
		"wss://user:pa@ss@h:443/ws":     "wss://[redacted]@h:443/ws",
		"nats://alice:pw,more@h:1":      "nats://[redacted],[redacted]@h:1",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q; want %q", in, got, want)
		}
	}
}
