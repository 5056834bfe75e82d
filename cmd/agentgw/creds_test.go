package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
)

// credsKit is an issuer, an agent and its curve key made with the CLI.
type credsKit struct {
	dir                   string
	issuer, agent, xkey   string // public keys
	issuerSeed, agentSeed string
}

func newCredsKit(t *testing.T) *credsKit {
	t.Helper()
	k := &credsKit{dir: t.TempDir()}
	pub := func(typ, file string) string {
		return strings.TrimSpace(mustRun(t, k.dir, exitOK, "keys", "new", "--type", typ, "--out", file).stdout)
	}
	k.issuer, k.agent, k.xkey = pub("issuer", "issuer.nk"), pub("agent", "agent.nk"), pub("curve", "curve.nk")
	k.issuerSeed, k.agentSeed = k.seed(t, "issuer.nk"), k.seed(t, "agent.nk")
	return k
}

func (k *credsKit) seed(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k.dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// assertNoSecrets fails if out holds a JWT or one of the seeds.
func (k *credsKit) assertNoSecrets(t *testing.T, what, out string) {
	t.Helper()
	if strings.Contains(out, "eyJ") {
		t.Errorf("%s printed a JWT:\n%s", what, out)
	}
	for _, s := range []string{k.issuerSeed, k.agentSeed} {
		if strings.Contains(out, s) {
			t.Errorf("%s printed a seed", what)
		}
	}
}

func TestCredsIssueShowRoundTrip(t *testing.T) {
	k := newCredsKit(t)
	r := mustRun(t, k.dir, exitOK, "creds", "issue", "--issuer", "issuer.nk", "--agent-seed", "agent.nk",
		"--tenant", "tenant_a", "--audience", "billing-gateway", "--scopes", "refund:draft,approve:refunds.*",
		"--xkey", k.xkey, "--service", "support-bot", "--ttl", "30m", "--out", "agent.creds")
	k.assertNoSecrets(t, "creds issue", r.stdout+r.stderr)

	path := filepath.Join(k.dir, "agent.creds")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("agent.creds: %v, mode %v; want mode 0600", err, fi.Mode().Perm())
	}
	tok, kp, err := identity.ReadCreds(path)
	if err != nil {
		t.Fatalf("ReadCreds: %v", err)
	}
	kp.Wipe()
	jti := tok.JTI()
	if !strings.Contains(r.stdout, jti) || !strings.Contains(r.stdout, k.agent) {
		t.Errorf("creds issue does not print the jti %s and subject:\n%s", jti, r)
	}
	// The gateway's verifier accepts what was issued.
	v, err := identity.NewVerifier(identity.VerifierConfig{
		Audience: "billing-gateway", Trust: map[string][]string{"tenant_a": {k.issuer}},
		MaxLifetime: identity.DefaultMaxLifetime,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := v.Verify(tok.Reveal(), time.Now())
	if err != nil {
		t.Fatalf("Verify(issued credential) = %v; want nil", err)
	}

	r = mustRun(t, k.dir, exitOK, "creds", "show", "agent.creds")
	k.assertNoSecrets(t, "creds show", r.stdout+r.stderr)
	for _, want := range []string{jti, k.issuer, k.agent, k.xkey, "tenant_a", "billing-gateway", "support-bot",
		"refund:draft,approve:refunds.*", "signature   valid", "matches subject", stamp(cred.Expires)} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("creds show lacks %q:\n%s", want, r.stdout)
		}
	}

	r = mustRun(t, k.dir, exitOK, "creds", "show", "--json", "agent.creds")
	k.assertNoSecrets(t, "creds show --json", r.stdout+r.stderr)
	var got credView
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("creds show --json: %v\n%s", err, r.stdout)
	}
	if got.JTI != jti || got.Subject != cred.Subject || got.Tenant != cred.Tenant || got.XKey != cred.XKey ||
		!slices.Equal(got.Scopes, cred.Scopes) || !got.Expires.Equal(cred.Expires) || got.Signature != "valid" {
		t.Errorf("creds show --json = %+v; want the verified claims %+v", got, cred)
	}
}

