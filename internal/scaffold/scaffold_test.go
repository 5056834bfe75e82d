package scaffold_test

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/internal/scaffold"
)

func oneNode(dir string) scaffold.Options {
	return scaffold.Options{Dir: dir, Tenants: []string{"acme"}, Hosts: []string{"nats.example.com"}}
}

// TestModes: every secret is 0600 and every file Write reports as one
// is a key, a seed or a credential; nothing else is.
func TestModes(t *testing.T) {
	dir := t.TempDir()
	d, err := scaffold.Write(oneNode(dir))
	must(t, err)
	secretName := regexp.MustCompile(`(-key\.pem|\.nk|\.xk|\.creds)$`)
	for _, f := range d.Files {
		fi, err := os.Stat(filepath.Join(dir, f.Path))
		must(t, err)
		if f.Secret() != secretName.MatchString(f.Path) {
			t.Errorf("%s: secret %v; want it a secret exactly when it holds a key, seed or credential", f.Path, f.Secret())
		}
		if f.Secret() && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v; want 0600", f.Path, fi.Mode().Perm())
		}
		if !f.Secret() && fi.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s: mode %v is writable by others", f.Path, fi.Mode().Perm())
		}
	}
	fi, err := os.Stat(filepath.Join(dir, scaffold.TenantDir("acme")))
	must(t, err)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("tenant directory mode %v; want 0700", fi.Mode().Perm())
	}
}

// TestRefuseOverwrite: a second Write into the same directory refuses
// and changes nothing; with Force it replaces every file.
func TestRefuseOverwrite(t *testing.T) {
	dir := t.TempDir()
	_, err := scaffold.Write(oneNode(dir))
	must(t, err)
	conf := filepath.Join(dir, scaffold.GatewayConfig)
	before, err := os.ReadFile(conf)
	must(t, err)
	// One file in the way is enough to refuse.
	other := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(other, scaffold.GatewayDir), 0o700))
	must(t, os.WriteFile(filepath.Join(other, scaffold.GatewayConfig), []byte("mine\n"), 0o600))
	if _, err := scaffold.Write(oneNode(other)); !errors.Is(err, scaffold.ErrExists) || !strings.Contains(err.Error(), scaffold.GatewayConfig) {
		t.Fatalf("Write over an existing gateway.yaml = %v; want ErrExists naming it", err)
	}
	if got, _ := os.ReadFile(filepath.Join(other, scaffold.GatewayConfig)); string(got) != "mine\n" {
		t.Fatalf("the refused Write changed gateway.yaml to %q", got)
	}
	if _, err := os.Stat(filepath.Join(other, scaffold.CADir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused Write wrote %s: %v", scaffold.CADir, err)
	}

	if _, err := scaffold.Write(oneNode(dir)); !errors.Is(err, scaffold.ErrExists) {
		t.Fatalf("second Write = %v; want ErrExists", err)
	}
	o := oneNode(dir)
	o.Force = true
	_, err = scaffold.Write(o)
	must(t, err)
	after, err := os.ReadFile(conf)
	must(t, err)
	if string(before) == string(after) {
		t.Fatal("Write with Force left gateway.yaml as it was (new issuers expected)")
	}
}

// TestExistingCA: with an existing CA every certificate chains to it and
// its key is not copied.
func TestExistingCA(t *testing.T) {
	first := t.TempDir()
	_, err := scaffold.Write(oneNode(first))
	must(t, err)
	dir := t.TempDir()
	o := oneNode(dir)
	o.CACert = filepath.Join(first, scaffold.CADir, "ca.pem")
	o.CAKey = filepath.Join(first, scaffold.CADir, "ca-key.pem")
	d, err := scaffold.Write(o)
	must(t, err)
	if d.NewCA {
		t.Fatal("Write made a CA although one was given")
	}
	for _, f := range d.Files {
		if strings.HasSuffix(f.Path, "ca-key.pem") {
			t.Errorf("the CA key was copied to %s", f.Path)
		}
	}
	caPEM, err := os.ReadFile(o.CACert)
	must(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	for _, p := range []string{scaffold.NodeDir("nats.example.com") + "/tls/server.pem", scaffold.GatewayDir + "/tls/gateway.pem"} {
		data, err := os.ReadFile(filepath.Join(dir, p))
		must(t, err)
		b, _ := pem.Decode(data)
		cert, err := x509.ParseCertificate(b.Bytes)
		must(t, err)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s does not chain to the given CA: %v", p, err)
		}
	}

	// A key that is not the certificate's is refused.
	o = oneNode(t.TempDir())
	o.CACert = filepath.Join(first, scaffold.CADir, "ca.pem")
	o.CAKey = filepath.Join(first, scaffold.GatewayDir, "tls", "gateway-key.pem")
	if _, err := scaffold.Write(o); !errors.Is(err, scaffold.ErrCA) {
		t.Fatalf("Write with a key that is not the CA's = %v; want ErrCA", err)
	}
}

