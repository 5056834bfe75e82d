package devenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/parser"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/yamlerr"
	"github.com/agentgw/agentgw/internal/atomicfile"
	"github.com/agentgw/agentgw/subjects"
)

// TenantMaterial is one tenant's dev identities: its issuer and the
// actors issued by it. Every tenant of the gateway config has one, and a
// NATS account of the same name in capitals with one user per actor.
type TenantMaterial struct {
	Name    string
	Account string // its NATS account: the name in capitals
	// Issuer is the seed file of its dev issuer, keys/<tenant>-issuer.nk.
	// It is absent for a tenant whose issuers in the gateway config are
	// not dev ones; that tenant's actors are whatever .creds files are in
	// its directory.
	Issuer string
	// Its dev actors: the agent, the approver (its approval queue) and
	// the consumer (every catalog target of the tenant). Tenant's are in
	// creds/, every other tenant's in creds/<tenant>/.
	Agent, Approver, Consumer Actor
	// Dir is the directory whose other .creds files are users of the
	// tenant's account with an agent's permissions: creds/<tenant>/.
	Dir string
}

// roles are the dev actors every tenant has, in the order they are
// issued and rendered.
var roles = []string{"agent", "approver", "consumer"}

func (t *TenantMaterial) actor(role string) Actor {
	switch role {
	case "agent":
		return t.Agent
	case "approver":
		return t.Approver
	default:
		return t.Consumer
	}
}

// tenantPaths is the layout of tenant name's material under dir.
func tenantPaths(dir, name string) TenantMaterial {
	creds := filepath.Join(dir, "creds", name)
	if name == Tenant {
		creds = filepath.Join(dir, "creds")
	}
	actor := func(n string) Actor {
		return Actor{Name: n, Creds: filepath.Join(creds, n+".creds"), Curve: filepath.Join(creds, n+".xk")}
	}
	return TenantMaterial{
		Name: name, Account: strings.ToUpper(name),
		Issuer: filepath.Join(dir, "keys", name+"-issuer.nk"),
		Agent:  actor("agent"), Approver: actor("approver"), Consumer: actor("consumer"),
		Dir: filepath.Join(dir, "creds", name),
	}
}

// Tenant returns the material of tenant name, once Ensure has run.
func (m *Material) Tenant(name string) (TenantMaterial, bool) {
	i := slices.IndexFunc(m.Tenants, func(t TenantMaterial) bool { return t.Name == name })
	if i < 0 {
		return TenantMaterial{}, false
	}
	return m.Tenants[i], true
}

// shippedScopes are the scopes of the first tenant's dev actors. Every
// other tenant's come from the catalog (devScopes).
var shippedScopes = map[string][]string{
	"agent":    {"refund:draft", "payment:send", "kb:read"},
	"approver": {"approve:payments.*", "approve:refunds.*"},
	"consumer": {"respond:refunds.*"},
}

// devScopes are the scopes a dev actor of tenant gets when it is issued:
// the agent every scope a catalog target of the tenant requires, the
// approver the approval and the consumer the answer of each such target.
func devScopes(cat *catalog.Catalog, tenant, role string) []string {
	if tenant == Tenant {
		return shippedScopes[role]
	}
	var scopes []string
	for _, n := range cat.Names() {
		t, ok := cat.Lookup(n)
		if !ok || !slices.Contains(t.Tenants, tenant) {
			continue
		}
		switch role {
		case "agent":
			scopes = append(scopes, t.Scope)
		case "approver":
			scopes = append(scopes, "approve:"+n)
		default:
			scopes = append(scopes, "respond:"+n)
		}
	}
	slices.Sort(scopes)
	return slices.Compact(scopes)
}

