package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeployInitOpenDir: deploy init into a --dir that other users may
// write to exits 1 naming the directory and its mode, says nothing was
// written and how to go on, and writes nothing.
func TestDeployInitOpenDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "deploy")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, "", exitError, "deploy", "init", "--dir", dir, "--tenants", "acme", "--hosts", "nats.example.com")
	for _, want := range []string{"/deploy (mode 0777, writable by its group or others)", "nothing was written", "chmod go-w"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("deploy init into a 0777 --dir: stderr lacks %q\n%s", want, r)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "gateway")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("deploy init into a 0777 --dir wrote gateway/: %v", err)
	}
}