func TestCredsIssueJWTOnly(t *testing.T) {
	k := newCredsKit(t)
	args := []string{"creds", "issue", "--issuer", "issuer.nk", "--agent-pub", k.agent, "--tenant", "tenant_a",
		"--audience", "gw", "--xkey", k.xkey, "--out", "agent.jwt"}
	r := mustRun(t, k.dir, exitUsage, args...)
	if !strings.Contains(r.stderr, "--jwt-only") {
		t.Errorf("--agent-pub without --jwt-only does not say what to do: %s", r)
	}
	r = mustRun(t, k.dir, exitOK, append(args, "--jwt-only")...)
	k.assertNoSecrets(t, "creds issue --jwt-only", r.stdout+r.stderr)
	r = mustRun(t, k.dir, exitOK, "creds", "show", "agent.jwt")
	k.assertNoSecrets(t, "creds show", r.stdout+r.stderr)
	if !strings.Contains(r.stdout, "absent") || !strings.Contains(r.stdout, k.agent) {
		t.Errorf("creds show of a JWT-only file:\n%s", r.stdout)
	}

	// A forged signature is a verification failure: exit 3.
	path := filepath.Join(k.dir, "agent.jwt")
	data, _ := os.ReadFile(path)
	tok := []byte(strings.TrimSpace(string(data)))
	i := len(tok) - 20 // inside the signature, clear of its last, padded character
	if tok[i] == 'A' {
		tok[i] = 'B'
	} else {
		tok[i] = 'A'
	}
	if err := os.WriteFile(path, tok, 0o600); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, k.dir, exitRejected, "creds", "show", "agent.jwt")
	if !strings.Contains(r.stdout, "invalid") {
		t.Errorf("forged credential not reported invalid:\n%s", r)
	}
}

func TestCredsIssueUsage(t *testing.T) {
	k := newCredsKit(t)
	base := []string{"creds", "issue", "--issuer", "issuer.nk", "--tenant", "tenant_a", "--audience", "gw", "--xkey", k.xkey, "--out", "a.creds"}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no-agent", base, exitUsage, "exactly one of --agent-seed and --agent-pub"},
		{"bad-tenant", []string{"creds", "issue", "--issuer", "issuer.nk", "--agent-seed", "agent.nk", "--tenant", "Tenant A", "--audience", "gw", "--xkey", k.xkey, "--out", "a.creds"}, exitUsage, "tenant missing or not"},
		{"agent-as-issuer", []string{"creds", "issue", "--issuer", "agent.nk", "--agent-seed", "agent.nk", "--tenant", "t", "--audience", "gw", "--xkey", k.xkey, "--out", "a.creds"}, exitError, "--issuer must be an issuer seed file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRun(t, k.dir, tc.code, tc.args...)
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%s\nwant %q on stderr", r, tc.want)
			}
			k.assertNoSecrets(t, "creds issue", r.stdout+r.stderr)
			if _, err := os.Stat(filepath.Join(k.dir, "a.creds")); err == nil {
				t.Error("a failed issue wrote a.creds")
			}
		})
	}
}

