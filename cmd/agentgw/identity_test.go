package main

import (
	"flag"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/natstest"
)

// idKit is a directory holding one file of every kind an identity flag
// may be given, and the public keys and secrets they hold.
type idKit struct {
	dir               string
	agentPub, userPub string   // the agent's key; the NATS user's key
	secrets           []string // seeds and JWTs written, never to be printed
}

func (k *idKit) path(name string) string { return filepath.Join(k.dir, name) }

func (k *idKit) write(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(k.path(name), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// seedFile writes the seed of kp to name and returns its public key.
func (k *idKit) seedFile(t *testing.T, name string, kp nkeys.KeyPair) string {
	t.Helper()
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	k.write(t, name, append(slices.Clone(seed), '\n'))
	k.secrets = append(k.secrets, string(seed))
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func newIDKit(t *testing.T) *idKit {
	t.Helper()
	k := &idKit{dir: t.TempDir()}
	must := func(kp nkeys.KeyPair, err error) nkeys.KeyPair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return kp
	}
	issuer := must(nkeys.CreateAccount())
	agent := must(nkeys.CreateUser())
	curve := must(nkeys.CreateCurveKeys())
	k.seedFile(t, "issuer.nk", issuer)
	k.agentPub = k.seedFile(t, "agent.nk", agent)
	xkey := k.seedFile(t, "curve.nk", curve)

	// An agentgw credential, as a .creds file and as the JWT alone.
	tok, err := identity.Issue(issuer, identity.IssueRequest{Subject: k.agentPub, Audience: "gw", Tenant: "tenant_a", XKey: xkey, TTL: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	agentSeed, _ := agent.Seed()
	if err := identity.WriteCreds(k.path("agent.creds"), tok, identity.Seed(agentSeed)); err != nil {
		t.Fatal(err)
	}
	k.write(t, "agent.jwt", []byte(tok.Reveal()+"\n"))
	k.secrets = append(k.secrets, tok.Reveal())

	// A NATS user .creds file (decentralized auth) and an account JWT.
	operator := must(nkeys.CreateOperator())
	account := must(nkeys.CreateAccount())
	user := must(nkeys.CreateUser())
	k.userPub, _ = user.PublicKey()
	accountPub, _ := account.PublicKey()
	uc := jwt.NewUserClaims(k.userPub)
	uc.Name = "reporter"
	userJWT, err := uc.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	userSeed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(userJWT, userSeed)
	if err != nil {
		t.Fatal(err)
	}
	k.write(t, "nats-user.creds", creds)
	accountJWT, err := jwt.NewAccountClaims(accountPub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	k.write(t, "account.jwt", []byte(accountJWT))
	k.secrets = append(k.secrets, userJWT, string(userSeed), accountJWT)

	k.write(t, "notes.txt", []byte("hello\n"))
	if err := os.Mkdir(k.path("dir"), 0o700); err != nil {
		t.Fatal(err)
	}
	return k
}

// noSecrets fails if out holds a seed or JWT of the kit.
func (k *idKit) noSecrets(t *testing.T, what, out string) {
	t.Helper()
	for _, s := range k.secrets {
		if strings.Contains(out, s) {
			t.Errorf("%s printed a secret of the kit:\n%s", what, out)
		}
	}
	if strings.Contains(out, "eyJ") {
		t.Errorf("%s printed a JWT:\n%s", what, out)
	}
}

// TestClassify: every kind of file an identity flag may be given is told
// apart, and said in words that hold no secret.
func TestClassify(t *testing.T) {
	k := newIDKit(t)
	for _, tc := range []struct {
		file string
		kind fileKind
		says string
	}{
		{"agent.creds", kindCredential, "an agentgw credential (.creds) of agent " + k.agentPub},
		{"agent.jwt", kindCredentialJWT, "an agentgw credential JWT without the agent's seed"},
		{"nats-user.creds", kindUserCreds, "a NATS user .creds file"},
		{"account.jwt", kindNATSJWT, "a NATS account JWT"},
		{"agent.nk", kindSeed, "an nkey seed of a user (SU…)"},
		{"issuer.nk", kindSeed, "an nkey seed of an account (SA…)"},
		{"curve.nk", kindSeed, "an nkey seed of a curve key (SX…)"},
		{"notes.txt", kindOther, "neither an agentgw credential"},
		{"missing.creds", kindMissing, "no such file"},
		{"dir", kindDir, "a directory"},
		{"notes.txt/x", kindUnreadable, "a file that cannot be read (not a directory)"},
	} {
		f := classify(k.path(tc.file))
		if f.kind != tc.kind || !strings.Contains(f.String(), tc.says) {
			t.Errorf("classify(%s) = %d %q; want %d, saying %q", tc.file, f.kind, f, tc.kind, tc.says)
		}
		k.noSecrets(t, "classify("+tc.file+")", f.String())
	}
}

// TestIdentityFileErrors: a file of the wrong kind, or none, given where
// an identity is expected, is refused with what was expected and what it
// is; the names other tools use point at the flag that does the job.
func TestIdentityFileErrors(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	url := srv.ClientURL()
	k := newIDKit(t)
	send := []string{"send", "-s", url, "--no-wait-decision", "--capability", "read", "--target", "kb.search", "--plain", "{}"}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"nats creds as credential", nil, append(send, "--credential", "nats-user.creds"), exitError,
			"--credential nats-user.creds: expected an agentgw credential (a .creds file from 'agentgw creds issue'), found a NATS user .creds file (a NATS user JWT issued by account A"},
		{"missing credential", nil, append(send, "--credential", "missing.creds"), exitError,
			"--credential missing.creds: no such file (expected an agentgw credential"},
		{"seed as credential", nil, append(send, "--credential", "agent.nk"), exitError,
			"--credential agent.nk: expected an agentgw credential (a .creds file from 'agentgw creds issue'), found an nkey seed of a user (SU…)"},
		{"credential given as the NATS user only", nil, append(send, "--creds", "agent.creds"), exitUsage,
			"--credential is required: --creds agent.creds is an agentgw credential, which names the NATS user only; give it as --credential"},
		{"account seed as NATS user", nil, []string{"denied", "ls", "-s", url, "--creds", "issuer.nk"}, exitError,
			"--creds issuer.nk: expected a NATS user .creds file or a user nkey seed (SU…) file, found an nkey seed of an account (SA…)"},
		{"missing NATS user", nil, []string{"denied", "ls", "-s", url, "--creds", "nope.creds"}, exitError,
			"--creds nope.creds: no such file (expected a NATS user .creds file or a user nkey seed (SU…) file)"},
		{"credential JWT in NATS_CREDS", []string{"NATS_CREDS=agent.jwt"}, []string{"denied", "ls", "-s", url}, exitError,
			"$NATS_CREDS agent.jwt: expected a NATS user .creds file or a user nkey seed (SU…) file, found an agentgw credential JWT without the agent's seed"},
		{"account JWT in NATS_NKEY", []string{"NATS_NKEY=account.jwt"}, []string{"audit", "tail", "-s", url}, exitError,
			"$NATS_NKEY account.jwt: expected a NATS user .creds file or a user nkey seed (SU…) file, found a NATS account JWT"},
		{"both NATS_CREDS and NATS_NKEY", []string{"NATS_CREDS=nats-user.creds", "NATS_NKEY=agent.nk"}, []string{"denied", "ls", "-s", url}, exitError,
			"$NATS_CREDS and $NATS_NKEY are both set"},
		{"NATS user as a credential to show", nil, []string{"creds", "show", "nats-user.creds"}, exitError,
			"creds show nats-user.creds: expected an agentgw credential (a .creds or JWT-only file from 'agentgw creds issue'), found a NATS user .creds file"},
		{"NATS user as a credential to revoke", nil, []string{"creds", "revoke", "--file", "rev.yaml", "--credential", "nats-user.creds"}, exitError,
			"--credential nats-user.creds: expected an agentgw credential (a .creds or JWT-only file from 'agentgw creds issue'), found a NATS user .creds file"},
		{"credential as curve seed", nil, append(send, "--credential", "agent.creds", "--curve-seed", "agent.creds"), exitError,
			"agent.creds: expected an nkey seed of a curve key (SX…), found an agentgw credential (.creds) of agent U"},
		{"user seed as curve seed", nil, []string{"consume", "-s", url, "--tenant", "tenant_a", "--target", "kb.search", "--gateway-key", "N", "--curve-seed", "agent.nk"}, exitError,
			"agent.nk: expected an nkey seed of a curve key (SX…), found an nkey seed of a user (SU…)"},
		{"curve seed as issuer", nil, []string{"creds", "issue", "--issuer", "curve.nk", "--agent-seed", "agent.nk", "--tenant", "tenant_a", "--audience", "gw", "--xkey", "X", "--out", "x.creds"}, exitError,
			"curve.nk: expected an nkey seed of an account (SA…), found an nkey seed of a curve key (SX…)"},
		{"seed for bench", nil, []string{"bench", "-s", url, "--creds", "agent.nk"}, exitError,
			"--creds agent.nk: expected a NATS user .creds file, found an nkey seed of a user (SU…)"},
		{"nats CLI's --nkey", nil, []string{"denied", "ls", "--nkey", "agent.nk"}, exitUsage,
			"The NATS user is --creds FILE"},
		{"--nats-nkey", nil, []string{"denied", "ls", "--nats-nkey", "agent.nk"}, exitUsage,
			"The NATS user is --creds FILE"},
		{"--nats", nil, []string{"denied", "ls", "--nats", url}, exitUsage,
			"The NATS server is -s/--server URL."},
		{"--creds for a credential to revoke", nil, []string{"creds", "revoke", "--file", "rev.yaml", "--creds", "agent.creds"}, exitUsage,
			"An agentgw credential is --credential FILE."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := agentgwEnv(t, k.dir, tc.env, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("agentgw %s: %s\nwant exit %d and %q", strings.Join(tc.args, " "), r, tc.code, tc.want)
			}
			k.noSecrets(t, tc.name, r.stdout+r.stderr)
		})
	}
}

// writeContext writes the nats CLI context name under config (an
// XDG_CONFIG_HOME) and returns its file.
func writeContext(t *testing.T, config, name, body string) string {
	t.Helper()
	dir := filepath.Join(config, "nats", "context")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name+".json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// resolveWith parses args into a command's connection flags, with
// identity as its --credential, and resolves them.
func resolveWith(t *testing.T, identity string, args ...string) (*natsSettings, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	var cf connFlags
	cf.register(fs)
	cf.identity = identity
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cf.resolve()
}

// TestNATSResolve: each connection setting comes from the flag, else the
// nats CLI's environment variable, else the NATS context (--context, else
// $NATS_CONTEXT, else the selected one), else the default, as the nats CLI
// resolves them; the NATS user is one identity from one of them.
func TestNATSResolve(t *testing.T) {
	k := newIDKit(t)
	for _, v := range []string{"NATS_URL", "NATS_CREDS", "NATS_NKEY", "NATS_CONTEXT", "NATS_CA", "NATS_CERT", "NATS_KEY"} {
		t.Setenv(v, "")
	}
	config := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", config)
	t.Setenv("KITDIR", k.dir)
	for _, f := range []string{"ca.pem", "ca2.pem", "cert.pem", "key.pem"} {
		k.write(t, f, []byte("PEM\n"))
	}

	// No context selected, nothing set: the default server, and the key
	// of --credential when the command has one.
	s, err := resolveWith(t, k.path("agent.creds"))
	if err != nil || s.cfg.URL != nats.DefaultURL || s.cfg.NKey != k.path("agent.creds") || !s.nkeyDefault ||
		s.cfg.InboxPrefix != "_INBOX."+k.agentPub || !strings.Contains(s.who, "NATS user "+k.agentPub+" (--credential ") {
		t.Fatalf("defaults: %+v, %v", s, err)
	}
	if s, err = resolveWith(t, ""); err != nil || s.cfg.NKey != "" || s.cfg.Creds != "" || !strings.HasPrefix(s.who, "the anonymous NATS user") {
		t.Fatalf("no identity anywhere: %+v, %v", s, err)
	}

	writeContext(t, config, "a", `{"url":"nats://a:4222","creds":"$KITDIR/nats-user.creds","ca":"${KITDIR}/ca.pem","inbox_prefix":"_I.a","jetstream_api_prefix":"js.a"}`)
	writeContext(t, config, "b", `{"url":"nats://b:4222","nkey":"file://`+k.path("agent.nk")+`","jetstream_domain":"hub","tls_first":true}`)
	writeContext(t, config, "pw", `{"url":"nats://pw:4222","user":"alice","password":"s3cret-pw"}`)
	writeContext(t, config, "tok", `{"token":"s3cret-token"}`)
	writeContext(t, config, "socks", `{"socks_proxy":"socks5://p:1080"}`)
	writeContext(t, config, "vault", `{"creds":"op://vault/item/creds"}`)
	writeContext(t, config, "halfcert", `{"cert":"`+k.path("cert.pem")+`"}`)
	writeContext(t, config, "broken", `{"url": "nats://x", "password": s3cret-broken}`)
	file := filepath.Join(t.TempDir(), "elsewhere.json")
	if err := os.WriteFile(file, []byte(`{"url":"nats://file:4222"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(config, "nats", "context.txt"), []byte("a\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Paths expand ~ and file:// as the nats CLI does.
	if u, err := user.Current(); err == nil {
		if p, err := contextPath("file://~/x.creds"); err != nil || p != filepath.Join(u.HomeDir, "x.creds") {
			t.Errorf("contextPath(file://~/x.creds) = %q, %v; want it in %s", p, err, u.HomeDir)
		}
	}

	type want struct {
		url, creds, nkey, ca, inbox, api, who string
		tlsFirst                              bool
	}
	for _, tc := range []struct {
		name string
		env  []string // NAME=value
		args []string
		want want
		err  string
	}{
		{name: "selected context", want: want{url: "nats://a:4222", creds: k.path("nats-user.creds"), ca: k.path("ca.pem"), inbox: "_I.a", api: "js.a",
			who: `NATS user "reporter" ` + k.userPub + ` (context "a" (creds) ` + k.path("nats-user.creds") + ")"}},
		{name: "NATS_CONTEXT over the selected one", env: []string{"NATS_CONTEXT=b"},
			want: want{url: "nats://b:4222", nkey: k.path("agent.nk"), inbox: "_INBOX." + k.agentPub, api: "$JS.hub.API", tlsFirst: true, who: `context "b" (nkey)`}},
		{name: "--context over NATS_CONTEXT", env: []string{"NATS_CONTEXT=a"}, args: []string{"--context", "b"},
			want: want{url: "nats://b:4222", nkey: k.path("agent.nk"), api: "$JS.hub.API", tlsFirst: true, inbox: "_INBOX." + k.agentPub}},
		{name: "a context file", args: []string{"--context", file}, want: want{url: "nats://file:4222", inbox: "_INBOX." + k.agentPub, nkey: k.path("agent.creds"), who: "(--credential "}},
		{name: "NATS_URL over the context", env: []string{"NATS_URL=nats://env:4222"},
			want: want{url: "nats://env:4222", creds: k.path("nats-user.creds"), ca: k.path("ca.pem"), inbox: "_I.a", api: "js.a"}},
		{name: "--server over NATS_URL", env: []string{"NATS_URL=nats://env:4222"}, args: []string{"-s", "nats://flag:4222"},
			want: want{url: "nats://flag:4222", creds: k.path("nats-user.creds"), ca: k.path("ca.pem"), inbox: "_I.a", api: "js.a"}},
		{name: "NATS_NKEY over the context's creds", env: []string{"NATS_NKEY=" + k.path("agent.nk")},
			want: want{url: "nats://a:4222", nkey: k.path("agent.nk"), ca: k.path("ca.pem"), inbox: "_I.a", api: "js.a", who: "NATS user " + k.agentPub + " ($NATS_NKEY "}},
		{name: "--creds over NATS_NKEY", env: []string{"NATS_NKEY=" + k.path("agent.nk")}, args: []string{"--creds", k.path("nats-user.creds")},
			want: want{url: "nats://a:4222", creds: k.path("nats-user.creds"), ca: k.path("ca.pem"), inbox: "_I.a", api: "js.a", who: " (--creds "}},
		{name: "NATS_CA over the context's, --tls-ca over NATS_CA", env: []string{"NATS_CA=" + k.path("ca2.pem")}, args: []string{"--inbox-prefix", "_I.flag", "--js-api-prefix", "js.flag"},
			want: want{url: "nats://a:4222", creds: k.path("nats-user.creds"), ca: k.path("ca2.pem"), inbox: "_I.flag", api: "js.flag"}},
		{name: "user and password", args: []string{"--context", "pw"}, want: want{url: "nats://pw:4222", inbox: "", who: `NATS user "alice" (context "pw" (user))`}},
		{name: "token", args: []string{"--context", "tok"}, want: want{url: nats.DefaultURL, who: `the token of context "tok" (token)`}},
		{name: "missing context", args: []string{"--context", "nope"}, err: `NATS context "nope" (--context): no such context`},
		{name: "stale selection", env: []string{"NATS_CONTEXT=gone"}, err: `NATS context "gone" ($NATS_CONTEXT): no such context`},
		{name: "not a name", args: []string{"--context", "../a"}, err: `not a context name`},
		{name: "unsupported field", args: []string{"--context", "socks"}, err: `NATS context "socks" sets socks_proxy, which agentgw does not support`},
		{name: "unsupported scheme", args: []string{"--context", "vault"}, err: `NATS context "vault", creds: the op:// scheme is not supported by agentgw`},
		{name: "certificate without key", args: []string{"--context", "halfcert"}, err: "go together"},
		{name: "broken context file", args: []string{"--context", "broken"}, err: `is not a context file: invalid JSON at byte`},
		{name: "missing CA", args: []string{"--tls-ca", k.path("nope.pem")}, err: "--tls-ca " + k.path("nope.pem") + ": no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range tc.env {
				name, v, _ := strings.Cut(kv, "=")
				t.Setenv(name, v)
			}
			s, err := resolveWith(t, k.path("agent.creds"), tc.args...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v; want %q", err, tc.err)
				}
				for _, secret := range []string{"s3cret-broken", "s3cret-pw", "s3cret-token"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error quotes a secret of the context: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := tc.want
			got := want{s.cfg.URL, s.cfg.Creds, s.cfg.NKey, s.cfg.TLS.CA, s.cfg.InboxPrefix, s.apiPrefix, w.who, s.cfg.TLS.Required}
			if got != w || !strings.Contains(s.who, w.who) {
				t.Errorf("resolved %+v, who %q\nwant      %+v", got, s.who, w)
			}
			if strings.Contains(s.who, "s3cret") {
				t.Errorf("who quotes a secret: %q", s.who)
			}
		})
	}
}

// TestPermissionRefusal: a subject the server does not let the NATS user
// publish or subscribe to is reported at once, naming the user (its key
// and where it came from) and the subject, not as a timeout.
func TestPermissionRefusal(t *testing.T) {
	k := newIDKit(t)
	natsUser, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub := k.seedFile(t, "reader.nk", natsUser)
	deafPub := k.seedFile(t, "deaf.nk", must(nkeys.CreateUser()))
	srv := natstest.Start(t, natstest.Options{Configure: func(o *server.Options) {
		o.Nkeys = []*server.NkeyUser{
			// May publish only to a subject of its own: JetStream's API is out of reach.
			{Nkey: pub, Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"elsewhere.>"}},
				Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX." + pub + ".>"}},
			}},
			// May ask JetStream but never hear the answer.
			{Nkey: deafPub, Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{">"}},
				Subscribe: &server.SubjectPermission{Deny: []string{">"}},
			}},
		}
	}})
	url := srv.ClientURL()
	config := t.TempDir()
	writeContext(t, config, "reader", `{"url":"`+url+`","nkey":"`+k.path("reader.nk")+`"}`)
	if err := os.WriteFile(filepath.Join(config, "nats", "context.txt"), []byte("reader\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"publish, --creds", nil, []string{"denied", "ls", "-s", url, "--creds", "reader.nk"},
			"agentgw denied ls: NATS user " + pub + " (--creds reader.nk) may not publish to " + "agentgw.js.STREAM.INFO.AGENTGW_DENIED"},
		{"publish, NATS_NKEY", []string{"NATS_NKEY=reader.nk", "NATS_URL=" + url}, []string{"audit", "tail"},
			"agentgw audit tail: NATS user " + pub + " ($NATS_NKEY reader.nk) may not publish to agentgw.js.STREAM.INFO.AGENTGW_AUDIT"},
		{"publish, selected context", []string{"XDG_CONFIG_HOME=" + config}, []string{"denied", "ls", "--js-api-prefix", "$JS.API"},
			"agentgw denied ls: NATS user " + pub + ` (context "reader" (nkey) ` + k.path("reader.nk") + ") may not publish to $JS.API.STREAM.INFO.AGENTGW_DENIED"},
		{"subscribe", nil, []string{"denied", "ls", "-s", url, "--creds", "deaf.nk", "--js-api-prefix", "$JS.API"},
			"agentgw denied ls: NATS user " + deafPub + " (--creds deaf.nk) may not subscribe to _INBOX." + deafPub + "."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := agentgwEnv(t, k.dir, tc.env, tc.args...)
			if r.code != exitError || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "The server's permissions for this user do not allow it") {
				t.Errorf("agentgw %s: %s\nwant exit 1 and %q", strings.Join(tc.args, " "), r, tc.want)
			}
			if n := strings.Count("\n"+r.stderr, "\nagentgw "); n != 1 {
				t.Errorf("agentgw %s: %d error lines; want the refusal alone:\n%s", strings.Join(tc.args, " "), n, r)
			}
			k.noSecrets(t, tc.name, r.stdout+r.stderr)
		})
	}
}

