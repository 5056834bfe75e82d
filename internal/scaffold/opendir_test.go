//go:build unix

package scaffold_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/internal/scaffold"
)

// TestOpenDirRefused: a directory Write would write into that exists
// and is writable by its group or others, or is another user's, is
// refused (ErrOpenDir naming it and its mode), Force or not, and nothing
// is written: another user could replace gateway.yaml, revocations.yaml
// or a seed there. --dir itself is checked as the directories below it
// are. A directory readable by its group or others but writable by its
// owner alone is written into, its mode kept.
func TestOpenDirRefused(t *testing.T) {
	mkdir := func(t *testing.T, p string, mode os.FileMode) {
		t.Helper()
		must(t, os.MkdirAll(p, 0o700))
		must(t, os.Chmod(p, mode)) // past the umask
	}
	refused := func(t *testing.T, err error, dir string, want ...string) {
		t.Helper()
		if !errors.Is(err, scaffold.ErrOpenDir) {
			t.Fatalf("Write = %v; want ErrOpenDir", err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Write = %v; want it to name %q", err, w)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, scaffold.CADir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused Write wrote %s: %v", scaffold.CADir, err)
		}
	}

	t.Run("dir itself", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "deploy")
		mkdir(t, dir, 0o777)
		_, err := scaffold.Write(oneNode(dir))
		refused(t, err, dir, dir+" (mode 0777, writable by its group or others)")
	})
	t.Run("directories below it", func(t *testing.T) {
		dir := t.TempDir()
		gw, tenant := filepath.Join(dir, scaffold.GatewayDir), filepath.Join(dir, scaffold.TenantDir("acme"))
		mkdir(t, gw, 0o777)
		mkdir(t, tenant, 0o770)
		_, err := scaffold.Write(oneNode(dir))
		refused(t, err, dir, gw+" (mode 0777", tenant+" (mode 0770")
		if strings.Contains(err.Error(), filepath.Dir(tenant)+" (") {
			t.Errorf("Write = %v; named %s, which is 0700", err, filepath.Dir(tenant))
		}
	})
	t.Run("force", func(t *testing.T) {
		dir := t.TempDir()
		_, err := scaffold.Write(oneNode(dir))
		must(t, err)
		before, err := os.ReadFile(filepath.Join(dir, scaffold.GatewayConfig))
		must(t, err)
		gw := filepath.Join(dir, scaffold.GatewayDir)
		must(t, os.Chmod(gw, 0o757))
		o := oneNode(dir)
		o.Force = true
		if _, err := scaffold.Write(o); !errors.Is(err, scaffold.ErrOpenDir) || !strings.Contains(err.Error(), gw+" (mode 0757") {
			t.Fatalf("Write with Force into an open %s = %v; want ErrOpenDir naming it", gw, err)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, scaffold.GatewayConfig)); string(after) != string(before) {
			t.Error("a refused Write with Force replaced gateway.yaml")
		}
	})
	t.Run("another user's", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "deploy")
		mkdir(t, dir, 0o700)
		uid := 65534 // nobody
		if os.Geteuid() == 0 {
			must(t, os.Chown(dir, uid, 65534))
		} else {
			// A user cannot give a directory away: one of root's is
			// another user's, and Write must not even try it.
			dir, uid = "/", 0
		}
		_, err := scaffold.Write(oneNode(dir))
		refused(t, err, dir, fmt.Sprintf("owned by uid %d, not by this user (uid %d)", uid, os.Geteuid()))
	})
	t.Run("readable by others", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "deploy")
		mkdir(t, dir, 0o750)
		gw := filepath.Join(dir, scaffold.GatewayDir)
		mkdir(t, gw, 0o755)
		_, err := scaffold.Write(oneNode(dir))
		must(t, err)
		for p, want := range map[string]os.FileMode{dir: 0o750, gw: 0o755, filepath.Join(dir, scaffold.CADir): 0o700} {
			fi, err := os.Stat(p)
			must(t, err)
			if fi.Mode().Perm() != want {
				t.Errorf("%s: mode %04o after Write; want %04o", p, fi.Mode().Perm(), want)
			}
		}
	})
}