func TestCredsRevoke(t *testing.T) {
	k := newCredsKit(t)
	mustRun(t, k.dir, exitOK, "creds", "issue", "--issuer", "issuer.nk", "--agent-seed", "agent.nk",
		"--tenant", "tenant_a", "--audience", "gw", "--xkey", k.xkey, "--out", "agent.creds")
	tok, kp, err := identity.ReadCreds(filepath.Join(k.dir, "agent.creds"))
	if err != nil {
		t.Fatal(err)
	}
	kp.Wipe()

	if r := mustRun(t, k.dir, exitOK, "creds", "revoke", "--file", "revocations.yaml", "--credential", "agent.creds", "--key", k.agent); !strings.Contains(r.stdout, "created revocations.yaml: no such file existed") {
		t.Errorf("a revocations file created anew is not said to be: %s", r.stdout)
	}
	// A credential's jti is revoked scoped to its issuer: another
	// tenant's issuer may write the same jti.
	scoped := identity.ScopedJTI(tok.Issuer(), tok.JTI())
	r := mustRun(t, k.dir, exitOK, "creds", "revoke", "--file", "revocations.yaml", "--jti", scoped, "--jti", "other-id")
	if !strings.Contains(r.stdout, "already revoked") {
		t.Errorf("a repeated revocation is not reported as such:\n%s", r.stdout)
	}
	k.assertNoSecrets(t, "creds revoke", r.stdout+r.stderr)

	// The file decodes strictly as the gateway reads it.
	rc := k.revocations(t)
	if !slices.Equal(rc.JTIs, []string{scoped, "other-id"}) || !slices.Equal(rc.Keys, []string{k.agent}) {
		t.Errorf("revocations = %+v; want jtis [%s other-id], keys [%s]", rc, scoped, k.agent)
	}

	for _, args := range [][]string{
		{"--jti", "has space"},
		{"--key", k.issuer},
		// A key with a line break would be written as given and never
		// match the agent: the revocation would silently do nothing.
		{"--key", k.agent[:20] + "\n" + k.agent[20:]},
		{},
	} {
		r := mustRun(t, k.dir, exitUsage, append([]string{"creds", "revoke", "--file", "revocations.yaml"}, args...)...)
		if r.stderr == "" {
			t.Errorf("creds revoke %v: no explanation", args)
		}
	}

	// A file that lacks principals was written before revocations named
	// them: revoking writes all three, its entries kept. One that lacks
	// keys may have been cut short: written back whole it would lift the
	// keys it lost, which the gateway keeps in force, so it is refused.
	path := filepath.Join(k.dir, "old.yaml")
	if err := os.WriteFile(path, []byte("jtis: [kept-id]\nkeys: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, k.dir, exitOK, "creds", "revoke", "--file", "old.yaml", "--jti", "new-id")
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), "principals: []") || !strings.Contains(string(data), "kept-id") {
		t.Errorf("revoking in a file without principals wrote %q; want all three sections, kept-id kept", data)
	}
	for _, cut := range []string{"jtis: [kept-id]\n", "principals: [p]\njtis: []\n", "jtis: []\nkeys: []\nprincipals:\n"} {
		if err := os.WriteFile(path, []byte(cut), 0o600); err != nil {
			t.Fatal(err)
		}
		if r := mustRun(t, k.dir, exitError, "creds", "revoke", "--file", "old.yaml", "--jti", "new-id"); !strings.Contains(r.stderr, "cut short") {
			t.Errorf("creds revoke on %q: stderr %q; want it refused as possibly cut short", cut, r.stderr)
		}
		if data, _ := os.ReadFile(path); string(data) != cut {
			t.Errorf("creds revoke on %q rewrote it: %q", cut, data)
		}
	}
}

