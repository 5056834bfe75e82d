package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCredsRevokeUnwrittenSaysNothing: when the revocations file cannot
// be written, revoke and unrevoke exit 1 and say on stdout neither that
// anything was revoked nor that it was un-revoked; the file is as it
// was. The write fails for root too: the file's name is as long as a
// name may be, so the temporary file beside it (".<name>.tmp…") cannot
// be created, while the file itself reads.
func TestCredsRevokeUnwrittenSaysNothing(t *testing.T) {
	dir := t.TempDir()
	name := strings.Repeat("r", 250) + ".yaml"
	const before = "principals: []\njtis: [kept-id]\nkeys: []\n"
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"revoke", "--jti", "new-id", "--jti", "kept-id"},
		{"unrevoke", "--jti", "kept-id", "--jti", "absent-id"},
	} {
		r := mustRun(t, dir, exitError, append([]string{"creds", args[0], "--file", name}, args[1:]...)...)
		if strings.Contains(r.stdout, "revoked") || r.stdout != "" {
			t.Errorf("creds %s with the file unwritable: stdout %q; want nothing said revoked or un-revoked\n%s", args[0], r.stdout, r)
		}
		if !strings.Contains(r.stderr, "was not written") {
			t.Errorf("creds %s with the file unwritable: stderr %q; want it to say the file was not written", args[0], r.stderr)
		}
		if data, err := os.ReadFile(path); err != nil || string(data) != before {
			t.Errorf("creds %s with the file unwritable changed it: %q, %v", args[0], data, err)
		}
	}
	// Written, the same revision says what it did.
	short := filepath.Join(dir, "revocations.yaml")
	if err := os.WriteFile(short, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, dir, exitOK, "creds", "revoke", "--file", "revocations.yaml", "--jti", "new-id", "--jti", "kept-id")
	if want := "revoked jti new-id\njti kept-id was already revoked\nwrote revocations.yaml:"; !strings.HasPrefix(r.stdout, want) {
		t.Errorf("creds revoke: stdout %q; want it to start %q", r.stdout, want)
	}
}
