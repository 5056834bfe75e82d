package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/yamlerr"
	"github.com/agentgw/agentgw/internal/atomicfile"
	"github.com/agentgw/agentgw/subjects"
)

func credsCmd(args []string) int {
	return group("creds", "Issue, inspect and revoke agent credentials. No subcommand prints a JWT or a seed.", []subcommand{
		{"issue", "sign a credential for an agent and write its .creds file", credsIssue},
		{"show", "print a credential's decoded claims (never the JWT or seed)", credsShow},
		{"revoke", "add a jti, an agent key or a principal to the gateway's revocations file", credsRevoke},
		{"unrevoke", "remove a jti, an agent key or a principal from the gateway's revocations file", credsUnrevoke},
		{"exchange", "exchange an IdP (OAuth/OIDC) token for a credential through the gateway", credsExchange},
	}, args)
}

func credsIssue(args []string) int {
	c := newCmd("creds issue", "--issuer SEEDFILE (--agent-seed SEEDFILE | --agent-pub KEY --jwt-only) --tenant T --audience A --xkey X… [--scopes a,b] [--service S] [--ttl 1h] --out FILE", `
Sign an agentgw credential with a tenant issuer key and write it to --out
(mode 0600): a NATS-style .creds file holding the JWT and the agent's seed
when --agent-seed is given, or the JWT alone with --jwt-only (for an agent
whose seed you do not hold: --agent-pub). Prints the jti, subject and
expiry, never the JWT.

The gateway must trust the issuer for the tenant (tenants.<T>.issuers in
its config) and its audience must equal --audience.`)
	issuer := c.fs.String("issuer", "", "tenant issuer seed `file` (SA…, from 'keys new --type issuer')")
	agentSeed := c.fs.String("agent-seed", "", "agent seed `file` (SU…); the credential's subject")
	agentPub := c.fs.String("agent-pub", "", "agent public `key` (U…), with --jwt-only")
	tenant := c.fs.String("tenant", "", "tenant ([a-z0-9_-]{1,64})")
	audience := c.fs.String("audience", "", "the gateway's audience")
	xkey := c.fs.String("xkey", "", "the agent's public curve `key` (X…): sealed payloads come from it, replies are sealed to it")
	var scopes listFlag
	c.fs.Var(&scopes, "scopes", "granted scopes, comma separated or repeated (e.g. refund:draft,approve:refunds.*)")
	service := c.fs.String("service", "", "service name of the agent (policies may match on it)")
	name := c.fs.String("name", "", "free-text name for humans")
	ttl := c.fs.Duration("ttl", time.Hour, "lifetime; the gateway refuses longer than its limits.max_credential_lifetime")
	out := c.fs.String("out", "", "`file` to write (mode 0600; replaced atomically if it holds a credential)")
	force := c.fs.Bool("force", false, "replace --out even if it holds something other than a credential")
	jwtOnly := c.fs.Bool("jwt-only", false, "write the JWT alone, not a .creds file")
	asJSON := c.fs.Bool("json", false, "print the summary as JSON")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	if code, ok := c.require("issuer", "tenant", "audience", "xkey", "out"); !ok {
		return code
	}
	switch {
	case (*agentSeed == "") == (*agentPub == ""):
		return c.usageErr("give exactly one of --agent-seed and --agent-pub")
	case *agentPub != "" && !*jwtOnly:
		return c.usageErr("a .creds file needs the agent's seed: pass --agent-seed, or --jwt-only to write the JWT alone")
	}
	iss, err := c.seedFile(*issuer, "SA")
	if err != nil {
		return c.fail(err, "--issuer must be an issuer seed file, e.g. from 'agentgw keys new --type issuer --out issuer.nk'.")
	}
	defer iss.Wipe()
	subject := *agentPub
	var seed identity.Seed
	if *agentSeed != "" {
		kp, err := c.seedFile(*agentSeed, "SU")
		if err != nil {
			return c.fail(err, "--agent-seed must be an agent seed file, e.g. from 'agentgw keys new --type agent --out agent.nk'.")
		}
		defer kp.Wipe()
		if subject, err = kp.PublicKey(); err != nil {
			return c.fail(err, "")
		}
		raw, err := kp.Seed()
		if err != nil {
			return c.fail(err, "")
		}
		seed = identity.Seed(raw)
		defer seed.Wipe()
	}
	tok, err := identity.Issue(iss, identity.IssueRequest{
		Subject: subject, Audience: *audience, Tenant: *tenant, Service: *service,
		Name: *name, Scopes: scopes, XKey: *xkey, TTL: *ttl,
	}, time.Now())
	if err != nil {
		if errors.Is(err, identity.ErrInvalidRequest) {
			return c.usageErr("%v", err)
		}
		return c.fail(err, "")
	}
	if err := credsOut(*out, *force); err != nil {
		return c.usageErr("%v", err)
	}
	if *jwtOnly {
		err = atomicfile.Write(*out, []byte(tok.Reveal()+"\n"), 0o600)
	} else {
		err = identity.WriteCreds(*out, tok, seed)
	}
	if err != nil {
		return c.fail(err, "")
	}
	v, _, err := decodeCredential(tok)
	if err != nil {
		return c.fail(err, "")
	}
	if *asJSON {
		_ = newJSONLines(c.out).write(map[string]any{
			"jti": v.JTI, "subject": v.Subject, "tenant": v.Tenant, "audience": v.Audience,
			"expires": v.Expires, "file": *out, "jwt_only": *jwtOnly,
		})
		return exitOK
	}
	fmt.Fprintf(c.out, "jti      %s\nsubject  %s\ntenant   %s\nexpires  %s\nwritten  %s (mode 0600)\n",
		v.JTI, v.Subject, v.Tenant, stamp(v.Expires), *out)
	return exitOK
}

