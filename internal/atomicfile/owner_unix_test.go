//go:build unix

package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestReplaceRefusesOwnerItCannotKeep: when the replacement cannot be
// given the replaced file's owner, Replace fails with ErrOwner and
// leaves the file untouched, instead of leaving one its reader cannot
// open. Root may give a file any owner, so the test binary runs itself
// as uid/gid 65532 against a root-owned file in a directory that user
// may write.
func TestReplaceRefusesOwnerItCannotKeep(t *testing.T) {
	if path := os.Getenv("ATOMICFILE_REPLACE_CHILD"); path != "" {
		err := Replace(path, []byte("new"), 0o666)
		if !errors.Is(err, ErrOwner) {
			fmt.Printf("Replace as uid %d = %v; want ErrOwner\n", os.Getuid(), err)
			os.Exit(3)
		}
		fmt.Print(err)
		os.Exit(0)
	}
	if os.Getuid() != 0 {
		t.Skip("needs root to create a file of another owner; TestReplaceKeepsOwner covers the unchanged owner")
	}
	dir, err := os.MkdirTemp("", "atomicfile")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "test.bin")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil { // past the umask
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestReplaceRefusesOwnerItCannotKeep$")
	cmd.Env = append(os.Environ(), "ATOMICFILE_REPLACE_CHILD="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "uid 0 gid 0") {
		t.Errorf("error %q does not name the owner it could not keep", out)
	}
	assertOwner(t, path, 0, 0, 0o666)
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("content = %q; want old (untouched)", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d files in the directory; want 2 (no temporary file left)", len(ents))
	}
}