// TestCredsRevokeKeepsOwner: on the documented layout revocations.yaml
// is root:agentgw 0640 and root edits it; revoke and unrevoke must leave
// it with that group, or the gateway (group agentgw) can no longer read
// it and the revocation never applies. Run as another user, the file's
// owner is the writer's and must stay so.
func TestCredsRevokeKeepsOwner(t *testing.T) {
	k := newCredsKit(t)
	path := filepath.Join(k.dir, "revocations.yaml")
	if err := os.WriteFile(path, []byte("jtis: []\nkeys: []\nprincipals: []\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		gid = 65532 // the service's group, which root is not in
		if err := os.Chown(path, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	check := func(step string) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != uid || int(st.Gid) != gid || fi.Mode().Perm() != 0o640 {
			t.Errorf("after %s: uid %d gid %d mode %v; want uid %d gid %d mode 0640", step, st.Uid, st.Gid, fi.Mode().Perm(), uid, gid)
		}
	}
	mustRun(t, k.dir, exitOK, "creds", "revoke", "--file", "revocations.yaml", "--key", k.agent)
	check("revoke")
	mustRun(t, k.dir, exitOK, "creds", "unrevoke", "--file", "revocations.yaml", "--key", k.agent)
	check("unrevoke")
}

// TestCredsUnrevoke: unrevoke removes what revoke added, and says so
// when there was nothing to remove.
func TestCredsUnrevoke(t *testing.T) {
	k := newCredsKit(t)
	mustRun(t, k.dir, exitOK, "creds", "issue", "--issuer", "issuer.nk", "--agent-seed", "agent.nk",
		"--tenant", "tenant_a", "--audience", "gw", "--xkey", k.xkey, "--out", "agent.creds")
	tok, kp, err := identity.ReadCreds(filepath.Join(k.dir, "agent.creds"))
	if err != nil {
		t.Fatal(err)
	}
	kp.Wipe()
	mustRun(t, k.dir, exitOK, "creds", "revoke", "--file", "revocations.yaml", "--credential", "agent.creds", "--jti", "other-id", "--key", k.agent)
	r := mustRun(t, k.dir, exitOK, "creds", "unrevoke", "--file", "revocations.yaml", "--credential", "agent.creds", "--key", k.agent)
	k.assertNoSecrets(t, "creds unrevoke", r.stdout+r.stderr)
	rc := k.revocations(t)
	if !slices.Equal(rc.JTIs, []string{"other-id"}) || len(rc.Keys) != 0 || slices.Contains(rc.JTIs, tok.JTI()) {
		t.Errorf("revocations after unrevoke = %+v; want jtis [other-id], no keys", rc)
	}
	if r := mustRun(t, k.dir, exitOK, "creds", "unrevoke", "--file", "revocations.yaml", "--key", k.agent); !strings.Contains(r.stdout, "was not revoked") {
		t.Errorf("unrevoking what is not revoked is not reported as such:\n%s", r.stdout)
	}
	if r := mustRun(t, k.dir, exitUsage, "creds", "unrevoke", "--file", "revocations.yaml"); !strings.Contains(r.stderr, "nothing to un-revoke") {
		t.Errorf("creds unrevoke without ids: %s", r)
	}
	// A key or jti that is not one is refused, not reported "was not
	// revoked": the operator meant some real entry.
	for _, args := range [][]string{
		{"--jti", "has space"},
		{"--key", k.agent[:20] + "\n" + k.agent[20:]},
	} {
		r := mustRun(t, k.dir, exitUsage, append([]string{"creds", "unrevoke", "--file", "revocations.yaml"}, args...)...)
		if r.stderr == "" || strings.Contains(r.stdout, "was not revoked") {
			t.Errorf("creds unrevoke %q: stdout %q stderr %q; want a usage error", args, r.stdout, r.stderr)
		}
	}
}

// TestCredsRevokeConcurrent: revocations written at once by several
// processes all end in the file; none overwrites another's.
func TestCredsRevokeConcurrent(t *testing.T) {
	k := newCredsKit(t)
	var keys []string
	for range 8 {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		keys = append(keys, pub)
	}
	var wg sync.WaitGroup
	for _, key := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r := agentgw(t, k.dir, "creds", "revoke", "--file", "revocations.yaml", "--key", key); r.code != exitOK {
				t.Errorf("revoke %s: exit %d\n%s", key, r.code, r)
			}
		}()
	}
	wg.Wait()
	rc := k.revocations(t)
	for _, key := range keys {
		if !slices.Contains(rc.Keys, key) {
			t.Errorf("key %s revoked at the same time as others is missing from the file (%d of %d kept)", key, len(rc.Keys), len(keys))
		}
	}
}

