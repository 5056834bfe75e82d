package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// TestCredsOutKeepsOtherNATSFiles: --out replaces an agentgw credential
// without --force, and nothing else: a NATS user .creds (nsc's, often
// the only copy of that user's seed) and a NATS account JWT parse as a
// .creds file or a JWT, yet are refused and left as they were unless
// --force.
func TestCredsOutKeepsOtherNATSFiles(t *testing.T) {
	k := newCredsKit(t)
	issue := func(want int, out string, extra ...string) result {
		args := append([]string{"creds", "issue", "--issuer", "issuer.nk", "--agent-seed", "agent.nk", "--tenant", "tenant_a",
			"--audience", "gw", "--xkey", k.xkey, "--out", out}, extra...)
		return mustRun(t, k.dir, want, args...)
	}

	acct, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	user, _ := nkeys.CreateUser()
	upub, _ := user.PublicKey()
	useed, _ := user.Seed()
	uc := jwt.NewUserClaims(upub)
	uc.Name = "admin"
	utok, err := uc.Encode(acct)
	if err != nil {
		t.Fatal(err)
	}
	userCreds, err := jwt.FormatUserConfig(utok, useed)
	if err != nil {
		t.Fatal(err)
	}
	op, _ := nkeys.CreateOperator()
	apub, _ := acct.PublicKey()
	atok, err := jwt.NewAccountClaims(apub).Encode(op)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, found string
		data        []byte
	}{
		{"admin.creds", "a NATS user .creds file", userCreds},
		{"account.jwt", "a NATS account JWT", []byte(atok + "\n")},
	} {
		path := filepath.Join(k.dir, c.name)
		if err := os.WriteFile(path, c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		r := issue(exitUsage, c.name)
		if !strings.Contains(r.stderr, c.found) || !strings.Contains(r.stderr, "--force") {
			t.Errorf("creds issue --out %s: stderr does not say what the file holds and how to replace it:\n%s", c.name, r.stderr)
		}
		if strings.Contains(r.stderr, string(useed)) || strings.Contains(r.stderr, "eyJ") {
			t.Errorf("creds issue --out %s printed the file's secrets:\n%s", c.name, r.stderr)
		}
		if after, err := os.ReadFile(path); err != nil || string(after) != string(c.data) {
			t.Errorf("creds issue --out %s without --force changed the file (%v); it now holds %s", c.name, err, classify(path))
		}
	}

	// An agentgw credential is renewed in place, with or without its seed.
	issue(exitOK, "agent.creds")
	path := filepath.Join(k.dir, "agent.creds")
	first, _ := os.ReadFile(path)
	issue(exitOK, "agent.creds", "--name", "renewed")
	if second, _ := os.ReadFile(path); string(second) == string(first) || classify(path).kind != kindCredential {
		t.Errorf("creds issue did not replace the agentgw credential agent.creds (now %s)", classify(path))
	}
	issue(exitOK, "agent.jwt", "--jwt-only")
	issue(exitOK, "agent.jwt", "--jwt-only")

	issue(exitOK, "admin.creds", "--force")
	if f := classify(filepath.Join(k.dir, "admin.creds")); f.kind != kindCredential {
		t.Errorf("--force did not write the credential: admin.creds holds %s", f)
	}
}

// TestCredsUnrevokeRemovesEveryMatch: an entry written twice (by hand, or
// by a merge of two files) is un-revoked only when both are gone; the
// output says how many entries went.
func TestCredsUnrevokeRemovesEveryMatch(t *testing.T) {
	k := newCredsKit(t)
	path := filepath.Join(k.dir, "revocations.yaml")
	if err := os.WriteFile(path, []byte("principals: []\njtis: [abc, def, abc]\nkeys: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, k.dir, exitOK, "creds", "unrevoke", "--file", "revocations.yaml", "--jti", "abc")
	if rc := k.revocations(t); !slices.Equal(rc.JTIs, []string{"def"}) {
		t.Errorf("jtis after unrevoke abc = %q; want [def]\n%s", rc.JTIs, r.stdout)
	}
	if !strings.Contains(r.stdout, "un-revoked jti abc (2 entries)") {
		t.Errorf("unrevoke does not say it removed 2 entries:\n%s", r.stdout)
	}
	r = mustRun(t, k.dir, exitOK, "creds", "unrevoke", "--file", "revocations.yaml", "--jti", "def")
	if !strings.Contains(r.stdout, "un-revoked jti def\n") {
		t.Errorf("unrevoke of a single entry:\n%s", r.stdout)
	}
}

// TestCredsRevokeThroughSymlink: a --file that is a symbolic link (to a
// file shared or managed elsewhere, which the gateway reads) has its
// target revised, and the link stays a link; the output names the file
// written. A link to nothing is refused, and nothing is created.
func TestCredsRevokeThroughSymlink(t *testing.T) {
	k := newCredsKit(t)
	shared := filepath.Join(k.dir, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(shared, "revocations.yaml")
	if err := os.WriteFile(target, []byte("principals: []\njtis: []\nkeys: []\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(k.dir, "revocations.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	isLink := func(what string) {
		t.Helper()
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("after %s, revocations.yaml is no longer a symbolic link (%v)", what, err)
		}
	}
	r := mustRun(t, k.dir, exitOK, "creds", "revoke", "--file", "revocations.yaml", "--key", k.agent, "--jti", "abc")
	isLink("revoke")
	if rc := k.revocations(t); !slices.Equal(rc.Keys, []string{k.agent}) || !slices.Equal(rc.JTIs, []string{"abc"}) {
		t.Errorf("the link's target after revoke = %+v; want the key and jti abc", rc)
	}
	if real, _ := filepath.EvalSymlinks(target); !strings.Contains(r.stdout, "wrote "+real) {
		t.Errorf("revoke does not name the file it wrote (%s):\n%s", target, r.stdout)
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the target's mode after revoke: %v, %v; want 0640", fi, err)
	}
	mustRun(t, k.dir, exitOK, "creds", "unrevoke", "--file", "revocations.yaml", "--key", k.agent)
	isLink("unrevoke")
	if rc := k.revocations(t); len(rc.Keys) != 0 || !slices.Equal(rc.JTIs, []string{"abc"}) {
		t.Errorf("the link's target after unrevoke = %+v; want jti abc alone", rc)
	}
	if ents, _ := os.ReadDir(shared); len(ents) != 1 {
		t.Errorf("%d files beside the target; want 1 (no temporary file left)", len(ents))
	}

	dangling := filepath.Join(k.dir, "dangling.yaml")
	missing := filepath.Join(shared, "missing.yaml")
	if err := os.Symlink(missing, dangling); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, k.dir, exitError, "creds", "revoke", "--file", "dangling.yaml", "--key", k.agent)
	if !strings.Contains(r.stderr, "symbolic link to ") || !strings.Contains(r.stderr, filepath.Join("shared", "missing.yaml")) {
		t.Errorf("revoke through a dangling link does not name its target %s:\n%s", missing, r.stderr)
	}
	if fi, err := os.Lstat(dangling); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the dangling link was replaced (%v)", err)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("revoke through a dangling link created its target")
	}
}