// TestOptions: bad options are refused together, nothing written.
func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*scaffold.Options)
		want string
	}{
		{"refuse/two-hosts", func(o *scaffold.Options) { o.Hosts = []string{"a", "b"} }, "2 hosts"},
		{"refuse/bad-tenant", func(o *scaffold.Options) { o.Tenants = []string{"Acme Corp"} }, `tenant "Acme Corp"`},
		{"refuse/reserved-tenant", func(o *scaffold.Options) { o.Tenants = []string{"ops"} }, "taken by agentgw"},
		{"refuse/unroutable-tenant", func(o *scaffold.Options) { o.Tenants = []string{"acme", "_unroutable"} }, "reserved for denied messages"},
		{"refuse/duplicate-host", func(o *scaffold.Options) { o.Hosts = []string{"a", "a", "b"} }, "given twice"},
		{"refuse/half-ca", func(o *scaffold.Options) { o.CACert = "ca.pem" }, "both its certificate and its key"},
		{"refuse/relative-nats-dir", func(o *scaffold.Options) { o.NATSDir = "etc/nats" }, "must be absolute"},
		{"refuse/bad-host", func(o *scaffold.Options) { o.Hosts = []string{"nats_1"} }, `host "nats_1"`},
		{"refuse/negative-tenant-connections", func(o *scaffold.Options) { o.TenantMaxConnections = -1 }, "tenant max connections -1"},
		{"refuse/huge-tenant-subscriptions", func(o *scaffold.Options) { o.TenantMaxSubscriptions = scaffold.MaxTenantLimit + 1 }, "tenant max subscriptions"},
		// Written into the configurations as they are: a line break or a
		// quote would add configuration of its own.
		{"refuse/audience-line-break", func(o *scaffold.Options) { o.Audience = "agentgw\nnotify_senders: false" }, "audience"},
		{"refuse/data-dir-line-break", func(o *scaffold.Options) { o.DataDir = "data\nnotify_senders: false" }, "may not hold"},
		{"refuse/store-dir-quote", func(o *scaffold.Options) { o.StoreDir = `/var/lib/nats" } authorization { users: [{user: x}] } x {"` }, "may not hold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			o := oneNode(dir)
			tc.mod(&o)
			_, err := scaffold.Write(o)
			if !errors.Is(err, scaffold.ErrOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write = %v; want ErrOptions with %q", err, tc.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refused Write created %s", dir)
			}
		})
	}
}

// TestGatewayLoads: the written gateway.yaml, catalog and policies load
// as the gateway loads them, for one instance and for several, and its
// ingress caps fit the written server's storage.
func TestGatewayLoads(t *testing.T) {
	for _, instances := range []int{1, 3} {
		dir := t.TempDir()
		o := oneNode(dir)
		o.Tenants = []string{"acme", "globex", "initech"}
		o.Instances = instances
		_, err := scaffold.Write(o)
		must(t, err)
		cfg, err := gateway.LoadConfig(filepath.Join(dir, scaffold.GatewayConfig))
		must(t, err)
		if len(cfg.Tenants) != 3 || (cfg.ScaleOut != nil) != (instances > 1) {
			t.Errorf("instances %d: tenants %d, scale_out %v", instances, len(cfg.Tenants), cfg.ScaleOut)
		}
		if _, err := catalog.Load(cfg.Catalog); err != nil {
			t.Errorf("catalog: %v", err)
		}
		if _, err := policy.Load(cfg.Policies...); err != nil {
			t.Errorf("policies: %v", err)
		}
		// The ingress cap: a quarter of the written server's file store,
		// the rest for the outputs.
		srv := serverOptions(t, filepath.Join(dir, scaffold.NodeDir("nats.example.com"), "nats-server.conf"))
		if s := cfg.Streams; s.IngressMaxBytes != srv.JetStreamMaxStore/4 {
			t.Errorf("streams: ingress_max_bytes %d; want a quarter of max_file_store %d",
				s.IngressMaxBytes, srv.JetStreamMaxStore)
		}
	}
}

