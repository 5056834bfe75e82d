package layout

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/agentgw/agentgw"

// topLevel is the design card's top level plus what it allows beside it.
var topLevel = []string{
	".ci", ".git", ".gitignore", "Makefile", "README.md", "client", "cmd", "deploy", "docs",
	"gateway", "go.mod", "go.sum", "internal", "nats-server.conf", "schemas", "store",
	"subjects", "testdata",
}

// ignored are build and run outputs that .gitignore keeps out of the tree.
var ignored = []string{"bin", ".agentgw", "dist", "agentgw"}

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", dir, err)
	}
	return dir
}

func TestTopLevel(t *testing.T) {
	entries, err := os.ReadDir(root(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.Contains(topLevel, e.Name()) && !slices.Contains(ignored, e.Name()) {
			t.Errorf("top level holds %q, which the layout has no room for (docs/design.md §2)", e.Name())
		}
	}
}

type pkg struct {
	ImportPath string
	Imports    []string
}

// packages lists the module's packages with their imports, as go list
// sees them (the TypeScript SDK is ignored by go.mod).
func packages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports", "./...")
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var ps []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	if len(ps) < 20 {
		t.Fatalf("go list found %d packages; the module has more", len(ps))
	}
	return ps
}

// TestImportsPointDown: no package imports one above it (its parent or
// any ancestor), so a gate never depends on the pipeline that runs it,
// nor the journal on the ledger around it.
func TestImportsPointDown(t *testing.T) {
	for _, p := range packages(t) {
		rel, ok := strings.CutPrefix(p.ImportPath, module+"/")
		if !ok {
			continue
		}
		for _, imp := range p.Imports {
			irel, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			if strings.HasPrefix(rel, irel+"/") {
				t.Errorf("%s imports %s, a package above it", rel, irel)
			}
		}
	}
}

// TestGatesKnowNothingOfClients: the gates and the store are the
// gateway's; they never import an SDK, the CLI or internal tooling.
func TestGatesKnowNothingOfClients(t *testing.T) {
	for _, p := range packages(t) {
		rel, _ := strings.CutPrefix(p.ImportPath, module+"/")
		if !strings.HasPrefix(rel, "gateway") && !strings.HasPrefix(rel, "store") && !strings.HasPrefix(rel, "subjects") {
			continue
		}
		for _, imp := range p.Imports {
			irel, ok := strings.CutPrefix(imp, module+"/")
			if !ok {
				continue
			}
			for _, banned := range []string{"client", "cmd", "internal"} {
				if irel == banned || strings.HasPrefix(irel, banned+"/") {
					t.Errorf("%s imports %s", rel, irel)
				}
			}
		}
	}
}
