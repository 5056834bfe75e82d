package devenv

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/atomicfile"
)

//go:embed material
var material embed.FS

// Dev identities.
const (
	// Tenant is the first dev tenant: the refunds and payments tools,
	// the operator's tenant, its actors directly in creds/.
	Tenant = "tenant_a"
	// TenantB is the second dev tenant: the orders tool and its own
	// policies (policies/orders.cedar), its actors in creds/tenant_b/.
	TenantB  = "tenant_b"
	Audience = "agentgw-dev"
	// CredentialTTL is long for a dev box; production issues short ones.
	CredentialTTL = 24 * time.Hour
)

// Service is the service name in a dev actor's credential. The agent is a
// support runtime, which the demo refund policy requires.
func Service(actor string) string {
	if actor == "agent" {
		return "support-agent-runtime"
	}
	return actor + "-dev"
}

// Actor is one dev identity's files.
type Actor struct {
	Name  string
	Creds string // .creds: credential JWT + nkey seed
	Curve string // curve (xkey) seed file
}

// Material locates everything Ensure wrote.
type Material struct {
	Dir        string
	NATSConf   string
	Config     string // gateway config
	Catalog    string
	Revocation string
	Issuer     string // Tenant's issuer seed
	Signing    string // gateway signing seed
	GatewayXK  string // gateway curve seed
	// NATS users of the AGENTGW account that are not agentgw actors (user
	// nkey seeds): the gateway's connection, and the admin that creates
	// the pre-created consumers. The operator's NATS user (account OPS)
	// is the key of Operator.Creds; tenant users are the keys of their
	// .creds.
	GatewayNATS string
	AdminNATS   string
	Agent       Actor
	Approver    Actor
	Consumer    Actor
	Operator    Actor
	// Public keys for printing and for the SDK.
	GatewayKey, GatewayXKey, ConsumerXKey string
	// Consumers are the pull consumers Provision creates and tenant users
	// bind to: one per (tenant, catalog target), one approval queue per
	// tenant.
	Consumers []Consumer
	// Tenants are the tenants of the gateway config, sorted by name, each
	// with its issuer and actors (Ensure fills it). Agent, Approver and
	// Consumer above are Tenant's.
	Tenants []TenantMaterial
}

// Consumer is one pre-created pull consumer.
type Consumer struct {
	Tenant string
	Stream string // AGENTGW_CAP or AGENTGW_APPROVAL
	Name   string // durable name: client.CapabilityConsumerName, client.ApprovalConsumerName
	Filter string // its only filter subject
	Target string // the catalog target; empty for an approval queue
}

// Paths returns the Material layout under dir without writing anything.
func Paths(dir string) *Material {
	actor := func(n string) Actor {
		return Actor{Name: n, Creds: filepath.Join(dir, "creds", n+".creds"), Curve: filepath.Join(dir, "creds", n+".xk")}
	}
	a := tenantPaths(dir, Tenant)
	return &Material{
		Dir:        dir,
		NATSConf:   filepath.Join(dir, "nats-server.conf"),
		Config:     filepath.Join(dir, "gateway.yaml"),
		Catalog:    filepath.Join(dir, "catalog.yaml"),
		Revocation: filepath.Join(dir, "revocations.yaml"),
		Issuer:     a.Issuer,
		Signing:    filepath.Join(dir, "keys", "gateway-signing.nk"),
		GatewayXK:  filepath.Join(dir, "keys", "gateway-curve.nk"),
		// Seeds of the NATS users gateway and admin.
		GatewayNATS: filepath.Join(dir, "keys", "nats-gateway.nk"),
		AdminNATS:   filepath.Join(dir, "keys", "nats-admin.nk"),
		Agent:       a.Agent,
		Approver:    a.Approver,
		Consumer:    a.Consumer,
		Operator:    actor("operator"),
	}
}

// Ensure writes the dev material under dir unless it is already there,
// and returns its layout with the public keys filled in. created reports
// whether this call wrote it.
//
// Every tenant of the gateway config gets its material on every call: a
// tenant listed without issuers gets a dev issuer (written into the
// config), and a tenant its dev issuer is trusted for gets the agent,
// approver and consumer it lacks (TenantMaterial).
//
// The server config, nats-server.conf, is rendered on every call from
// the embedded template, the keys, the tenants and the catalog (a tenant
// added to the gateway config gets its account and users, a target
// added to the catalog its consumer and permissions, at the next start);
// it is only rewritten when that changes it. Material written before the
// server had accounts gets its missing NATS keys here, and a revocations
// file written before revocations named principals its "principals: []".
func Ensure(dir string) (m *Material, created bool, err error) {
	m = Paths(dir)
	if err := m.checkOpen(); err != nil {
		return nil, false, err
	}
	if _, err := os.Stat(m.Config); err != nil {
		if err := m.write(); err != nil {
			return nil, false, fmt.Errorf("devenv: %w", err)
		}
		created = true
	}
	if err := m.ensureTenants(); err != nil {
		return nil, false, fmt.Errorf("devenv: %w", err)
	}
	if err := m.ensureRevocationSections(); err != nil {
		return nil, false, fmt.Errorf("devenv: %w", err)
	}
	if err := m.loadPublic(); err != nil {
		return nil, false, fmt.Errorf("devenv: %w", err)
	}
	if err := m.writeServerConf(); err != nil {
		return nil, false, fmt.Errorf("devenv: %w", err)
	}
	return m, created, nil
}

