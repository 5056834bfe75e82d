package scaffold

import (
	"bytes"
	"crypto/x509/pkix"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"path"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/operator"
)

//go:embed material
var material embed.FS

// Paths of what Write writes, relative to Options.Dir.
const (
	GatewayDir    = "gateway"
	GatewayConfig = "gateway/gateway.yaml"
	ConsumersDir  = "consumers"
	CADir         = "ca"
	AdminDir      = "admin"
	OperatorDir   = "operator"
)

// NodeDir is host's directory: nats-server.conf, accounts.conf, tls/.
func NodeDir(host string) string { return "nats/" + host }

// TenantDir is a tenant's directory: issuer.nk and, per role (Roles),
// <role>.creds, <role>.xk and tls/<role>.pem, tls/<role>-key.pem.
func TenantDir(tenant string) string { return "tenants/" + tenant }

// Roles are the example users of every tenant.
var Roles = []string{"agent", "approver", "consumer"}

// scopes of the example credentials: what the example catalog and
// policies let each role do.
var scopes = map[string][]string{
	"agent":    {"refund:draft", "payment:send", "kb:read"},
	"approver": {"approve:payments.*", "approve:refunds.*"},
	"consumer": {"respond:refunds.*"},
}

// service is the service claim: the example refund policy lets only
// support services draft refunds.
func service(role string) string {
	if role == "agent" {
		return "support-agent"
	}
	return role
}

// Certificate identities mapped to users in accounts.conf.
const (
	gatewayCN  = "agentgw-gateway"
	adminCN    = "admin-1"
	operatorCN = "ops-1"
	sysCN      = "sysadmin-1"
)

// consumer is one pre-created pull consumer.
type consumer struct {
	Stream, Name, Filter, Description string
}

type tenantData struct {
	Name, Account, Issuer string
	ConsumerXKey          string // the curve public key of the tenant's consumer
	Consumers             []consumer
	Users                 []userData
}

type userData struct {
	Role, Key string
	Consumers []consumer
}

// targets of the example catalog whose consumers are pre-created.
var targets = []string{"kb.search", "payments.send", "refunds.draft_refund"}

type renderer struct {
	o     Options
	d     *Deployment
	ca    *authority
	files []File
}

func (r *renderer) add(p string, mode fs.FileMode, data []byte) {
	r.files = append(r.files, File{Path: p, Mode: mode, data: data})
}

func (r *renderer) seed(p string, kp nkeys.KeyPair) error {
	seed, err := kp.Seed()
	if err != nil {
		return err
	}
	r.add(p, secretMode, append(seed, '\n'))
	return nil
}

// client issues a client certificate into dir/tls with the CA beside it.
func (r *renderer) client(dir, file, cn, ou string) error {
	p, err := r.ca.issue(clientLeaf, clientSubject(cn, ou), nil, r.o.Now, r.o.Validity)
	if err != nil {
		return err
	}
	r.add(dir+"/tls/ca.pem", publicMode, r.ca.certPEM)
	r.add(dir+"/tls/"+file+".pem", publicMode, p.cert)
	r.add(dir+"/tls/"+file+"-key.pem", secretMode, p.key)
	return nil
}

func render(o Options) (*Deployment, error) {
	r := &renderer{o: o, d: &Deployment{Dir: o.Dir, Cluster: len(o.Hosts) > 1}}
	r.d.Replicas = 1
	if r.d.Cluster {
		r.d.Replicas = 3
	}
	if err := r.pki(); err != nil {
		return nil, err
	}
	tenants, err := r.tenants()
	if err != nil {
		return nil, fmt.Errorf("scaffold: %w", err)
	}
	if err := r.gateway(tenants); err != nil {
		return nil, fmt.Errorf("scaffold: %w", err)
	}
	if err := r.servers(tenants); err != nil {
		return nil, fmt.Errorf("scaffold: %w", err)
	}
	if err := r.consumers(tenants); err != nil {
		return nil, fmt.Errorf("scaffold: %w", err)
	}
	// Every file once: the CA certificate is added beside each identity.
	seen := map[string]bool{}
	for _, f := range r.files {
		if !seen[f.Path] {
			seen[f.Path] = true
			r.d.Files = append(r.d.Files, f)
		}
	}
	return r.d, nil
}

