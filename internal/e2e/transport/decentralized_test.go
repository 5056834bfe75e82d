package transport_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/internal/gwtest"
	"github.com/agentgw/agentgw/internal/natstest"
)

// staticUser returns the permissions deploy/accounts.conf gives a
// certificate-mapped AGENTGW user, so the JWT model below is checked
// against the very same lists.
func staticUser(t testing.TB, opts *server.Options, name string) *server.Permissions {
	t.Helper()
	for _, u := range opts.Users {
		if u.Username == name {
			return u.Permissions
		}
	}
	t.Fatalf("accounts.conf has no user %q", name)
	return nil
}

// jwtPerms converts static permissions to user JWT permissions.
func jwtPerms(p *server.Permissions) jwt.Permissions {
	var out jwt.Permissions
	if p.Publish != nil {
		out.Pub.Allow.Add(p.Publish.Allow...)
	}
	if p.Subscribe != nil {
		out.Sub.Allow.Add(p.Subscribe.Allow...)
	}
	if p.Response != nil {
		out.Resp = &jwt.ResponsePermission{MaxMsgs: p.Response.MaxMsgs, Expires: p.Response.Expires}
	}
	return out
}

// TestDecentralizedAuth is deploy/decentralized/README.md as code: an
// operator, the AGENTGW and TENANT_A accounts with private exports and
// activation-token imports, a scoped signing key whose template gives
// every agent user its own ingress subject and inbox, and the gateway
// connecting with nats.creds (a user JWT) through gateway.Connect.
func TestDecentralizedAuth(t *testing.T) {
	d := newMaterial(t)
	// The static lists, for the gateway user.
	etc := filepath.Join(d.dir, "etc")
	d.render(t, filepath.Join(deployDir, "accounts.conf"), filepath.Join(etc, "deploy", "accounts.conf"), d.dir, nil)
	d.render(t, filepath.Join(deployDir, "..", "nats-server.conf"), filepath.Join(etc, "nats-server.conf"), d.dir, nil)
	static := serverOptions(t, filepath.Join(etc, "nats-server.conf"))

	kp := func(mk func() (nkeys.KeyPair, error)) (nkeys.KeyPair, string) {
		k, err := mk()
		must(t, err)
		pub, _ := k.PublicKey()
		return k, pub
	}
	operator, operatorPub := kp(nkeys.CreateOperator)
	sysKP, sysPub := kp(nkeys.CreateAccount)
	agw, agwPub := kp(nkeys.CreateAccount)
	tenA, tenAPub := kp(nkeys.CreateAccount)
	agentSK, agentSKPub := kp(nkeys.CreateAccount) // TENANT_A's scoped "agent" signing key

	oc := jwt.NewOperatorClaims(operatorPub)
	oc.Name = "agentgw"
	oc.SystemAccount = sysPub
	resolver := &server.MemAccResolver{}
	store := func(ac *jwt.AccountClaims, signer nkeys.KeyPair) {
		s, err := ac.Encode(signer)
		must(t, err)
		must(t, resolver.Store(ac.Subject, s))
	}
	activation := func(subject string, typ jwt.ExportType, importer string) string {
		act := jwt.NewActivationClaims(importer)
		act.ImportSubject, act.ImportType = jwt.Subject(subject), typ
		s, err := act.Encode(agw)
		must(t, err)
		return s
	}

	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	store(sc, operator)

	// AGENTGW: JetStream; private exports (token required).
	ac := jwt.NewAccountClaims(agwPub)
	ac.Name = "AGENTGW"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{DiskStorage: -1, MemoryStorage: -1, Streams: -1, Consumer: -1}
	type exp struct {
		subject, local string
		typ            jwt.ExportType
		resp           jwt.ResponseType
	}
	exports := []exp{
		{subject: "agentgw.in.tenant_a.*", typ: jwt.Service},
		{subject: "agentgw.reply.tenant_a.*", typ: jwt.Stream},
		{subject: "$JS.API.CONSUMER.INFO.AGENTGW_CAP." + durableRefunds, local: apiPrefix + ".CONSUMER.INFO.AGENTGW_CAP." + durableRefunds, typ: jwt.Service},
		{subject: "$JS.API.CONSUMER.MSG.NEXT.AGENTGW_CAP." + durableRefunds, local: apiPrefix + ".CONSUMER.MSG.NEXT.AGENTGW_CAP." + durableRefunds, typ: jwt.Service, resp: jwt.ResponseTypeStream},
		{subject: "$JS.ACK.AGENTGW_CAP." + durableRefunds + ".>", typ: jwt.Service},
	}
	tc := jwt.NewAccountClaims(tenAPub)
	tc.Name = "TENANT_A"
	// accounts.conf's TENANT_LIMITS (nsc edit account --conns
	// --subscriptions --payload).
	tc.Limits.Conn, tc.Limits.Subs, tc.Limits.Payload = tenantMaxConnections, tenantMaxSubscriptions, tenantMaxPayload
	for _, e := range exports {
		ac.Exports.Add(&jwt.Export{Subject: jwt.Subject(e.subject), Type: e.typ, TokenReq: true, ResponseType: e.resp})
		imp := &jwt.Import{Account: agwPub, Subject: jwt.Subject(e.subject), Type: e.typ, Token: activation(e.subject, e.typ, tenAPub)}
		if e.local != "" {
			imp.LocalSubject = jwt.RenamingSubject(e.local)
		}
		tc.Imports.Add(imp)
	}
	store(ac, operator)

	// TENANT_A: users are issued with a scoped signing key; its template
	// is every agent's permission set, {{subject()}} being the user's key.
	scope := jwt.NewUserScope()
	scope.Key, scope.Role = agentSKPub, "agent"
	scope.Template.Pub.Allow.Add("agentgw.in.tenant_a.{{subject()}}")
	scope.Template.Sub.Allow.Add("_INBOX.{{subject()}}.>", "agentgw.reply.tenant_a.{{subject()}}")
	tc.SigningKeys.AddScopedSigner(scope)
	store(tc, operator)

	userJWT := func(pub, account string, signer nkeys.KeyPair, perms *jwt.Permissions) string {
		uc := jwt.NewUserClaims(pub)
		if perms == nil {
			uc.IssuerAccount = account
			uc.SetScoped(true)
		} else {
			uc.Permissions = *perms
		}
		s, err := uc.Encode(signer)
		must(t, err)
		return s
	}

	opts := &server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(t.TempDir(), "js"),
		TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: resolver, SystemAccount: sysPub,
		NoSigs: true,
	}
	slog := &serverLog{}
	srv := startServer(t, opts, slog)
	url := srv.ClientURL()

	// The gateway: a user of AGENTGW with the static gateway permissions,
	// in a .creds file given to gateway.Connect as nats.creds.
	gwUser, gwUserPub := kp(nkeys.CreateUser)
	gwPerms := jwtPerms(staticUser(t, static, "CN=agentgw-gateway,OU=gateway,O=agentgw"))
	seed, _ := gwUser.Seed()
	creds, err := jwt.FormatUserConfig(userJWT(gwUserPub, "", agw, &gwPerms), seed)
	must(t, err)
	credsPath := filepath.Join(d.dir, "gateway.creds")
	must(t, os.WriteFile(credsPath, creds, 0o600))
	cfg := d.gatewayConfig(t)
	cfg.NATS = gateway.NATSConfig{URL: url, Creds: credsPath}
	gw, err := gateway.New(cfg, gateway.WithLogger(zerolog.Nop()))
	must(t, err)
	ctx := gwtest.Run(t, gw, "with a user JWT")

	// The admin (full JetStream API) provisions the refunds consumer.
	adminUser, adminPub := kp(nkeys.CreateUser)
	adminPerms := jwtPerms(staticUser(t, static, "CN=admin-1,OU=admin,O=agentgw"))
	adminSeed, _ := adminUser.Seed()
	admin, err := nats.Connect(url, nats.UserJWTAndSeed(userJWT(adminPub, "", agw, &adminPerms), string(adminSeed)))
	must(t, err)
	t.Cleanup(admin.Close)
	ajs, _ := jetstream.New(admin)
	_, err = ajs.CreateOrUpdateConsumer(ctx, gateway.StreamCap, jetstream.ConsumerConfig{
		Durable: durableRefunds, FilterSubject: "agentgw.cap.tenant_a.refunds.draft_refund", AckPolicy: jetstream.AckExplicitPolicy,
	})
	must(t, err)

	dial := func(u *user, perms *jwt.Permissions, opts ...nats.Option) natstest.Dial {
		signer := agentSK
		if perms != nil {
			signer = tenA
		}
		seed, _ := u.kp.Seed()
		token := userJWT(u.pub, tenAPub, signer, perms)
		return func() (*nats.Conn, error) {
			return nats.Connect(url, append([]nats.Option{nats.UserJWTAndSeed(token, string(seed)),
				nats.CustomInboxPrefix("_INBOX." + u.pub)}, opts...)...)
		}
	}
	connect := func(u *user, perms *jwt.Permissions) (*nats.Conn, *asyncErrs) {
		ae := &asyncErrs{}
		nc, err := dial(u, perms, nats.ErrorHandler(ae.Handler))()
		must(t, err)
		t.Cleanup(nc.Close)
		return nc, ae
	}

	// An agent issued with the scoped key: its own ingress only.
	nc, errs := connect(d.users[agent1], nil)
	a1 := d.agent(t, nc, d.users[agent1], "refund:draft")
	plain := []byte(`{"order_id":"jwt","amount_cents":7}`)
	if _, err := a1.Send(ctx, client.Request{Capability: envelope.ToolCall, Target: "refunds.draft_refund", Sealed: plain}); err != nil {
		t.Fatalf("agent Send with a scoped user JWT = %v", err)
	}
	other := "agentgw.in.tenant_a." + d.users[agent2].pub
	must(t, nc.Publish(other, []byte("x")))
	errs.Violation(t, "publish", other)
	must(t, nc.Publish("agentgw.cap.tenant_a.refunds.draft_refund", []byte("x")))
	errs.Violation(t, "publish", "agentgw.cap.tenant_a.refunds.draft_refund")

	// The refunds consumer (explicit permissions, signed by the account
	// key) reads its target through the imports.
	cu := d.users[refundsConsumr]
	cperms := jwt.Permissions{}
	cperms.Pub.Allow.Add(
		apiPrefix+".CONSUMER.INFO.AGENTGW_CAP."+durableRefunds,
		apiPrefix+".CONSUMER.MSG.NEXT.AGENTGW_CAP."+durableRefunds,
		"$JS.ACK.AGENTGW_CAP."+durableRefunds+".>",
	)
	cperms.Sub.Allow.Add("_INBOX." + cu.pub + ".>")
	cnc, _ := connect(cu, &cperms)
	m := fetchOne(t, tenantJS(t, cnc), gateway.StreamCap, durableRefunds)
	dl, err := client.VerifyDelivery(m.Subject(), m.Headers(), m.Data(), d.verifyOptions(cu, "refunds.draft_refund"))
	if err != nil || string(dl.Payload) != string(plain) {
		t.Fatalf("delivery = %v, %v; want the agent's payload", dl, err)
	}
	must(t, m.DoubleAck(ctx))
	if v := slog.Violations(`go:agentgw-gateway"`); len(v) > 0 {
		t.Errorf("the gateway hit permission violations with the static lists in a JWT:\n%v", v)
	}

	// The system account's monitoring user (the README's "monitor",
	// with accounts.conf's SYS_PERMISSIONS) asks the servers' monitoring
	// endpoints and nothing more: unrestricted, as the user nsc's --sys
	// creates is, it could purge every AGENTGW stream.
	monUser, monPub := kp(nkeys.CreateUser)
	monPerms := jwtPerms(staticUser(t, static, "CN=sysadmin-1,OU=sys,O=agentgw"))
	monSeed, _ := monUser.Seed()
	monErrs := &asyncErrs{}
	mon, err := nats.Connect(url, nats.UserJWTAndSeed(userJWT(monPub, "", sysKP, &monPerms), string(monSeed)), nats.ErrorHandler(monErrs.Handler))
	must(t, err)
	t.Cleanup(mon.Close)
	if m, err := mon.Request("$SYS.REQ.SERVER.PING.VARZ", nil, 5*time.Second); err != nil || len(m.Data) == 0 {
		t.Fatalf("monitoring request VARZ = %v; want an answer", err)
	}
	streamCount := func() int {
		n := 0
		for range ajs.StreamNames(ctx).Name() {
			n++
		}
		return n
	}
	before := streamCount()
	monErrs.RefusedPublish(t, mon, "$JS.API.ACCOUNT.PURGE."+agwPub, "$SYS.REQ.SERVER."+srv.ID()+".KICK")
	time.Sleep(300 * time.Millisecond) // a purge would have begun by now
	if after := streamCount(); after != before {
		t.Errorf("AGENTGW streams: %d before the monitoring user's purge request, %d after", before, after)
	}

	// The account's limits hold for users of its signing keys: the
	// scoped agent is told the payload limit, and the account takes
	// only its connection limit (the agent's and the consumer's above
	// are two of them) while the gateway's account goes on.
	natstest.PayloadLimit(t, nc, tenantMaxPayload, "agentgw.in.tenant_a."+d.users[agent1].pub)
	natstest.AccountConnectionLimit(t, tenantMaxConnections-2, dial(d.users[agent2], nil),
		func() (*nats.Conn, error) {
			return nats.Connect(url, nats.UserJWTAndSeed(userJWT(adminPub, "", agw, &adminPerms), string(adminSeed)))
		})
}