// ErrOpenDir: the material's directory, or one below it, is writable by
// other users or owned by another user.
var ErrOpenDir = errors.New("devenv: directory open to other users")

// checkOpen refuses (ErrOpenDir) when the material's directory, or one of
// the directories below it that hold keys, credentials, configuration or
// the server's data, exists and is writable by its group or others, or
// owned by another user: whoever can write to it can rename over or
// delete what is there (a seed, gateway.yaml, revocations.yaml), or plant
// a link where the gateway's log is opened. Missing ones are made 0700.
func (m *Material) checkOpen() error {
	var paths []string
	for _, d := range []string{"", "keys", "creds", filepath.Join("creds", TenantB), "policies", "schemas", "data", "jetstream", "tenants"} {
		paths = append(paths, filepath.Join(m.Dir, d))
	}
	open, err := atomicfile.OpenDirs(paths...)
	if err != nil {
		return fmt.Errorf("devenv: %w", err)
	}
	if len(open) > 0 {
		return fmt.Errorf("%w: %s: another user could replace the keys and configuration kept there", ErrOpenDir, strings.Join(open, ", "))
	}
	return nil
}

func (m *Material) write() error {
	for _, d := range []string{"keys", "creds", "policies", "schemas", "data"} {
		if err := os.MkdirAll(filepath.Join(m.Dir, d), 0o700); err != nil {
			return err
		}
	}
	issuer, err := newSeedFile(m.Issuer, identity.NewIssuer)
	if err != nil {
		return err
	}
	b := tenantPaths(m.Dir, TenantB)
	if err := os.MkdirAll(b.Dir, 0o700); err != nil {
		return err
	}
	issuerB, err := newSeedFile(b.Issuer, identity.NewIssuer)
	if err != nil {
		return err
	}
	if _, err := newSeedFile(m.Signing, identity.NewGatewayKey); err != nil {
		return err
	}
	if _, err := newSeedFile(m.GatewayXK, identity.NewCurve); err != nil {
		return err
	}
	if err := m.ensureNATSKeys(); err != nil {
		return err
	}
	if _, err := m.writeActor(issuer, Tenant, m.Operator, []string{"operator:replay"}); err != nil {
		return err
	}
	// The consumers' curve keys now, for the catalog; their credentials
	// are issued by ensureTenants, with the catalog's scopes.
	xkeys := map[string]string{}
	for _, a := range []Actor{m.Consumer, b.Consumer} {
		ck, err := newSeedFile(a.Curve, identity.NewCurve)
		if err != nil {
			return err
		}
		xkeys[a.Curve], _ = ck.PublicKey()
	}
	fill := strings.NewReplacer("${CONSUMER_XKEY}", xkeys[m.Consumer.Curve], "${CONSUMER_XKEY:"+TenantB+"}", xkeys[b.Consumer.Curve])
	// Catalog, schemas, policies and the server config from the embedded
	// templates.
	err = fs.WalkDir(material, "material", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == serverTemplate {
			return err // the server config is rendered by writeServerConf
		}
		data, err := material.ReadFile(p)
		if err != nil {
			return err
		}
		data = []byte(fill.Replace(string(data)))
		return atomicfile.Write(filepath.Join(m.Dir, strings.TrimPrefix(p, "material/")), data, 0o600)
	})
	if err != nil {
		return err
	}
	issuerPub, _ := issuer.PublicKey()
	issuerBPub, _ := issuerB.PublicKey()
	if err := atomicfile.Write(m.Revocation, []byte("# agentgw revocations: re-read on reload, no restart\nprincipals: []\njtis: []\nkeys: []\n"), 0o600); err != nil {
		return err
	}
	return atomicfile.Write(m.Config, fmt.Appendf(nil, gatewayYAML, Audience, Tenant, issuerPub, TenantB, issuerBPub), 0o600)
}