// credView is what creds show prints: every claim, the verdicts on the
// signature and the seed, never the JWT or the seed.
type credView struct {
	JTI        string    `json:"jti"`
	Type       string    `json:"type"`
	Issuer     string    `json:"issuer"`
	Subject    string    `json:"subject"`
	Audience   string    `json:"audience"`
	Name       string    `json:"name,omitempty"`
	Tenant     string    `json:"tenant"`
	Service    string    `json:"service,omitempty"`
	Scopes     []string  `json:"scopes"`
	XKey       string    `json:"xkey"`
	Principal  string    `json:"principal,omitempty"` // who it was issued for (exchanged credentials)
	IssuedAt   time.Time `json:"issued_at"`
	NotBefore  time.Time `json:"not_before"`
	Expires    time.Time `json:"expires"`
	Validity   string    `json:"validity"`  // valid, expired, not_yet_valid (by this machine's clock)
	Signature  string    `json:"signature"` // valid or invalid (by the issuer key in the token)
	SeedInFile string    `json:"seed"`      // "matches subject" or "absent"
}

// decodeCredential decodes tok's claims without trusting them and
// checks its signature against its own issuer claim. It says nothing
// about whether any gateway trusts that issuer.
func decodeCredential(tok identity.Token) (*credView, bool, error) {
	j, err := identity.ParseJWT(tok.Reveal())
	if err != nil {
		return nil, false, err
	}
	var w struct {
		ID        string `json:"jti"`
		Issuer    string `json:"iss"`
		Subject   string `json:"sub"`
		Audience  string `json:"aud"`
		Name      string `json:"name"`
		IssuedAt  int64  `json:"iat"`
		NotBefore int64  `json:"nbf"`
		Expires   int64  `json:"exp"`
		Nats      struct {
			Type      string   `json:"type"`
			Tenant    string   `json:"tenant"`
			Service   string   `json:"service"`
			Scopes    []string `json:"scopes"`
			XKey      string   `json:"xkey"`
			Principal string   `json:"principal"`
		} `json:"nats"`
	}
	if err := json.Unmarshal(j.Payload, &w); err != nil {
		return nil, false, errors.New("the token's claims are not JSON of the credential shape")
	}
	v := &credView{
		JTI: w.ID, Type: w.Nats.Type, Issuer: w.Issuer, Subject: w.Subject, Audience: w.Audience,
		Name: w.Name, Tenant: w.Nats.Tenant, Service: w.Nats.Service, Scopes: w.Nats.Scopes, XKey: w.Nats.XKey,
		Principal: w.Nats.Principal, IssuedAt: unix(w.IssuedAt), NotBefore: unix(w.NotBefore), Expires: unix(w.Expires),
		Signature: "invalid", SeedInFile: "absent",
	}
	if v.Scopes == nil {
		v.Scopes = []string{}
	}
	now := time.Now()
	switch {
	case !v.Expires.IsZero() && !now.Before(v.Expires):
		v.Validity = "expired"
	case !v.NotBefore.IsZero() && now.Before(v.NotBefore):
		v.Validity = "not_yet_valid"
	default:
		v.Validity = "valid"
	}
	sigOK := j.VerifySignature(w.Issuer, nkeys.PrefixByteAccount)
	if sigOK {
		v.Signature = "valid"
	}
	return v, sigOK, nil
}

