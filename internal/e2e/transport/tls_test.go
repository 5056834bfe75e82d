package transport_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/natstest"
)

// TestMutualTLS connects to the deploy server with every kind of client
// certificate: only a certificate from the configured CA, plus an
// identity (a mapped subject or a configured nkey), gets in.
func TestMutualTLS(t *testing.T) {
	d := newDeployment(t, nil)
	agent := d.users[agent1]
	unknown := newUsers(t)[agent1] // a key the server does not know
	plainURL := "nats://" + strings.TrimPrefix(d.url, "tls://")
	// An agent's agentgw .creds file holds its user seed: nats.go reads
	// the nkey from it directly (deploy/README.md shows this).
	seed, _ := agent.kp.Seed()
	credsPath := filepath.Join(t.TempDir(), "agent.creds")
	issuer, _ := identity.NewIssuer()
	tok, err := identity.Issue(issuer, identity.IssueRequest{
		Subject: agent.pub, Audience: audience, Tenant: "tenant_a", Service: "s", Name: "n", XKey: agent.xkey, TTL: time.Hour,
	}, time.Now())
	must(t, err)
	must(t, identity.WriteCreds(credsPath, tok, identity.Seed(seed)))
	fromCreds, err := nats.NkeyOptionFromSeed(credsPath)
	must(t, err)

	tests := []struct {
		name     string
		url      string
		opts     []nats.Option
		wantAuth bool // refused as an authorization violation (after TLS)
		wantOK   bool
	}{
		// nats.go upgrades to TLS when the server requires it; without the
		// CA it cannot verify the server (the raw plaintext attempt is
		// refuse/plaintext-protocol below).
		{name: "refuse/nats-url-without-ca", url: plainURL, opts: []nats.Option{nats.Nkey(agent.pub, agent.kp.Sign)}},
		{name: "refuse/no-client-cert", opts: []nats.Option{nats.Secure(d.pki.ca.tlsConfig(t, nil)), nats.Nkey(agent.pub, agent.kp.Sign)}},
		{name: "refuse/cert-from-other-ca", opts: []nats.Option{nats.Secure(d.pki.ca.forcing(t, d.pki.foreign)), nats.Nkey(agent.pub, agent.kp.Sign)}},
		// The client refuses a server whose certificate it cannot verify.
		{name: "refuse/server-from-other-ca", opts: []nats.Option{nats.Secure(d.pki.other.tlsConfig(t, &d.pki.tenantCert)), nats.Nkey(agent.pub, agent.kp.Sign)}},
		{name: "refuse/unmapped-cert-no-nkey", opts: []nats.Option{nats.Secure(d.pki.ca.tlsConfig(t, &d.pki.unmapped))}, wantAuth: true},
		{name: "refuse/unknown-nkey", opts: []nats.Option{nats.Secure(d.pki.ca.tlsConfig(t, &d.pki.tenantCert)), nats.Nkey(unknown.pub, unknown.kp.Sign)}, wantAuth: true},
		// An nkey proves the seed: a public key alone signs nothing.
		{name: "refuse/nkey-wrong-seed", opts: []nats.Option{nats.Secure(d.pki.ca.tlsConfig(t, &d.pki.tenantCert)), nats.Nkey(agent.pub, unknown.kp.Sign)}, wantAuth: true},
		{name: "allow/agent-nkey", opts: []nats.Option{nats.Secure(d.pki.ca.tlsConfig(t, &d.pki.tenantCert)), nats.Nkey(agent.pub, agent.kp.Sign)}, wantOK: true},
		{name: "allow/agent-nkey-from-agentgw-creds", opts: []nats.Option{nats.Secure(d.pki.ca.tlsConfig(t, &d.pki.tenantCert)), fromCreds}, wantOK: true},
		{name: "allow/gateway-cert", opts: []nats.Option{nats.Secure(d.pki.ca.tlsConfig(t, &d.pki.gateway))}, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := tt.url
			if url == "" {
				url = d.url
			}
			opts := append([]nats.Option{nats.Timeout(2 * time.Second), nats.NoReconnect()}, tt.opts...)
			nc, err := nats.Connect(url, opts...)
			if nc != nil {
				defer nc.Close()
			}
			switch {
			case tt.wantOK && err != nil:
				t.Fatalf("Connect = %v; want a connection", err)
			case tt.wantOK:
				if !nc.TLSRequired() {
					t.Errorf("connected without TLS")
				}
			case err == nil:
				t.Fatalf("Connect succeeded; want a refusal")
			case tt.wantAuth && !errors.Is(err, nats.ErrAuthorization):
				t.Errorf("Connect = %v; want %v", err, nats.ErrAuthorization)
			case !tt.wantAuth && errors.Is(err, nats.ErrAuthorization):
				t.Errorf("Connect = %v; want a refusal before authentication (TLS)", err)
			}
		})
	}
}

