package devenv

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/identity"
)

//go:embed material
var material embed.FS

// Dev identities.
const (
	Tenant   = "tenant_a"
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
	Issuer     string // tenant issuer seed
	Signing    string // gateway signing seed
	GatewayXK  string // gateway curve seed
	Agent      Actor
	Approver   Actor
	Consumer   Actor
	Operator   Actor
	// Public keys for printing and for the SDK.
	GatewayKey, GatewayXKey, ConsumerXKey string
}

// Paths returns the Material layout under dir without writing anything.
func Paths(dir string) *Material {
	actor := func(n string) Actor {
		return Actor{Name: n, Creds: filepath.Join(dir, "creds", n+".creds"), Curve: filepath.Join(dir, "creds", n+".xk")}
	}
	return &Material{
		Dir:        dir,
		NATSConf:   filepath.Join(dir, "nats-server.conf"),
		Config:     filepath.Join(dir, "gateway.yaml"),
		Catalog:    filepath.Join(dir, "catalog.yaml"),
		Revocation: filepath.Join(dir, "revocations.yaml"),
		Issuer:     filepath.Join(dir, "keys", "tenant_a-issuer.nk"),
		Signing:    filepath.Join(dir, "keys", "gateway-signing.nk"),
		GatewayXK:  filepath.Join(dir, "keys", "gateway-curve.nk"),
		Agent:      actor("agent"),
		Approver:   actor("approver"),
		Consumer:   actor("consumer"),
		Operator:   actor("operator"),
	}
}

// Ensure writes the dev material under dir unless it is already there,
// and returns its layout with the public keys filled in. created reports
// whether this call wrote it.
func Ensure(dir string) (m *Material, created bool, err error) {
	m = Paths(dir)
	if _, err := os.Stat(m.Config); err == nil {
		return m, false, m.loadPublic()
	}
	if err := m.write(); err != nil {
		return nil, false, fmt.Errorf("devenv: %w", err)
	}
	return m, true, m.loadPublic()
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
	if _, err := newSeedFile(m.Signing, identity.NewGatewayKey); err != nil {
		return err
	}
	if _, err := newSeedFile(m.GatewayXK, identity.NewCurve); err != nil {
		return err
	}
	scopes := map[string][]string{
		"agent":    {"refund:draft", "payment:send", "kb:read"},
		"approver": {"approve:payments.*", "approve:refunds.*"},
		"consumer": {"respond:refunds.*"},
		"operator": {"operator:replay"},
	}
	var consumerXKey string
	for _, a := range []Actor{m.Agent, m.Approver, m.Consumer, m.Operator} {
		xk, err := m.writeActor(issuer, a, scopes[a.Name])
		if err != nil {
			return err
		}
		if a.Name == "consumer" {
			consumerXKey = xk
		}
	}
	// Catalog, schemas, policies and the server config from the embedded
	// templates.
	err = fs.WalkDir(material, "material", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := material.ReadFile(p)
		if err != nil {
			return err
		}
		data = []byte(strings.ReplaceAll(string(data), "${CONSUMER_XKEY}", consumerXKey))
		return os.WriteFile(filepath.Join(m.Dir, strings.TrimPrefix(p, "material/")), data, 0o600)
	})
	if err != nil {
		return err
	}
	issuerPub, _ := issuer.PublicKey()
	if err := os.WriteFile(m.Revocation, []byte("# agentgw revocations: re-read on reload, no restart\njtis: []\nkeys: []\n"), 0o600); err != nil {
		return err
	}
	return os.WriteFile(m.Config, fmt.Appendf(nil, gatewayYAML, Audience, Tenant, issuerPub), 0o600)
}

const gatewayYAML = `# agentgw gateway config written by 'agentgw run' (development).
audience: %s
data_dir: data
keys:
  signing: keys/gateway-signing.nk
  curve: keys/gateway-curve.nk
tenants:
  %s:
    issuers: [%s]
revocations:
  file: revocations.yaml
catalog: catalog.yaml
policies: [policies/base.cedar, policies/refunds.cedar]
limits:
  max_credential_lifetime: 25h
reload_interval: 2s
`

func (m *Material) writeActor(issuer nkeys.KeyPair, a Actor, scopes []string) (string, error) {
	kp, err := identity.NewAgent()
	if err != nil {
		return "", err
	}
	ck, err := newSeedFile(a.Curve, identity.NewCurve)
	if err != nil {
		return "", err
	}
	pub, _ := kp.PublicKey()
	xk, _ := ck.PublicKey()
	tok, err := identity.Issue(issuer, identity.IssueRequest{
		Subject: pub, Audience: Audience, Tenant: Tenant, Service: Service(a.Name),
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
	return kp, os.WriteFile(path, append(seed, '\n'), 0o600)
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
