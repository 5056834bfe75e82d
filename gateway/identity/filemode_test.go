//go:build !windows

package identity

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestLooseMode(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode  fs.FileMode
		loose bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o604, true}, {0o644, true}, {0o660, true}} {
		path := filepath.Join(dir, tc.mode.String())
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		if m, loose := LooseMode(path); m != tc.mode || loose != tc.loose {
			t.Errorf("LooseMode(%04o) = %04o, %v; want %04o, %v", tc.mode, m, loose, tc.mode, tc.loose)
		}
	}
	if _, loose := LooseMode(filepath.Join(dir, "missing")); loose {
		t.Error("LooseMode(missing file) = loose; want false")
	}
}