// TestPlaintextProtocolRefused speaks the NATS protocol without TLS to
// the deploy server: it announces tls_required and never answers PING.
func TestPlaintextProtocolRefused(t *testing.T) {
	d := newDeployment(t, nil)
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(d.url, "tls://"), 2*time.Second)
	must(t, err)
	defer conn.Close()
	must(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	must(t, err)
	if !strings.Contains(info, `"tls_required":true`) {
		t.Fatalf("INFO %q does not require TLS", info)
	}
	_, err = conn.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n"))
	must(t, err)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return // closed: refused
		}
		if strings.HasPrefix(line, "PONG") {
			t.Fatal("the server answered a plaintext client")
		}
	}
}

// TestGatewayRequiresTLS: a gateway configured with nats.tls.required
// (as deploy/gateway.yaml is) never talks to a plaintext server, and one
// with a pinned CA never talks to a server that CA did not sign.
func TestGatewayRequiresTLS(t *testing.T) {
	plain := natstest.Start(t, natstest.Options{})
	d := newDeployment(t, nil)
	good := d.gatewayConfig(t).NATS

	t.Run("refuse/plaintext-server", func(t *testing.T) {
		for _, c := range []gateway.NATSConfig{
			{URL: plain.ClientURL(), TLS: gateway.TLSConfig{Required: true}},
			{URL: plain.ClientURL(), TLS: gateway.TLSConfig{CA: good.TLS.CA}}, // a CA alone implies TLS
			{URL: plain.ClientURL(), TLS: good.TLS},
		} {
			nc, err := gateway.Connect(c, "agentgw-gateway")
			if err == nil {
				nc.Close()
				t.Fatalf("gateway.Connect(%s, tls %+v) succeeded against a plaintext server", c.URL, c.TLS)
			}
			if !errors.Is(err, nats.ErrSecureConnWanted) {
				t.Errorf("gateway.Connect = %v; want %v", err, nats.ErrSecureConnWanted)
			}
		}
	})
	t.Run("refuse/plaintext-server-run", func(t *testing.T) {
		cfg := d.gatewayConfig(t)
		cfg.NATS.URL = plain.ClientURL()
		gw, err := gateway.New(cfg)
		must(t, err)
		defer gw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := gw.Run(ctx); !errors.Is(err, nats.ErrSecureConnWanted) {
			t.Errorf("gateway Run against a plaintext server = %v; want %v", err, nats.ErrSecureConnWanted)
		}
	})
	t.Run("refuse/server-of-other-ca", func(t *testing.T) {
		c := good
		c.TLS.CA = d.pki.other.path
		if nc, err := gateway.Connect(c, "agentgw-gateway"); err == nil {
			nc.Close()
			t.Fatal("gateway.Connect trusted a server its CA did not sign")
		}
	})
	t.Run("allow", func(t *testing.T) {
		nc, err := gateway.Connect(good, "agentgw-gateway")
		if err != nil {
			t.Fatalf("gateway.Connect = %v", err)
		}
		defer nc.Close()
		if !nc.TLSRequired() {
			t.Error("not TLS")
		}
	})
}