func unix(s int64) time.Time {
	if s <= 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}

func credsShow(args []string) int {
	c := newCmd("creds show", "(--credential FILE | FILE) [--json]", `
Print the claims of an agentgw credential: a .creds file or a JWT-only
file, given as --credential FILE or as the argument. The
JWT and the seed are never printed; the seed is only reported as present
(and matching the subject) or absent. The signature is checked against
the token's own issuer claim: whether a gateway trusts that issuer for
the tenant is the gateway's config. Exits 3 when the signature is invalid.`)
	asJSON := c.fs.Bool("json", false, "print the claims as JSON")
	credential := c.fs.String("credential", "", "the agentgw credential `file` (.creds or JWT-only) to show")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if *credential != "" {
		c.args = append(c.args, *credential)
	}
	if len(c.args) != 1 {
		return c.usageErr("want exactly one credential: --credential FILE or FILE")
	}
	path := c.args[0]
	if f := classify(path); f.kind != kindCredential && f.kind != kindCredentialJWT {
		return c.fail(&fileError{source: "creds show", want: wantCredentialAny, got: f}, "")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return c.fail(err, "")
	}
	defer clear(data)
	var tok identity.Token
	seed := false
	if bytes.Contains(data, []byte("-----BEGIN")) {
		t, kp, err := identity.ParseCreds(data)
		if err != nil {
			return c.fail(fmt.Errorf("%s: %w", path, err), "")
		}
		kp.Wipe()
		tok, seed = t, true
	} else {
		tok = identity.Token(strings.TrimSpace(string(data)))
	}
	v, sigOK, err := decodeCredential(tok)
	if err != nil {
		return c.fail(fmt.Errorf("%s: %w", path, err), "The file holds neither a .creds block nor a compact credential JWT.")
	}
	if seed {
		v.SeedInFile = "matches subject"
	}
	if *asJSON {
		_ = newJSONLines(c.out).write(v)
	} else {
		t := newTable(c.out, false, column{name: "FIELD"}, column{name: "VALUE"})
		for _, r := range [][2]string{
			{"jti", v.JTI}, {"type", v.Type}, {"issuer", v.Issuer}, {"subject", v.Subject},
			{"audience", v.Audience}, {"name", v.Name}, {"tenant", v.Tenant}, {"service", v.Service},
			{"scopes", strings.Join(v.Scopes, ",")}, {"xkey", v.XKey}, {"principal", v.Principal},
			{"issued_at", stamp(v.IssuedAt)}, {"not_before", stamp(v.NotBefore)}, {"expires", stamp(v.Expires)},
			{"validity", v.Validity}, {"signature", v.Signature}, {"seed", v.SeedInFile},
		} {
			t.row(r[0], clean(r[1]))
		}
		t.flush()
	}
	if !sigOK {
		fmt.Fprintf(c.err, "agentgw creds show: %s: the signature does not verify with the issuer key it names\n", path)
		return exitRejected
	}
	return exitOK
}

func credsRevoke(args []string) int { return reviseRevocations(args, true) }

func credsUnrevoke(args []string) int { return reviseRevocations(args, false) }