// configTenants reads the tenants of the gateway config and their
// issuers. Only that key is read; the gateway validates the rest.
func (m *Material) configTenants() (map[string][]string, error) {
	data, err := os.ReadFile(m.Config)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Tenants map[string]*struct {
			Issuers []string `yaml:"issuers"`
		} `yaml:"tenants"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", identity.SafePath(m.Config), yamlerr.Clean(err))
	}
	out := map[string][]string{}
	for name, t := range cfg.Tenants {
		if t == nil {
			out[name] = nil
			continue
		}
		out[name] = t.Issuers
	}
	return out, nil
}

// setIssuer writes issuer as the only issuer of tenant name into the
// gateway config, keeping the rest of the file and its comments, and
// checks that the file now says so.
func (m *Material) setIssuer(name, issuer string) error {
	data, err := os.ReadFile(m.Config)
	if err != nil {
		return err
	}
	file, err := parser.ParseBytes(data, parser.ParseComments)
	if err != nil {
		return fmt.Errorf("%s: %w", identity.SafePath(m.Config), yamlerr.Clean(err))
	}
	p, err := yaml.PathString("$.tenants." + name)
	if err != nil {
		return err
	}
	if err := p.ReplaceWithReader(file, strings.NewReader("{issuers: ["+issuer+"]}")); err != nil {
		return fmt.Errorf("%s: tenant %s: %w", identity.SafePath(m.Config), name, yamlerr.Clean(err))
	}
	if err := atomicfile.Write(m.Config, []byte(file.String()), 0o600); err != nil {
		return err
	}
	got, err := m.configTenants()
	if err != nil {
		return err
	}
	if !slices.Equal(got[name], []string{issuer}) {
		return fmt.Errorf("%s: tenant %s: the dev issuer did not land in its issuers", m.Config, name)
	}
	return nil
}

// reservedAccounts are the accounts of the dev server that are not a
// tenant's.
var reservedAccounts = []string{"AGENTGW", "OPS", "$SYS", "$G"}

// ensureTenants gives every tenant of the gateway config its material:
// a tenant listed without issuers gets a dev issuer (its public key is
// written into the config), and a tenant whose issuers include its dev
// issuer gets every dev actor it lacks, issued with devScopes. It fills
// m.Tenants, sorted by name.
func (m *Material) ensureTenants() error {
	tenants, err := m.configTenants()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(tenants))
	for n := range tenants {
		names = append(names, n)
	}
	slices.Sort(names)
	var cat *catalog.Catalog
	m.Tenants = m.Tenants[:0]
	for _, name := range names {
		if !subjects.ValidToken(name) || name == subjects.UnroutableTenant {
			return fmt.Errorf("tenant %q: name must match [a-z0-9_-]{1,64}", name)
		}
		t := tenantPaths(m.Dir, name)
		if slices.Contains(reservedAccounts, t.Account) {
			return fmt.Errorf("tenant %q: its account %s is one of the dev server's own", name, t.Account)
		}
		issuers := tenants[name]
		if len(issuers) == 0 {
			kp, err := ensureSeedFile(t.Issuer, identity.NewIssuer)
			if err != nil {
				return err
			}
			pub, _ := kp.PublicKey()
			if err := m.setIssuer(name, pub); err != nil {
				return err
			}
			issuers = []string{pub}
		}
		m.Tenants = append(m.Tenants, t)
		issuer, err := identity.ReadSeedFile(t.Issuer)
		if errors.Is(err, fs.ErrNotExist) {
			continue // not a dev issuer: its actors are the files in t.Dir
		}
		if err != nil {
			return err
		}
		if pub, _ := issuer.PublicKey(); !slices.Contains(issuers, pub) {
			continue // its dev issuer is no longer trusted for it
		}
		for _, role := range roles {
			a := t.actor(role)
			if _, err := os.Stat(a.Creds); err == nil {
				continue
			}
			if cat == nil {
				if cat, err = catalog.Load(m.Catalog); err != nil {
					return err
				}
			}
			if err := os.MkdirAll(filepath.Dir(a.Creds), 0o700); err != nil {
				return err
			}
			if _, err := m.writeActor(issuer, name, a, devScopes(cat, name, role)); err != nil {
				return fmt.Errorf("tenant %s: %s: %w", name, role, err)
			}
		}
	}
	return nil
}

// ensureSeedFile reads the seed at path, or writes a new one from mk.
func ensureSeedFile(path string, mk func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	kp, err := identity.ReadSeedFile(path)
	if err == nil {
		return kp, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return newSeedFile(path, mk)
}

// user is one NATS user of a tenant account: a dev actor, or another
// .creds file of the tenant's directory (an agent).
type user struct {
	role, creds string
}

// tenantUsers lists the users of t's account: its dev actors whose
// .creds exist, then every other .creds file of t.Dir, each checked to
// be a credential of t.
func tenantUsers(t TenantMaterial) ([]user, error) {
	var users []user
	for _, role := range roles {
		if a := t.actor(role); exists(a.Creds) {
			users = append(users, user{role, a.Creds})
		}
	}
	extra, err := filepath.Glob(filepath.Join(t.Dir, "*.creds"))
	if err != nil {
		return nil, err
	}
	slices.Sort(extra)
	for _, f := range extra {
		if slices.ContainsFunc(users, func(u user) bool { return u.creds == f }) {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(f), ".creds")
		if !subjects.ValidToken(strings.ToLower(name)) {
			// The name goes into the server configuration (a comment):
			// a line break in it would be configuration.
			return nil, fmt.Errorf("%s: a .creds file name must be letters, digits, '_' and '-' (at most 64)", identity.SafePath(f))
		}
		users = append(users, user{"agent " + name, f})
	}
	for _, u := range users {
		tenant, err := credsTenant(u.creds)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", u.creds, err)
		}
		if tenant != t.Name {
			return nil, fmt.Errorf("%s: a credential of tenant %q among tenant %q's", u.creds, tenant, t.Name)
		}
	}
	return users, nil
}

// credsTenant is the tenant claim of the credential in a .creds file.
// The claim is not verified: this only keeps a file in the wrong
// directory out of an account; the gateway verifies every credential.
func credsTenant(path string) (string, error) {
	tok, _, err := identity.ReadCreds(path)
	if err != nil {
		return "", err
	}
	j, err := identity.ParseJWT(tok.Reveal())
	if err != nil {
		return "", err
	}
	var w struct {
		Nats struct {
			Tenant string `json:"tenant"`
		} `json:"nats"`
	}
	if err := json.Unmarshal(j.Payload, &w); err != nil {
		return "", errors.New("credential claims are not JSON")
	}
	return w.Nats.Tenant, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