// revocations reads the kit's revocations.yaml strictly, as the gateway
// reads it.
func (k *credsKit) revocations(t *testing.T) gateway.RevocationConfig {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(k.dir, "revocations.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rc gateway.RevocationConfig
	if err := yaml.UnmarshalWithOptions(data, &rc, yaml.Strict()); err != nil {
		t.Fatalf("revocations file: %v\n%s", err, data)
	}
	return rc
}

// TestCredsOutKeepsWhatIsNoCredential: creds issue renews a credential
// file in place, but an --out naming a seed file (a slip for
// issuer.nk) is refused unless --force, and the seed is left as it was;
// the error does not print it.
func TestCredsOutKeepsWhatIsNoCredential(t *testing.T) {
	k := newCredsKit(t)
	issue := func(want int, out string, extra ...string) result {
		args := append([]string{"creds", "issue", "--issuer", "issuer.nk", "--agent-seed", "agent.nk", "--tenant", "tenant_a",
			"--audience", "gw", "--xkey", k.xkey, "--out", out}, extra...)
		return mustRun(t, k.dir, want, args...)
	}
	issue(exitOK, "agent.creds")
	issue(exitOK, "agent.creds") // renewed in place

	seedPath := filepath.Join(k.dir, "issuer.nk")
	before, err := os.ReadFile(seedPath)
	if err != nil {
		t.Fatal(err)
	}
	r := issue(exitUsage, "issuer.nk")
	k.assertNoSecrets(t, "creds issue --out issuer.nk", r.stdout+r.stderr)
	if !strings.Contains(r.stderr, "--force") {
		t.Errorf("refusal does not say how to replace: %s", r)
	}
	if after, err := os.ReadFile(seedPath); err != nil || string(after) != string(before) {
		t.Fatalf("issuer seed changed by a refused creds issue (%v)", err)
	}
	other := filepath.Join(k.dir, "notes.txt")
	if err := os.WriteFile(other, []byte("not a credential\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	issue(exitUsage, "notes.txt")
	issue(exitOK, "notes.txt", "--force")
	if _, kp, err := identity.ReadCreds(other); err != nil {
		t.Errorf("--force did not write the credential: %v", err)
	} else {
		kp.Wipe()
	}
}

// TestCredsRevokeYAMLWords: a jti may be any [A-Za-z0-9._:-]{1,128},
// and plain YAML reads some of those as other things (.nan and .inf as
// numbers, which came back as "NaN" and "+Inf"): the gateway revoked
// another id, or refused the file at its next start. Entries are
// written quoted and read back as written.
func TestCredsRevokeYAMLWords(t *testing.T) {
	k := newCredsKit(t)
	words := []string{".nan", ".NaN", ".inf", "-.INF", "true", "null", "0x10", "1e3", "2026-12-06"}
	args := []string{"creds", "revoke", "--file", "revocations.yaml"}
	for _, w := range words {
		args = append(args, "--jti", w)
	}
	mustRun(t, k.dir, exitOK, args...)
	if rc := k.revocations(t); !slices.Equal(rc.JTIs, words) {
		t.Errorf("revocations read back %q; want %q", rc.JTIs, words)
	}
	if r := mustRun(t, k.dir, exitOK, "creds", "revoke", "--file", "revocations.yaml", "--jti", ".nan"); !strings.Contains(r.stdout, "already revoked") {
		t.Errorf("revoking .nan again: %s", r.stdout)
	}
	if r := mustRun(t, k.dir, exitOK, "creds", "unrevoke", "--file", "revocations.yaml", "--jti", ".inf"); !strings.Contains(r.stdout, "un-revoked jti .inf") {
		t.Errorf("un-revoking .inf: %s", r.stdout)
	}
}

// TestCredsRevokePrincipal: --principal adds an IdP identity to the
// file's principals, kept by every later revision; unrevoke removes it.
func TestCredsRevokePrincipal(t *testing.T) {
	k := newCredsKit(t)
	const p = "https://idp.example.com#alice ünïcode"
	mustRun(t, k.dir, exitOK, "creds", "revoke", "--file", "revocations.yaml", "--principal", p)
	mustRun(t, k.dir, exitOK, "creds", "revoke", "--file", "revocations.yaml", "--key", k.agent)
	if rc := k.revocations(t); !slices.Equal(rc.Principals, []string{p}) || !slices.Equal(rc.Keys, []string{k.agent}) {
		t.Errorf("revocations = %+v; want principal %q and key %s", rc, p, k.agent)
	}
	if r := mustRun(t, k.dir, exitOK, "creds", "unrevoke", "--file", "revocations.yaml", "--principal", p); !strings.Contains(r.stdout, "un-revoked principal") {
		t.Errorf("unrevoke --principal: %s", r.stdout)
	}
	if rc := k.revocations(t); len(rc.Principals) != 0 || !slices.Equal(rc.Keys, []string{k.agent}) {
		t.Errorf("revocations after unrevoke = %+v", rc)
	}
	mustRun(t, k.dir, exitUsage, "creds", "revoke", "--file", "revocations.yaml", "--principal", "a\nb")
}
