package devenv_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/internal/devenv"
)

// TestEnsureRevocationSections: a development directory whose
// revocations file was written before revocations named principals
// ("jtis: []" and "keys: []" only) gets "principals: []" added, so the
// gateway, which refuses a file without it, loads it with its entries
// kept. A file that lacks keys, or has a principals key with nothing
// after it (perhaps cut short), is left as it is.
func TestEnsureRevocationSections(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".agentgw")
	m, _, err := devenv.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	key, _ := kp.PublicKey()
	old := "jtis: [old-id]\nkeys: [" + key + "]\n"
	if err := os.WriteFile(m.Revocation, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := devenv.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(m.Config)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg)
	if err != nil {
		data, _ := os.ReadFile(m.Revocation)
		t.Fatalf("gateway.New with the revocations file Ensure left (%q): %v", data, err)
	}
	_ = gw.Close()

	for _, half := range []string{"jtis: []\n", "jtis: []\nkeys: []\nprincipals:\n"} {
		if err := os.WriteFile(m.Revocation, []byte(half), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := devenv.Ensure(dir); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(m.Revocation); string(data) != half {
			t.Errorf("a file cut short (%q) became %q; want it left as it was", half, data)
		}
	}
}