// pki loads or makes the client CA and issues the identities that are
// not tenant users: gateway, admin, operator, system user.
func (r *renderer) pki() error {
	var err error
	if r.o.CACert != "" {
		if r.ca, err = loadAuthority(r.o.CACert, r.o.CAKey); err != nil {
			return err
		}
	} else {
		if r.ca, err = newAuthority("agentgw client CA", r.o.Now, 10*r.o.Validity); err != nil {
			return fmt.Errorf("scaffold: CA: %w", err)
		}
		r.d.NewCA = true
		r.add(CADir+"/ca-key.pem", secretMode, r.ca.keyPEM)
	}
	r.add(CADir+"/ca.pem", publicMode, r.ca.certPEM)
	for _, id := range []struct{ dir, file, cn, ou string }{
		{GatewayDir, "gateway", gatewayCN, "gateway"},
		{AdminDir, adminCN, adminCN, "admin"},
		{OperatorDir, operatorCN, operatorCN, "operator"},
		{"sys", sysCN, sysCN, "sys"},
	} {
		if err := r.client(id.dir, id.file, id.cn, id.ou); err != nil {
			return fmt.Errorf("scaffold: certificate %s: %w", id.cn, err)
		}
	}
	return nil
}

// tenants makes every tenant's issuer and users, each with a curve key
// of its own: the catalog's sealed targets name each tenant's consumer
// key (consumer_xkeys), so no tenant holds a key that opens another's
// deliveries.
func (r *renderer) tenants() ([]tenantData, error) {
	var out []tenantData
	for _, t := range r.o.Tenants {
		dir := TenantDir(t)
		issuer, err := identity.NewIssuer()
		if err != nil {
			return nil, err
		}
		if err := r.seed(dir+"/issuer.nk", issuer); err != nil {
			return nil, err
		}
		td := tenantData{Name: t, Account: strings.ToUpper(t)}
		td.Issuer, _ = issuer.PublicKey()
		var caps []consumer
		for _, target := range targets {
			caps = append(caps, consumer{
				Stream: client.StreamCapability, Name: client.CapabilityConsumerName(t, target),
				Filter: "agentgw.cap." + t + "." + target, Description: "capability consumer: " + t + " " + target,
			})
		}
		queue := consumer{
			Stream: client.StreamApproval, Name: client.ApprovalConsumerName(t),
			Filter: "agentgw.approval." + t + ".>", Description: "approval queue: " + t,
		}
		td.Consumers = append(slices.Clone(caps), queue)
		for _, role := range Roles {
			ck, err := identity.NewCurve()
			if err != nil {
				return nil, err
			}
			if role == "consumer" {
				td.ConsumerXKey, _ = ck.PublicKey()
			}
			key, err := r.user(issuer, t, role, ck, scopes[role])
			if err != nil {
				return nil, err
			}
			u := userData{Role: role, Key: key}
			switch role {
			case "approver":
				u.Consumers = []consumer{queue}
			case "consumer":
				// The consumers of the targets its credential answers
				// for, as in deploy/accounts.conf: a tool reads its own
				// target's deliveries, not every target's.
				cred := identity.Credential{Scopes: scopes[role]}
				for i, target := range targets {
					if cred.HasScope("respond:" + target) {
						u.Consumers = append(u.Consumers, caps[i])
					}
				}
			}
			td.Users = append(td.Users, u)
			if err := r.client(dir, role, t+"-"+role, t); err != nil {
				return nil, err
			}
		}
		// The operator's agentgw credential for this tenant (replays);
		// its NATS identity is its certificate.
		op, err := identity.NewAgent()
		if err != nil {
			return nil, err
		}
		opCurve, err := identity.NewCurve()
		if err != nil {
			return nil, err
		}
		opXKey, _ := opCurve.PublicKey()
		if err := r.seed(OperatorDir+"/"+t+".xk", opCurve); err != nil {
			return nil, err
		}
		if _, err := r.creds(OperatorDir+"/"+t+".creds", issuer, op, t, "operator", opXKey, []string{operator.Scope}); err != nil {
			return nil, err
		}
		out = append(out, td)
	}
	return out, nil
}