// reviseRevocations adds (revoke) or removes credential ids and agent
// keys in a revocations file.
func reviseRevocations(args []string, revoke bool) int {
	if !revoke {
		return reviseRevocationsCmd(args, false, newCmd("creds unrevoke", "--file REVOCATIONS.yaml (--jti ID | --key UKEY | --principal ISSUER#SUBJECT | --credential FILE)...", `
Remove credential ids (jti) and agent keys from the gateway's revocations
file, the inverse of 'creds revoke'. Every entry of an id goes, repeats
included. The file is replaced atomically and
keeps its mode, owner and group (refused when they cannot be kept); a
symbolic link is followed, its target replaced and the link kept. The
gateway applies it at its next reload (every
reload_interval, or on SIGHUP). A message denied while revoked can then
be re-submitted with 'agentgw denied replay': check it with --dry-run
first, since a re-submission is used up even when it is denied again.
Comments in the file are not preserved. Each gateway reads its own file:
with several instances, un-revoke on every host.`))
	}
	return reviseRevocationsCmd(args, true, newCmd("creds revoke", "--file REVOCATIONS.yaml (--jti ID | --key UKEY | --principal ISSUER#SUBJECT | --credential FILE)...", `
Add credential ids (jti) and agent keys to the gateway's revocations file
(the file its config names in revocations.file; YAML "jtis: [...]",
"keys: [...]", "principals: [...]"), creating it if needed. A jti is its issuer's to write,
so two tenants' issuers can write the same one: --credential writes
its jti scoped to its issuer ("<issuer A key>/<jti>"), which revokes
only that issuer's credential; --jti ID revokes the id whoever issued
it, --jti ISSUER/ID one issuer's. --principal revokes an IdP identity
(a credential's nats.principal, "<IdP issuer>#<IdP subject>"): every
credential issued for it, for any key, and every delegated one naming
it among its actors; the token exchange issues none for it. The file is replaced atomically and
keeps its mode, owner and group (root:agentgw 0640 stays readable by the
gateway; refused when they cannot be kept); a symbolic link is followed,
its target replaced and the link kept. Revisions of one file run one
at a time (its directory is locked), so none drops another's entries.
The gateway re-reads it on its next reload (every
reload_interval, or on SIGHUP): no restart. A revoked key revokes every
credential of that agent. The reload also denies, at once, every request
held for an approver that a revoked credential or key sent (reason
revoked, audit event approval_withdrawn). Comments in the file are not
preserved.

Each gateway reads its own file: with several gateway instances (one per
host), revoke on every host, or copy the file to each, and reload each;
until then the others still accept the credential.`))
}

