package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// writeFile writes src to dir/name and returns the path.
// writeFile replaces a policy file atomically (write, then rename), as
// operators should: a watcher polling mid-write would otherwise load a
// truncated file, which may parse as a smaller, valid set.
func writeFile(t *testing.T, dir, name, src string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParse(t testing.TB, src string) *Set {
	t.Helper()
	s, err := Parse("test.cedar", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

// problems flattens a joined error.
func problems(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

func TestIDs(t *testing.T) {
	s := mustParse(t, `
permit (principal, action, resource);
@id("named") permit (principal, action, resource);
forbid (principal, action, resource) when { false };
`)
	got := strings.Join(s.IDs(), ",")
	if want := "test.cedar:0,named,test.cedar:2"; got != want {
		t.Errorf("IDs() = %s; want %s", got, want)
	}
}

func TestVersion(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.cedar", `permit (principal, action, resource);`)
	b := writeFile(t, dir, "b.cedar", `forbid (principal, action, resource) when { false };`)
	load := func() string {
		t.Helper()
		s, err := Load(a, b)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		return s.Version()
	}
	v1 := load()
	if !strings.HasPrefix(v1, "sha256:") || len(v1) != len("sha256:")+64 {
		t.Fatalf("Version() = %q; want sha256:<64 hex>", v1)
	}
	if v := load(); v != v1 {
		t.Errorf("reload of unchanged files: Version() = %s; want %s", v, v1)
	}
	if s, _ := Load(b, a); s.Version() != v1 {
		t.Errorf("argument order changed the version")
	}
	if d, _ := Digest(a, b); d != v1 {
		t.Errorf("Digest = %s; want %s", d, v1)
	}

	writeFile(t, dir, "b.cedar", `forbid (principal, action, resource) when { true };`)
	v2 := load()
	if v2 == v1 {
		t.Error("changing b.cedar did not change the version")
	}
	writeFile(t, dir, "a.cedar", `permit (principal, action, resource); `)
	if v3 := load(); v3 == v2 || v3 == v1 {
		t.Error("changing a.cedar did not change the version")
	}

	// The name is part of the version: it prefixes default ids.
	c := writeFile(t, dir, "c.cedar", `permit (principal, action, resource); `)
	s, err := Load(c, b)
	if err != nil {
		t.Fatal(err)
	}
	if s.Version() == load() {
		t.Error("renaming a file did not change the version")
	}
}

func TestLoadBrokenFile(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.cedar", `permit (principal, action, resource);`)
	broken := writeFile(t, dir, "broken.cedar", "permit (principal, action, resource);\n\npermit (principal, action, resource) when { 1 + };\n")
	s, err := Load(good, broken)
	if s != nil {
		t.Error("Load returned a set despite a broken file")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Load = %v; want ErrInvalid", err)
	}
	if !strings.Contains(err.Error(), "broken.cedar:3:") {
		t.Errorf("Load error %q does not name broken.cedar:3", err)
	}
	var p *Problem
	if !errors.As(err, &p) || p.File != "broken.cedar" || p.Line != 3 || p.Column == 0 {
		t.Errorf("Problem = %+v; want broken.cedar line 3 with a column", p)
	}

	if _, err := Load(good, filepath.Join(dir, "missing.cedar")); err == nil || !strings.Contains(err.Error(), "missing.cedar") {
		t.Errorf("Load(missing) = %v; want an error naming missing.cedar", err)
	}
	if _, err := Load(); !errors.Is(err, ErrNoFiles) {
		t.Errorf("Load() = %v; want ErrNoFiles", err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	dup := writeFile(t, sub, "good.cedar", `permit (principal, action, resource);`)
	if _, err := Load(good, dup); err == nil || !strings.Contains(err.Error(), "same base name") {
		t.Errorf("Load(two good.cedar) = %v; want a base-name clash", err)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // substrings, one per expected problem
	}{
		{"ok/plain", `permit (principal, action == Action::"read", resource is Target);`, nil},
		{"ok/guarded payload", `forbid (principal, action, resource) when { context has payload && context.payload.x > 1 };`, nil},
		{"ok/guard in if", `forbid (principal, action, resource) when { if context has payload then context.payload.x > 1 else false };`, nil},
		{"parse", `permit (principal, action, resource) when { 1 + };`, []string{"parse error"}},
		{"unguarded payload", `forbid (principal, action, resource) when { context.payload.x > 1 };`, []string{"without a `context has payload`"}},
		{"unguarded payload in permit", `permit (principal, action, resource) unless { context.payload.x > 1 };`, []string{"without a `context has payload`"}},
		{"unknown action", `permit (principal, action == Action::"toolcall", resource);`, []string{`Action::"toolcall"`}},
		{"action set", `permit (principal, action in [Action::"read", Action::"write"], resource);`, []string{`Action::"write"`}},
		{"wrong principal type", `permit (principal == User::"alice", action, resource);`, []string{"principal scope names entity type User"}},
		{"wrong resource type", `permit (principal, action, resource is Photo);`, []string{"resource scope names entity type Photo"}},
		{"approval value", `@approval("yes") permit (principal, action == Action::"tool_call", resource);`, []string{`@approval("yes")`}},
		{"approval on every action", `@approval("required") permit (principal, action, resource);`, []string{"takes in approve or respond"}},
		{"approval on respond", `@approval("required") permit (principal, action == Action::"respond", resource);`, []string{"takes in approve or respond"}},
		{"approval on approve", `@approval("required") permit (principal, action in [Action::"tool_call", Action::"approve"], resource);`, []string{"takes in approve or respond"}},
		{"approval on forbid", `@approval("required") forbid (principal, action, resource);`, []string{"forbid has no effect"}},
		{"duplicate id", "@id(\"x\") permit (principal, action, resource);\n@id(\"x\") permit (principal, action, resource);", []string{`duplicate policy id "x" (first at a.cedar:1:1)`}},
		{"reserved id", `@id("builtin:tenant_isolation") permit (principal, action, resource);`, []string{"builtin:"}},
		{"id charset", `@id("has space") permit (principal, action, resource);`, []string{`@id("has space")`}},
		{"id with a slash", `@id("kb/read") permit (principal, action, resource);`, []string{`@id("kb/read")`}},
		{"all problems joined", `@approval("maybe") permit (principal == User::"u", action == Action::"nope", resource) when { context.payload.a };`,
			[]string{"principal scope", `Action::"nope"`, `@approval("maybe")`, "context has payload"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "a.cedar", tt.src)
			err := Check(path)
			probs := problems(err)
			if len(probs) != len(tt.want) {
				t.Fatalf("Check = %v; want %d problem(s)", err, len(tt.want))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check = %v; want it to mention %q", err, w)
				}
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("Check = %v; want errors.Is ErrInvalid", err)
			}
		})
	}
}

func TestCheckJoinsAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.cedar", `permit (principal, action, resource) when { 1 + };`)
	b := writeFile(t, dir, "b.cedar", "@id(\"dup\") permit (principal, action, resource);\n")
	c := writeFile(t, dir, "c.cedar", "\n@id(\"dup\") permit (principal, action == Action::\"bogus\", resource);\n")
	err := Check(a, b, c, filepath.Join(dir, "missing.cedar"))
	// A missing file stops before parsing: reading is all-or-nothing.
	if len(problems(err)) != 1 || !strings.Contains(err.Error(), "missing.cedar") {
		t.Fatalf("Check with a missing file = %v; want only the read problem", err)
	}
	err = Check(a, b, c)
	for _, w := range []string{"a.cedar:1:", "c.cedar:2:1: duplicate policy id", `c.cedar:2:1: action scope names Action::"bogus"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Check = %v; want it to mention %q", err, w)
		}
	}
	if n := len(problems(err)); n != 3 {
		t.Errorf("Check reported %d problems; want 3:\n%v", n, err)
	}
}

func TestDemoPoliciesLoad(t *testing.T) {
	files, err := filepath.Glob("../../internal/devenv/material/policies/*.cedar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no demo policies: %v", err)
	}
	if err := Check(files...); err != nil {
		t.Fatalf("Check(demo policies) = %v", err)
	}
}

// TestCheckDefaultIDFromFileName: a policy without @id is named
// "<file>:<index>", which a decision token must be able to carry; a file
// name that makes an id it cannot is refused, not left to fail every
// decision the policy makes.
func TestCheckDefaultIDFromFileName(t *testing.T) {
	dir := t.TempDir()
	src := "permit (principal, action, resource);\n"
	if err := Check(writeFile(t, dir, "kb rules.cedar", src)); err == nil || !strings.Contains(err.Error(), "rename the file or give the policy an @id") {
		t.Errorf("kb rules.cedar: %v; want refused", err)
	}
	if err := Check(writeFile(t, dir, "kb-rules.cedar", src)); err != nil {
		t.Errorf("kb-rules.cedar: %v; want accepted", err)
	}
	if err := Check(writeFile(t, dir, "kb rules named.cedar", `@id("kb-rules") `+src)); err != nil {
		t.Errorf("kb rules named.cedar, with an @id: %v; want accepted", err)
	}
}