func must(kp nkeys.KeyPair, err error) nkeys.KeyPair {
	if err != nil {
		panic(err)
	}
	return kp
}

// connectionFlags are the flags of every command that talks to NATS.
var connectionFlags = []string{"-s, --server URL", "--creds file", "--context name", "--tls-ca file", "--tls-cert file", "--tls-key file", "--tls\n", "--inbox-prefix prefix", "--js-api-prefix prefix"}

// TestSameIdentityFlags: every command that talks to NATS takes the same
// connection and identity flags, every command that acts as an agentgw
// identity names it --credential, and none takes another name for either.
func TestSameIdentityFlags(t *testing.T) {
	networked := map[string]bool{
		"send": true, "consume": true, "mcp bridge": true, "mcp serve": true, "approvals ls": true, "approvals watch": true,
		"approvals grant": true, "approvals deny": true, "denied ls": true, "denied show": true, "denied replay": true,
		"denied export": true, "audit tail": true, "policy test": true, "eval run": true, "creds exchange": true,
	}
	withCredential := map[string]bool{
		"send": true, "mcp bridge": true, "approvals grant": true, "approvals deny": true, "denied replay": true,
		"creds show": true, "creds revoke": true, "creds unrevoke": true,
	}
	for _, l := range leaves(t) {
		name := strings.Join(l, " ")
		help := mustRun(t, "", exitOK, append(l, "--help")...).stdout
		_, flags, _ := strings.Cut(help, "\nFlags:\n")
		var have []string
		for _, f := range connectionFlags {
			if strings.Contains(flags, "  "+f) {
				have = append(have, f)
			}
		}
		switch {
		case name == "bench":
			// Its default is an embedded server: only an explicit one.
			if !strings.Contains(flags, "  -s, --server URL") || !strings.Contains(flags, "  --creds file") {
				t.Errorf("bench: want -s/--server and --creds:\n%s", flags)
			}
		case networked[name] && len(have) != len(connectionFlags):
			t.Errorf("%s: has %q of the connection flags; want all of %q", name, have, connectionFlags)
		case !networked[name] && len(have) > 0:
			t.Errorf("%s: has connection flags %q; it does not talk to NATS", name, have)
		}
		if got := strings.Contains(flags, "  --credential "); got != withCredential[name] {
			t.Errorf("%s: --credential listed %v; want %v", name, got, withCredential[name])
		}
		for _, old := range []string{"--nats ", "--nats-nkey", "--nats-creds", "--nkey"} {
			if strings.Contains(flags, old) {
				t.Errorf("%s: lists %s", name, old)
			}
		}
	}
}