// user makes a tenant user: its nkey (NATS user and agentgw key), its
// credential and its curve seed. It returns the public key.
func (r *renderer) user(issuer nkeys.KeyPair, tenant, role string, curve nkeys.KeyPair, scopes []string) (string, error) {
	dir := TenantDir(tenant)
	kp, err := identity.NewAgent()
	if err != nil {
		return "", err
	}
	xk, _ := curve.PublicKey()
	if err := r.seed(dir+"/"+role+".xk", curve); err != nil {
		return "", err
	}
	return r.creds(dir+"/"+role+".creds", issuer, kp, tenant, role, xk, scopes)
}

// creds issues kp's credential and adds its .creds file.
func (r *renderer) creds(p string, issuer, kp nkeys.KeyPair, tenant, role, xk string, scopes []string) (string, error) {
	pub, _ := kp.PublicKey()
	tok, err := identity.Issue(issuer, identity.IssueRequest{
		Subject: pub, Audience: r.o.Audience, Tenant: tenant, Service: service(role),
		Name: tenant + " " + role, Scopes: scopes, XKey: xk, TTL: r.o.CredentialTTL,
	}, r.o.Now)
	if err != nil {
		return "", err
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", err
	}
	data, err := identity.FormatCreds(tok, identity.Seed(seed))
	if err != nil {
		return "", err
	}
	r.add(p, secretMode, data)
	return pub, nil
}

// gateway writes gateway/: config, keys, certificate, catalog, policies,
// schemas, revocations.
func (r *renderer) gateway(tenants []tenantData) error {
	signing, err := identity.NewGatewayKey()
	if err != nil {
		return err
	}
	curve, err := identity.NewCurve()
	if err != nil {
		return err
	}
	r.d.GatewayKey, _ = signing.PublicKey()
	r.d.GatewayXKey, _ = curve.PublicKey()
	if err := r.seed(GatewayDir+"/keys/gateway-signing.nk", signing); err != nil {
		return err
	}
	if err := r.seed(GatewayDir+"/keys/gateway-curve.nk", curve); err != nil {
		return err
	}
	var urls []string
	for _, h := range r.o.Hosts {
		urls = append(urls, fmt.Sprintf("tls://%s:%d", hostPort(h), r.o.ClientPort))
	}
	dataDir := r.o.DataDir
	if dataDir == "" {
		dataDir = "data"
	}
	names := make([]string, len(tenants))
	for i, t := range tenants {
		names[i] = t.Name
	}
	data := map[string]any{
		"Audience": r.o.Audience, "DataDir": dataDir, "URL": strings.Join(urls, ","),
		"GatewayUser": rfc2253(gatewayCN, "gateway"), "Tenants": tenants, "Replicas": r.d.Replicas,
		"ScaleOut": r.o.Instances > 1, "Instances": r.o.Instances, "Partitions": partitionsFor(r.o.Instances),
		"TenantList": strings.Join(names, ", "),
	}
	for _, f := range []string{"gateway.yaml", "catalog.yaml"} {
		out, err := execute(f, data)
		if err != nil {
			return err
		}
		r.add(GatewayDir+"/"+f, publicMode, out)
	}
	r.add(GatewayDir+"/revocations.yaml", publicMode, []byte("# agentgw revocations: re-read on reload, no restart\nprincipals: []\njtis: []\nkeys: []\n"))
	return fs.WalkDir(material, "material", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		dir := path.Base(path.Dir(p))
		if dir != "policies" && dir != "schemas" {
			return nil
		}
		b, err := material.ReadFile(p)
		if err != nil {
			return err
		}
		r.add(GatewayDir+"/"+dir+"/"+path.Base(p), publicMode, b)
		return nil
	})
}