func reviseRevocationsCmd(args []string, revoke bool, c *cmd) int {
	verb := "revoke"
	if !revoke {
		verb = "un-revoke"
	}
	file := c.fs.String("file", "", "revocations YAML `file` the gateway's revocations.file names")
	var jtis, keys, principals, creds listFlag
	c.fs.Var(&jtis, "jti", "credential `id` to "+verb+", ISSUER/JTI for one issuer's (repeatable)")
	c.fs.Var(&keys, "key", "agent public `key` (U…) to "+verb+" (repeatable)")
	c.fs.Var(&principals, "principal", "IdP `identity` to "+verb+", <IdP issuer>#<IdP subject> as a credential's nats.principal names it (repeatable)")
	c.fs.Var(&creds, "credential", "agentgw credential `file` (.creds or JWT-only) whose jti to "+verb+" (repeatable)")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	if code, ok := c.require("file"); !ok {
		return code
	}
	for _, p := range creds {
		if f := classify(p); f.kind != kindCredential && f.kind != kindCredentialJWT {
			return c.fail(&fileError{source: "--credential", want: wantCredentialAny, got: f}, "")
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return c.fail(err, "")
		}
		tok := identity.Token(strings.TrimSpace(string(data)))
		if bytes.Contains(data, []byte("-----BEGIN")) {
			t, kp, err := identity.ParseCreds(data)
			if err != nil {
				clear(data)
				return c.fail(fmt.Errorf("%s: %w", p, err), "")
			}
			kp.Wipe()
			tok = t
		}
		clear(data)
		id, iss := tok.JTI(), tok.Issuer()
		if id == "" || iss == "" {
			return c.fail(fmt.Errorf("%s: no credential jti and issuer in the file", p), "")
		}
		// Scoped to its issuer: another tenant's issuer may write the
		// same jti, and a bare entry would revoke its credential too.
		jtis = append(jtis, identity.ScopedJTI(iss, id))
	}
	if len(jtis)+len(keys)+len(principals) == 0 {
		return c.usageErr("nothing to %s: give --jti, --key, --principal or --credential", verb)
	}
	for _, id := range jtis {
		if !identity.ValidRevokedJTI(id) {
			return c.usageErr("--jti %q is not a credential id ([A-Za-z0-9._:-]{1,128}), alone or after its issuer's key and '/'", identity.SafeText(id))
		}
	}
	for _, k := range keys {
		if !subjects.ValidAgent(k) {
			return c.usageErr("--key %q is not an agent public key (U…)", identity.SafeText(k))
		}
	}
	for _, p := range principals {
		if !identity.ValidPrincipal(p) {
			return c.usageErr("--principal %q is not a principal (1-1024 bytes of UTF-8, no control characters)", identity.SafeText(p))
		}
	}
	// A --file that is a symbolic link (to a file shared, or managed
	// elsewhere) names its target: that is what the gateway reads, so
	// that is what is revised. Renamed over, the link would become a
	// file of its own and the target would never see the revision.
	path, err := revocationsPath(*file)
	if err != nil {
		return c.fail(err, "")
	}
	// Two revisions at once (two operators, a script) would each read
	// the file and the later write would drop the earlier one's entries:
	// the directory is locked from the read to the rename.
	unlock, err := lockDir(filepath.Dir(path))
	if err != nil {
		return c.fail(err, "")
	}
	defer unlock()
	var r gateway.RevocationConfig
	mode := os.FileMode(0o600)
	data, err := os.ReadFile(path)
	created := false
	switch {
	case errors.Is(err, os.ErrNotExist):
		created = true
	case err != nil:
		return c.fail(err, "")
	default:
		if err := yamlerr.Unmarshal(data, &r); err != nil {
			return c.fail(fmt.Errorf("%s: %w", identity.SafePath(*file), err), "Fix the file by hand: the gateway will not load it either.")
		}
		if r.File != "" {
			return c.fail(fmt.Errorf("%s: a revocations file may not name another file", *file), "")
		}
		// A file missing a section may have been cut short: written back
		// whole it would lift what it lost, which the gateway keeps in
		// force meanwhile. The one exception is the shape of a file from
		// before revocations named principals (jtis and keys, no
		// principals key at all), which this writes whole.
		var present struct {
			Principals *[]string `yaml:"principals"`
			JTIs       *[]string `yaml:"jtis"`
			Keys       *[]string `yaml:"keys"`
		}
		if err := yaml.Unmarshal(data, &present); err != nil || present.JTIs == nil || present.Keys == nil ||
			(present.Principals == nil && !gateway.RevocationsLackOnlyPrincipals(data)) {
			return c.fail(fmt.Errorf("%s does not name each of principals, jtis and keys: it may have been cut short", identity.SafePath(*file)),
				"Restore it, or fix it by hand: every revocations file names principals, jtis and keys (\"[]\" for none).")
		}
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	// What each entry came to is said once the file is written: a
	// revision that fails to be written revokes nothing, and its output
	// says nothing was.
	var said []string
	say := func(format string, args ...any) { said = append(said, fmt.Sprintf(format, args...)) }
	added := 0
	for _, k := range []struct {
		name string
		vals []string
		list *[]string
	}{{"jti", jtis, &r.JTIs}, {"key", keys, &r.Keys}, {"principal", principals, &r.Principals}} {
		for _, v := range k.vals {
			i := slices.Index(*k.list, v)
			switch {
			case !revoke && i >= 0:
				// Every entry goes: one left behind keeps it revoked.
				n := len(*k.list)
				*k.list = slices.DeleteFunc(*k.list, func(e string) bool { return e == v })
				n -= len(*k.list)
				added++
				if n > 1 {
					say("un-revoked %s %s (%d entries)", k.name, v, n)
				} else {
					say("un-revoked %s %s", k.name, v)
				}
			case !revoke:
				say("%s %s was not revoked", k.name, v)
			case i < 0:
				*k.list = append(*k.list, v)
				added++
				say("revoked %s %s", k.name, v)
			default:
				say("%s %s was already revoked", k.name, v)
			}
		}
	}
	printSaid := func() {
		for _, l := range said {
			fmt.Fprintln(c.out, l)
		}
	}
	if added == 0 {
		printSaid()
		return exitOK
	}
	out, err := revocationsYAML(r.JTIs, r.Keys, r.Principals)
	if err != nil {
		return c.fail(err, "")
	}
	// Replace, not Write: root editing /etc/agentgw/revocations.yaml
	// (root:agentgw 0640) must leave it readable by the gateway.
	if err := atomicfile.Replace(path, out, mode); err != nil {
		return c.fail(err, fmt.Sprintf("%s was not written: nothing was %s.", identity.SafePath(path), verb+"d"))
	}
	printSaid()
	if created {
		// A gateway does not start without its revocations file, so a
		// new one is most likely a path mistyped: say so.
		fmt.Fprintf(c.out, "created %s: no such file existed; the gateway applies only the file its revocations.file names\n", identity.SafePath(*file))
		return exitOK
	}
	written := identity.SafePath(*file)
	if path != *file {
		written = fmt.Sprintf("%s (%s links to it)", identity.SafePath(path), identity.SafePath(*file))
	}
	fmt.Fprintf(c.out, "wrote %s: the gateway applies it at its next reload (reload_interval or SIGHUP)\n", written)
	return exitOK
}

// revocationsPath is the file a revision of --file reads and replaces:
// file itself, or, when file is a symbolic link, the file it resolves
// to. A link to nothing is refused: the gateway reads no file there
// either, and creating one where the link points is no revision of the
// file meant.
func revocationsPath(file string) (string, error) {
	fi, err := os.Lstat(file)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return file, nil // missing (created) or a file: read and written as it is
	}
	target, err := filepath.EvalSymlinks(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		dest, _ := os.Readlink(file)
		return "", fmt.Errorf("%s is a symbolic link to %s, which cannot be resolved (%w): nothing written", identity.SafePath(file), identity.SafePath(dest), err)
	}
	return target, nil
}

