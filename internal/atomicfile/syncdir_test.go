//go:build !windows

// Directories are not synced on Windows (syncDir does nothing there).

package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// stubDirSync replaces syncDirFile for the test: each call records the
// directory synced and what path holds at that moment, and returns err.
func stubDirSync(t *testing.T, path string, err error) *[]string {
	t.Helper()
	var calls []string
	orig := syncDirFile
	syncDirFile = func(d *os.File) error {
		b, _ := os.ReadFile(path)
		calls = append(calls, d.Name()+" holding "+string(b))
		return err
	}
	t.Cleanup(func() { syncDirFile = orig })
	return &calls
}

// TestWriteSyncsDirectory: Write and Replace sync the file's directory
// once the file is renamed into it, so that the rename (a revocation)
// survives a power loss. The test sees the call, not the disk: each
// write syncs the directory of path, after path holds the new content.
func TestWriteSyncsDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "revocations.yaml")
	must(t, os.WriteFile(path, []byte("old"), 0o600))
	calls := stubDirSync(t, path, nil)
	must(t, Write(path, []byte("new"), 0o600))
	must(t, Replace(path, []byte("newer"), 0o600))
	want := []string{dir + " holding new", dir + " holding newer"}
	if strings.Join(*calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("directory syncs:\n%s\nwant (after each rename):\n%s", strings.Join(*calls, "\n"), strings.Join(want, "\n"))
	}
}

// TestWriteDirectorySyncErrors: a filesystem that cannot sync a
// directory (EINVAL, or an unsupported operation) is no failure: the
// file is written, as well as that filesystem allows. Any other error is
// returned, saying that the file is in place though perhaps not durably.
func TestWriteDirectorySyncErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, e := range []error{syscall.EINVAL, errors.ErrUnsupported} {
		stubDirSync(t, path, e)
		if err := Write(path, []byte("x"), 0o600); err != nil {
			t.Errorf("Write with a directory sync failing %v = %v; want nil", e, err)
		}
	}
	bad := errors.New("input/output error")
	stubDirSync(t, path, bad)
	err := Write(path, []byte("y"), 0o600)
	if !errors.Is(err, bad) || !strings.Contains(err.Error(), "power loss") {
		t.Errorf("Write with a directory sync failing = %v; want the error, saying what it risks", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "y" {
		t.Errorf("content = %q; want y (the rename is done before the directory sync)", b)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
