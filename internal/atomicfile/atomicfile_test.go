package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteReplacesWithMode: an existing file of looser mode is replaced
// by one of the given mode and content, and no temporary file is left.
func TestWriteReplacesWithMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v; want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("content = %q; want new", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in the directory; want 1 (no temporary file left)", len(ents))
	}
	if err := Write(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Error("Write into a missing directory succeeded")
	}
}

// TestReplaceKeepsOwner: Replace gives the new file the owner and group
// of the one it replaces (root editing a root:agentgw 0640 file the
// service reads through its group); a new file is the writer's.
func TestReplaceKeepsOwner(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "revocations.yaml")
	if err := os.WriteFile(path, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		// Root can give the file any owner: a group the writer is not in.
		gid = 65532
		if err := os.Chown(path, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := Replace(path, []byte("new"), 0o640); err != nil {
		t.Fatalf("Replace = %v", err)
	}
	assertOwner(t, path, uid, gid, 0o640)
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Errorf("content = %q; want new", b)
	}

	fresh := filepath.Join(dir, "fresh")
	if err := Replace(fresh, []byte("x"), 0o600); err != nil {
		t.Fatalf("Replace(new file) = %v", err)
	}
	assertOwner(t, fresh, os.Getuid(), os.Getgid(), 0o600)
}

func assertOwner(t *testing.T, path string, uid, gid int, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	u, g, ok := owner(fi)
	if !ok || u != uid || g != gid || fi.Mode().Perm() != mode {
		t.Errorf("%s: uid %d gid %d mode %v; want uid %d gid %d mode %v", filepath.Base(path), u, g, fi.Mode().Perm(), uid, gid, mode)
	}
}