const gatewayYAML = `# agentgw gateway config written by 'agentgw run' (development).
audience: %s
data_dir: data
nats:
  # The gateway's NATS user (account AGENTGW of nats-server.conf). No url:
  # 'agentgw run' connects in-process to the server it starts.
  nkey: keys/nats-gateway.nk
keys:
  signing: keys/gateway-signing.nk
  curve: keys/gateway-curve.nk
# Every tenant gets a NATS account with its own users (nats-server.conf,
# rendered at every start). A tenant added here with no issuers
# ('tenant_c: {}') gets a dev issuer written in, and its agent, approver
# and consumer in creds/<tenant>/, at the next start.
tenants:
  %s:
    issuers: [%s]
  %s:
    issuers: [%s]
revocations:
  file: revocations.yaml
catalog: catalog.yaml
policies: [policies/base.cedar, policies/refunds.cedar, policies/orders.cedar]
limits:
  max_credential_lifetime: 25h
consumer:
  # A queue per tenant: one tenant's flood cannot starve another's traffic.
  fair_tenants: true
reload_interval: 2s
# Each authenticated sender is told its decision on its reply subject.
notify_senders: true
`

// writeActor issues a's credential for tenant from issuer, with a new
// agent key and a's curve key (made if it is missing), and returns the
// curve public key.
func (m *Material) writeActor(issuer nkeys.KeyPair, tenant string, a Actor, scopes []string) (string, error) {
	kp, err := identity.NewAgent()
	if err != nil {
		return "", err
	}
	ck, err := ensureSeedFile(a.Curve, identity.NewCurve)
	if err != nil {
		return "", err
	}
	pub, _ := kp.PublicKey()
	xk, _ := ck.PublicKey()
	tok, err := identity.Issue(issuer, identity.IssueRequest{
		Subject: pub, Audience: Audience, Tenant: tenant, Service: Service(a.Name),
		Name: "dev " + a.Name, Scopes: scopes, XKey: xk, TTL: CredentialTTL,
	}, time.Now())
	if err != nil {
		return "", err
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	return xk, identity.WriteCreds(a.Creds, tok, identity.Seed(seed))
}

func newSeedFile(path string, mk func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
	kp, err := mk()
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	return kp, atomicfile.Write(path, append(seed, '\n'), 0o600)
}

func (m *Material) loadPublic() error {
	pub := func(path string) (string, error) {
		kp, err := identity.ReadSeedFile(path)
		if err != nil {
			return "", err
		}
		return kp.PublicKey()
	}
	var errs [3]error
	m.GatewayKey, errs[0] = pub(m.Signing)
	m.GatewayXKey, errs[1] = pub(m.GatewayXK)
	m.ConsumerXKey, errs[2] = pub(m.Consumer.Curve)
	return errors.Join(errs[:]...)
}

// StartServer runs an in-process nats-server from conf with JetStream
// under storeDir. port overrides the config's port when not zero (-1
// picks a free one).
func StartServer(conf, storeDir string, port int) (*server.Server, error) {
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		return nil, fmt.Errorf("devenv: %s: %w", conf, err)
	}
	opts.JetStream = true
	opts.StoreDir = storeDir
	opts.NoSigs = true
	if port != 0 {
		opts.Port = port
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("devenv: nats-server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("devenv: nats-server did not become ready (is the port in use? try --port -1)")
	}
	return s, nil
}

// serverTemplate is the embedded template of the server config.
const serverTemplate = "material/nats-server.conf"

// ensureNATSKeys creates the user seeds of the gateway's and the admin's
// NATS connections if they are missing.
func (m *Material) ensureNATSKeys() error {
	for _, p := range []string{m.GatewayNATS, m.AdminNATS} {
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if _, err := newSeedFile(p, identity.NewAgent); err != nil {
			return err
		}
	}
	return nil
}

// serverData fills the server config template.
type serverData struct {
	Gateway, Admin string // public user keys in AGENTGW
	Operator       string // public user key in OPS
	Tenants        []tenantData
}

type tenantData struct {
	Name, Account string
	Consumers     []Consumer // everything the account imports
	Users         []userData
}

type userData struct {
	Role, Key string
	Replies   bool       // may receive its replies and decision notices (agentgw.reply.<tenant>.<key>)
	Consumers []Consumer // may bind and read these
}

// writeServerConf computes the pre-created consumers from the catalog and
// renders nats-server.conf from the template, the keys and every tenant
// of m.Tenants. A consumer name that two consumers of a stream would
// share, or that nats-server refuses, is an error wrapping
// client.ErrConsumerName, and nothing is written.
func (m *Material) writeServerConf() error {
	if err := m.ensureNATSKeys(); err != nil {
		return err
	}
	cat, err := catalog.Load(m.Catalog)
	if err != nil {
		return err
	}
	key := func(path string) (string, error) { return client.UserKey(path) }
	var d serverData
	var errs [3]error
	d.Gateway, errs[0] = key(m.GatewayNATS)
	d.Admin, errs[1] = key(m.AdminNATS)
	d.Operator, errs[2] = key(m.Operator.Creds)
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}
	names := cat.Names()
	slices.Sort(names)
	m.Consumers = nil
	// Every (tenant, target) pair gets a consumer of its own: a name
	// shared by two would be one consumer, exported to both tenants.
	plan := map[string]client.ConsumerNames{client.StreamCapability: {}, client.StreamApproval: {}}
	for _, t := range m.Tenants {
		var caps []Consumer
		for _, n := range names {
			if tg, ok := cat.Lookup(n); ok && slices.Contains(tg.Tenants, t.Name) {
				c := Consumer{Tenant: t.Name, Stream: client.StreamCapability, Name: client.CapabilityConsumerName(t.Name, n),
					Filter: "agentgw.cap." + t.Name + "." + n, Target: n}
				if err := plan[c.Stream].Add(c.Name, "tenant "+t.Name+" target "+n); err != nil {
					return err
				}
				caps = append(caps, c)
			}
		}
		queue := Consumer{Tenant: t.Name, Stream: client.StreamApproval, Name: client.ApprovalConsumerName(t.Name), Filter: "agentgw.approval." + t.Name + ".>"}
		if err := plan[queue.Stream].Add(queue.Name, "tenant "+t.Name+"'s approval queue"); err != nil {
			return err
		}
		consumers := append(slices.Clone(caps), queue)
		m.Consumers = append(m.Consumers, consumers...)
		users, err := tenantUsers(t)
		if err != nil {
			return err
		}
		td := tenantData{Name: t.Name, Account: t.Account, Consumers: consumers}
		for _, u := range users {
			k, err := key(u.creds)
			if err != nil {
				return err
			}
			// Every user sends envelopes, so each may read the decision
			// notices on its own reply subject. The approver binds its
			// tenant's approval queue; the consumer is the one tool
			// runtime of the tenant: every target of the tenant, and no
			// approval queue.
			ud := userData{Role: u.role, Key: k, Replies: true}
			switch u.role {
			case "approver":
				ud.Consumers = []Consumer{queue}
			case "consumer":
				ud.Consumers = caps
			}
			td.Users = append(td.Users, ud)
		}
		d.Tenants = append(d.Tenants, td)
	}
	src, err := material.ReadFile(serverTemplate)
	if err != nil {
		return err
	}
	tmpl, err := template.New("nats-server.conf").Option("missingkey=error").Parse(string(src))
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, d); err != nil {
		return err
	}
	if old, err := os.ReadFile(m.NATSConf); err == nil && bytes.Equal(old, out.Bytes()) {
		return nil
	}
	return atomicfile.Write(m.NATSConf, out.Bytes(), 0o600)
}

