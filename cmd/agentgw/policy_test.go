package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// demoPolicies are the policies 'agentgw run' ships (they moved there
// from testdata/policies).
func demoPolicies(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "internal", "devenv", "material", "policies", "*.cedar"))
	if err != nil || len(files) == 0 {
		t.Fatalf("demo policies: %v (%d files)", err, len(files))
	}
	for i, f := range files {
		if files[i], err = filepath.Abs(f); err != nil {
			t.Fatal(err)
		}
	}
	return files
}

func TestPolicyCheckOK(t *testing.T) {
	files := demoPolicies(t)
	r := mustRun(t, t.TempDir(), exitOK, append([]string{"policy", "check"}, files...)...)
	if !strings.HasPrefix(r.stdout, "OK  policy version sha256:") {
		t.Errorf("policy check: %s", r)
	}
	for _, id := range []string{"base.same_tenant_kind", "base.high_risk_approval", "base.answers", "orders.eu_only", "refunds.max_amount", "refunds.support_only"} {
		if !strings.Contains(r.stdout, "  "+id+"\n") {
			t.Errorf("policy check does not list %s:\n%s", id, r.stdout)
		}
	}

	// Flags after the files work too, and --json reports the same set.
	r = mustRun(t, t.TempDir(), exitOK, append(append([]string{"policy", "check"}, files...), "--json")...)
	var got struct {
		OK       bool     `json:"ok"`
		Version  string   `json:"version"`
		Policies []string `json:"policies"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || !got.OK || len(got.Policies) != 6 || !strings.HasPrefix(got.Version, "sha256:") {
		t.Errorf("policy check --json = %+v, %v\n%s", got, err, r.stdout)
	}
}

func TestPolicyCheckProblems(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.cedar")
	if err := os.WriteFile(broken, []byte("@id(\"x\")\npermit (principal, action, resource) when { principal.tenant == ;\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		files []string
		want  []string
	}{
		{"broken", append(demoPolicies(t), broken), []string{"broken.cedar:3:"}},
		{"missing", []string{filepath.Join(dir, "absent.cedar")}, []string{"absent.cedar"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRun(t, dir, exitRejected, append([]string{"policy", "check"}, tc.files...)...)
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("policy check does not name %q:\n%s", w, r)
				}
			}
			if strings.Contains(r.stdout, "OK") {
				t.Errorf("policy check printed OK for a broken set:\n%s", r.stdout)
			}
		})
	}
	mustRun(t, dir, exitUsage, "policy", "check")
}

func TestPolicyCheckCatalog(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "catalog.yaml")
	bad := filepath.Join(dir, "bad-catalog.yaml")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(good, []byte("targets:\n  - {name: kb.search, kind: read, scope: kb:read, tenants: [tenant_a], plain: true}\n"), 0o600))
	must(os.WriteFile(bad, []byte("targets:\n  - {name: kb.search, kind: teleport, scope: kb:read, tenants: [tenant_a], plain: true}\n"), 0o600))
	files := demoPolicies(t)
	r := mustRun(t, dir, exitOK, append([]string{"policy", "check", "--catalog", good}, files...)...)
	if !strings.Contains(r.stdout, "OK  catalog sha256:") || !strings.Contains(r.stdout, "kb.search") {
		t.Errorf("policy check --catalog:\n%s", r)
	}
	r = mustRun(t, dir, exitRejected, append([]string{"policy", "check", "--catalog", bad}, files...)...)
	if !strings.Contains(r.stderr, "bad-catalog.yaml") {
		t.Errorf("a broken catalog is not named:\n%s", r)
	}
}

// TestPolicyTestRefusesTenantThatIsNotOne: --tenant goes into a subject
// filter; "*" or "a.b" would read every tenant's decisions, or none,
// while the report says it is one tenant's. Refused before connecting.
func TestPolicyTestRefusesTenantThatIsNotOne(t *testing.T) {
	files := demoPolicies(t)
	cat, err := filepath.Abs(filepath.Join("..", "..", "internal", "devenv", "material", "catalog.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"*", ">", "a.b", "Tenant_A"} {
		r := mustRun(t, t.TempDir(), exitUsage, append([]string{"policy", "test", "--catalog", cat, "--tenant", tenant}, files...)...)
		if !strings.Contains(r.stderr, "--tenant") {
			t.Errorf("--tenant %q: %s; want it refused", tenant, r)
		}
	}
}