// TestPermissionsMatchDeploy: the written accounts.conf grants the
// gateway, operators and the admin exactly what deploy/accounts.conf
// (which internal/e2e/transport tests line by line) grants them, and by
// default limits tenant accounts as it does (TENANT_LIMITS).
func TestPermissionsMatchDeploy(t *testing.T) {
	dir := t.TempDir()
	_, err := scaffold.Write(oneNode(dir))
	must(t, err)
	block := func(path string) string {
		t.Helper()
		data, err := os.ReadFile(path)
		must(t, err)
		s := string(data)
		i := strings.Index(s, "GATEWAY_PERMISSIONS = {")
		j := strings.Index(s, "\naccounts {")
		if i < 0 || j < i {
			t.Fatalf("%s: no permission blocks before accounts", path)
		}
		return s[i:j]
	}
	want := block(filepath.Join("..", "..", "deploy", "accounts.conf"))
	if got := block(filepath.Join(dir, scaffold.NodeDir("nats.example.com"), "accounts.conf")); got != want {
		t.Fatalf("the written permission blocks differ from deploy/accounts.conf:\n%s", got)
	}
}

// TestConsumerKeysPerTenant: every tenant's consumer has a curve key of
// its own, and the catalog re-seals that tenant's deliveries of every
// sealed target to it: no tenant's consumer.xk opens another tenant's
// deliveries.
func TestConsumerKeysPerTenant(t *testing.T) {
	dir := t.TempDir()
	o := oneNode(dir)
	o.Tenants = []string{"acme", "globex"}
	_, err := scaffold.Write(o)
	must(t, err)
	keys := map[string]string{}
	for _, tn := range o.Tenants {
		kp, err := identity.ReadCurveSeedFile(filepath.Join(dir, scaffold.TenantDir(tn), "consumer.xk"))
		must(t, err)
		keys[tn], err = kp.PublicKey()
		must(t, err)
		kp.Wipe()
	}
	if keys["acme"] == keys["globex"] {
		t.Fatalf("acme and globex share the consumer curve key %s", keys["acme"])
	}
	cfg, err := gateway.LoadConfig(filepath.Join(dir, scaffold.GatewayConfig))
	must(t, err)
	cat, err := catalog.Load(cfg.Catalog)
	must(t, err)
	sealed := 0
	for _, name := range cat.Names() {
		tg, _ := cat.Lookup(name)
		if tg.Plain {
			continue
		}
		sealed++
		for _, tn := range o.Tenants {
			if got := tg.ConsumerKey(tn); got != keys[tn] {
				t.Errorf("%s: ConsumerKey(%s) = %s; want %s (tenants/%s/consumer.xk)", name, tn, got, keys[tn], tn)
			}
		}
	}
	if sealed == 0 {
		t.Error("the catalog has no sealed target")
	}
}

// TestConsumerFilePerPair: every tenant and target gets a consumer file of
// its own, named <STREAM>.<durable>.json, whose durable reads back as its
// tenant and target and whose filter is theirs, even for tenants whose
// names meet a target at a hyphen.
func TestConsumerFilePerPair(t *testing.T) {
	dir := t.TempDir()
	o := oneNode(dir)
	o.Tenants = []string{"acme", "acme-kb", "acme_kb"}
	_, err := scaffold.Write(o)
	must(t, err)
	files, err := filepath.Glob(filepath.Join(dir, scaffold.ConsumersDir, "*.json"))
	must(t, err)
	caps := 0
	for _, f := range files {
		var c struct {
			Durable string `json:"durable_name"`
			Filter  string `json:"filter_subject"`
		}
		raw, err := os.ReadFile(f)
		must(t, err)
		must(t, json.Unmarshal(raw, &c))
		stream, durable, _ := strings.Cut(strings.TrimSuffix(filepath.Base(f), ".json"), ".")
		if durable != c.Durable {
			t.Errorf("%s: durable %q; want the file's name", f, c.Durable)
		}
		if stream != client.StreamCapability {
			continue
		}
		caps++
		tenant, rest, _ := strings.Cut(c.Durable, "~")
		if want := "agentgw.cap." + tenant + "." + strings.ReplaceAll(rest, "~", "."); c.Filter != want || !slices.Contains(o.Tenants, tenant) {
			t.Errorf("%s: filter %s; want %s, a tenant's", f, c.Filter, want)
		}
	}
	if want := len(o.Tenants) * 3; caps != want {
		t.Errorf("%d capability consumer files; want %d, one per tenant and target", caps, want)
	}
}