// Provision creates (or updates) the pull consumers of m.Consumers, as
// deploy/README.md has the admin do with deploy/consumers/*.json: filtered
// pull consumers, explicit ack, never deleted by their users. js must be
// allowed the consumer create API (the admin, Material.AdminNATS) and the
// streams must exist: call it once the gateway is ready.
func Provision(ctx context.Context, js jetstream.JetStream, m *Material) error {
	for _, c := range m.Consumers {
		desc := "approval queue: " + c.Tenant
		if c.Target != "" {
			desc = "capability consumer: " + c.Tenant + " " + c.Target
		}
		_, err := js.CreateOrUpdateConsumer(ctx, c.Stream, jetstream.ConsumerConfig{
			Durable:       c.Name,
			Description:   desc,
			FilterSubject: c.Filter,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       30 * time.Second,
			MaxDeliver:    -1,
			MaxAckPending: 1000,
			MaxWaiting:    64,
			ReplayPolicy:  jetstream.ReplayInstantPolicy,
		})
		if err != nil {
			return fmt.Errorf("devenv: consumer %s on %s: %w", c.Name, c.Stream, err)
		}
	}
	return nil
}

// Connect connects to the dev server at url as the NATS user whose seed
// is in seedFile (an nkey seed file or a .creds file; client.UserOptions),
// with the connection name name.
func Connect(url, seedFile, name string, opts ...nats.Option) (*nats.Conn, error) {
	user, err := client.UserOptions(seedFile)
	if err != nil {
		return nil, fmt.Errorf("devenv: %w", err)
	}
	nc, err := nats.Connect(url, append(append(user, nats.Name(name)), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("devenv: connect as %s: %w", name, err)
	}
	return nc, nil
}

// ensureRevocationSections adds "principals: []" to a revocations file
// that names jtis and keys but not principals: what this package wrote
// before revocations named principals, which the gateway refuses as
// possibly read half way. A file that lacks jtis or keys is left for the
// gateway to refuse: it may be one read half way.
func (m *Material) ensureRevocationSections() error {
	data, err := os.ReadFile(m.Revocation)
	if err != nil {
		return err
	}
	if !gateway.RevocationsLackOnlyPrincipals(data) {
		return nil
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	return atomicfile.Write(m.Revocation, append(data, "principals: []\n"...), 0o600)
}