// servers writes nats/<host>/ for every host: config, accounts,
// certificates.
func (r *renderer) servers(tenants []tenantData) error {
	names := make([]string, len(tenants))
	for i, t := range tenants {
		names[i] = t.Name
	}
	accounts, err := execute("accounts.conf", map[string]any{
		"TenantList": strings.Join(names, ", "), "Tenants": tenants,
		"GatewayUser": rfc2253(gatewayCN, "gateway"), "AdminUser": rfc2253(adminCN, "admin"),
		"OperatorUser": rfc2253(operatorCN, "operator"), "SysUser": rfc2253(sysCN, "sys"),
		"TenantMaxConnections": r.o.TenantMaxConnections, "TenantMaxSubscriptions": r.o.TenantMaxSubscriptions,
	})
	if err != nil {
		return err
	}
	var routeCA *authority
	var routes []string
	if r.d.Cluster {
		if routeCA, err = newAuthority("agentgw route CA", r.o.Now, 10*r.o.Validity); err != nil {
			return err
		}
		r.add(CADir+"/route-ca.pem", publicMode, routeCA.certPEM)
		r.add(CADir+"/route-ca-key.pem", secretMode, routeCA.keyPEM)
		for _, h := range r.o.Hosts {
			routes = append(routes, fmt.Sprintf("nats-route://%s:%d", hostPort(h), r.o.RoutePort))
		}
	}
	for _, h := range r.o.Hosts {
		local := NodeDir(h)
		dir := r.o.NATSDir
		if dir == "" {
			dir = path.Join(strings.ReplaceAll(r.o.Dir, "\\", "/"), local)
		}
		store := r.o.StoreDir
		if store == "" {
			store = dir + "/jetstream"
		}
		sans := append([]string{h}, r.o.ServerSANs...)
		srv, err := r.ca.issue(serverLeaf, serverSubject(h), sans, r.o.Now, r.o.Validity)
		if err != nil {
			return err
		}
		r.add(local+"/tls/ca.pem", publicMode, r.ca.certPEM)
		r.add(local+"/tls/server.pem", publicMode, srv.cert)
		r.add(local+"/tls/server-key.pem", secretMode, srv.key)
		if routeCA != nil {
			rt, err := routeCA.issue(routeLeaf, serverSubject(h), sans, r.o.Now, r.o.Validity)
			if err != nil {
				return err
			}
			r.add(local+"/tls/route-ca.pem", publicMode, routeCA.certPEM)
			r.add(local+"/tls/route.pem", publicMode, rt.cert)
			r.add(local+"/tls/route-key.pem", secretMode, rt.key)
		}
		conf, err := execute("nats-server.conf", map[string]any{
			"Name": h, "Cluster": r.d.Cluster, "Routes": routes, "Dir": dir, "StoreDir": store,
			"ClientPort": r.o.ClientPort, "RoutePort": r.o.RoutePort, "SANs": strings.Join(sans, ", "),
		})
		if err != nil {
			return err
		}
		r.add(local+"/nats-server.conf", publicMode, conf)
		r.add(local+"/accounts.conf", publicMode, accounts)
	}
	return nil
}

// consumerFile is a pre-created consumer as `nats consumer add --config`
// reads it (jetstream.ConsumerConfig's JSON).
type consumerFile struct {
	Durable       string        `json:"durable_name"`
	Description   string        `json:"description"`
	FilterSubject string        `json:"filter_subject"`
	DeliverPolicy string        `json:"deliver_policy"`
	AckPolicy     string        `json:"ack_policy"`
	AckWait       time.Duration `json:"ack_wait"`
	MaxDeliver    int           `json:"max_deliver"`
	MaxAckPending int           `json:"max_ack_pending"`
	MaxWaiting    int           `json:"max_waiting"`
	ReplayPolicy  string        `json:"replay_policy"`
}

// consumers writes consumers/<STREAM>.<durable>.json.
func (r *renderer) consumers(tenants []tenantData) error {
	for _, t := range tenants {
		for _, c := range t.Consumers {
			b, err := json.MarshalIndent(consumerFile{
				Durable: c.Name, Description: c.Description, FilterSubject: c.Filter,
				DeliverPolicy: "all", AckPolicy: "explicit", AckWait: 30 * time.Second,
				MaxDeliver: -1, MaxAckPending: 1000, MaxWaiting: 64, ReplayPolicy: "instant",
			}, "", "  ")
			if err != nil {
				return err
			}
			r.add(ConsumersDir+"/"+c.Stream+"."+c.Name+".json", publicMode, append(b, '\n'))
		}
	}
	return nil
}

// execute renders the embedded template name.
func execute(name string, data any) ([]byte, error) {
	src, err := material.ReadFile("material/" + name)
	if err != nil {
		return nil, err
	}
	t, err := template.New(name).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := t.Execute(&out, data); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func serverSubject(host string) pkix.Name {
	return pkix.Name{CommonName: host, Organization: []string{org}}
}

// hostPort writes an IPv6 address in brackets for a URL.
func hostPort(h string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]"
	}
	return h
}

func isIP(s string) bool { return net.ParseIP(s) != nil }