// revocationsYAML writes a revocations file with every entry quoted. A
// jti is any [A-Za-z0-9._:-]{1,128}, and plain YAML reads some of those
// as other things: .nan and .inf as numbers, which come back as "NaN"
// and "+Inf", so the gateway would revoke another id, or refuse the
// file. The result is read back as the gateway reads it and compared.
func revocationsYAML(jtis, keys, principals []string) ([]byte, error) {
	var b strings.Builder
	for _, l := range []struct {
		name string
		vals []string
	}{{"principals", principals}, {"jtis", jtis}, {"keys", keys}} {
		if len(l.vals) == 0 {
			fmt.Fprintf(&b, "%s: []\n", l.name)
			continue
		}
		fmt.Fprintf(&b, "%s:\n", l.name)
		for _, v := range l.vals {
			fmt.Fprintf(&b, "  - %s\n", strconv.Quote(v))
		}
	}
	out := []byte(b.String())
	var back gateway.RevocationConfig
	if err := yaml.UnmarshalWithOptions(out, &back, yaml.Strict()); err != nil ||
		!slices.Equal(back.JTIs, jtis) || !slices.Equal(back.Keys, keys) || !slices.Equal(back.Principals, principals) {
		return nil, errors.New("revocations do not read back as written; nothing written")
	}
	return out, nil
}

// safeID reports whether s is a credential id: [A-Za-z0-9._:-]{1,128}.
func safeID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '.' || ch == '_' || ch == ':' || ch == '-') {
			return false
		}
	}
	return true
}

// maxCredsFile bounds what credsOut reads of an existing file: a .creds
// file is a few KiB.
const maxCredsFile = 64 << 10

// credsOut refuses to replace path unless it is absent, holds an
// agentgw credential (a .creds file or a credential JWT alone, as creds
// issue and creds exchange write them: renewing one in place is their
// use), or force is set. Anything else at --out is refused: a seed file
// (issuer.nk), a NATS user .creds (nsc's, often the only copy of that
// user's seed), an account or operator JWT, an IdP token, any other
// file. The error names the path as SafePath does and what kind of file
// it is (classify), never what the file holds.
func credsOut(path string, force bool) error {
	if force {
		return nil
	}
	kind := classify(path)
	switch kind.kind {
	case kindMissing:
		return nil
	case kindUnreadable:
		return fmt.Errorf("--out %s: cannot read it to see what it holds: --force replaces it", identity.SafePath(path))
	case kindCredential, kindCredentialJWT:
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("--out %s: cannot read it to see what it holds: --force replaces it", identity.SafePath(path))
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxCredsFile+1))
		defer clear(data)
		if err == nil && len(data) <= maxCredsFile && holdsCredential(data) {
			return nil
		}
		return fmt.Errorf("--out %s holds an agentgw credential JWT with more than its subject's seed: --force replaces it", identity.SafePath(path))
	}
	return fmt.Errorf("%w: --force replaces it", &fileError{source: "--out", want: wantCredentialAny + " to replace", got: kind})
}

// holdsCredential reports whether data is a .creds file (whose seed is
// its JWT's subject's) or a JWT alone. credsOut asks it of a file
// classify calls an agentgw credential: a credential JWT decorated with
// any other seed is not one.
func holdsCredential(data []byte) bool {
	if _, kp, err := identity.ParseCreds(data); err == nil {
		kp.Wipe()
		return true
	}
	_, err := identity.ParseJWT(strings.TrimSpace(string(data)))
	return err == nil
}
