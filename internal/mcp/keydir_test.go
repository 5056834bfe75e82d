package mcp

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/gateway/identity"
)

// TestSaveKeysNeitherFollowsNorReplaces: a principal's key file is
// written whole or not at all, mode 0600, and a name that exists (a
// symlink planted in key_dir, dangling or not) is neither followed nor
// replaced.
func TestSaveKeysNeitherFollowsNorReplaces(t *testing.T) {
	dir := t.TempDir()
	root, err := openKeyDir(dir)
	must(t, err)
	t.Cleanup(func() { _ = root.Close() })
	e := &Endpoint{ep: EndpointConfig{KeyDir: dir}, keyRoot: root}
	newPrincipal := func(id string) *principal {
		key, err := identity.NewAgent()
		must(t, err)
		curve, err := identity.NewCurve()
		must(t, err)
		return &principal{id: id, key: key, curve: curve}
	}
	p := newPrincipal("https://idp.example.com#alice")
	must(t, e.saveKeys(p))
	fi, err := os.Stat(e.keyPath(p.id))
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v; want 0600", fi.Mode().Perm())
	}
	elsewhere := filepath.Join(t.TempDir(), "planted")
	q := newPrincipal("https://idp.example.com#bob")
	must(t, os.Symlink(elsewhere, e.keyPath(q.id)))
	_ = e.saveKeys(q)
	if _, err := os.Stat(elsewhere); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a seed was written through a symlink planted in key_dir: %v", err)
	}
	left, err := os.ReadDir(dir)
	must(t, err)
	for _, f := range left {
		if strings.HasPrefix(f.Name(), ".principal-") {
			t.Errorf("temporary file %s left in key_dir", f.Name())
		}
	}
}
