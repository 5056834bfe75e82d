//go:build unix

package devenv

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestEnsureRefusesOpenDir: the dev material (seeds, credentials,
// gateway.yaml, revocations.yaml) is not kept where another user could
// replace it: a directory, or one below it (tenant_b's credentials
// among them), writable by its group or others is refused before anything is written or read, as deploy init
// refuses one. One that is the user's alone is used.
func TestEnsureRefusesOpenDir(t *testing.T) {
	for _, open := range []string{"", "keys", filepath.Join("creds", TenantB)} {
		dir := filepath.Join(t.TempDir(), "dev")
		for _, d := range []string{"keys", filepath.Join("creds", TenantB)} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(filepath.Join(dir, open), 0o777); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Ensure(dir); !errors.Is(err, ErrOpenDir) {
			t.Errorf("%q open to others: Ensure = %v; want ErrOpenDir", filepath.Join("dev", open), err)
		}
		if _, err := os.Stat(filepath.Join(dir, "gateway.yaml")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%q open to others: gateway.yaml written (%v)", filepath.Join("dev", open), err)
		}
		if err := os.Chmod(filepath.Join(dir, open), 0o700); err != nil {
			t.Fatal(err)
		}
		if _, _, err := Ensure(dir); err != nil {
			t.Errorf("%q the user's alone: Ensure = %v", filepath.Join("dev", open), err)
		}
	}
}
