//go:build !windows

// Directories are not synced on Windows (syncDir does nothing there).

package identity

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

// TestWriteCredsSyncsDirectory: WriteCreds syncs the directory once the
// file is renamed into it, so that the new credential survives a power
// loss; a filesystem that cannot sync a directory (EINVAL, unsupported)
// is no failure, any other error is returned. The test sees the call,
// not the disk.
func TestWriteCredsSyncsDirectory(t *testing.T) {
	v := loadVector(t)
	tok, seed := Token(v.Credential.JWT), Seed(v.Keys.AgentSeed)
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.creds")
	orig := syncDirFile
	t.Cleanup(func() { syncDirFile = orig })
	var calls []string
	var fail error
	syncDirFile = func(d *os.File) error {
		got, kp, err := ReadCreds(path)
		held := "no credential"
		if err == nil && got == tok {
			kp.Wipe()
			held = "the credential"
		}
		calls = append(calls, d.Name()+" holding "+held)
		return fail
	}
	if err := WriteCreds(path, tok, seed); err != nil {
		t.Fatalf("WriteCreds = %v", err)
	}
	if want := []string{dir + " holding the credential"}; !slices.Equal(calls, want) {
		t.Errorf("directory syncs %q; want %q (once, after the rename)", calls, want)
	}
	for _, e := range []error{syscall.EINVAL, errors.ErrUnsupported} {
		fail = e
		if err := WriteCreds(path, tok, seed); err != nil {
			t.Errorf("WriteCreds with a directory sync failing %v = %v; want nil", e, err)
		}
	}
	fail = errors.New("input/output error")
	if err := WriteCreds(path, tok, seed); !errors.Is(err, fail) || !errors.Is(err, ErrCreds) {
		t.Errorf("WriteCreds with a directory sync failing = %v; want ErrCreds wrapping the error", err)
	}
}
