package scaffold_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/internal/scaffold"
)

// TestRelativeDirInUnsafeWorkingDir: a relative Dir is made absolute
// with the working directory, and the absolute path is what
// nats-server.conf names. Its check is the one a Dir given whole gets: a
// working directory whose name holds a line break, a quote or a '#' is
// refused (ErrOptions, the absolute path named), and nothing is written.
func TestRelativeDirInUnsafeWorkingDir(t *testing.T) {
	for _, name := range []string{"w\ntrace: true\n#", "w\"x", "w#x", "w\\x"} {
		cwd := filepath.Join(t.TempDir(), name)
		must(t, os.Mkdir(cwd, 0o700))
		t.Chdir(cwd)
		_, err := scaffold.Write(oneNode("out"))
		if !errors.Is(err, scaffold.ErrOptions) || !strings.Contains(err.Error(), "made absolute") {
			t.Errorf("Write(Dir: out) in working directory %q = %v; want ErrOptions naming the absolute directory", name, err)
		}
		if _, err := os.Stat(filepath.Join(cwd, "out")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused Write in working directory %q created out", name)
		}
	}
	cwd := filepath.Join(t.TempDir(), "my deployments")
	must(t, os.Mkdir(cwd, 0o700))
	t.Chdir(cwd)
	d, err := scaffold.Write(oneNode("out"))
	must(t, err)
	got, err := filepath.EvalSymlinks(d.Dir)
	must(t, err)
	want, err := filepath.EvalSymlinks(filepath.Join(cwd, "out"))
	must(t, err)
	if got != want {
		t.Errorf("Deployment.Dir = %q; want %q", d.Dir, want)
	}
}
