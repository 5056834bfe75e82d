package transport_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ca is a certificate authority made at test time.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	path string // PEM file of the CA certificate
}

// pair is a certificate and key written as PEM files.
type pair struct {
	Cert, Key string
}

var serial int64

func newCA(t testing.TB, dir, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"agentgw test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	c := &ca{cert: cert, key: key, path: filepath.Join(dir, name+".pem")}
	writePEM(t, c.path, "CERTIFICATE", der)
	return c
}

// leaf issues a certificate. Server certificates get 127.0.0.1 and
// localhost as SANs; route certificates are both server and client.
func (c *ca) leaf(t testing.TB, dir, file string, subject pkix.Name, usage ...x509.ExtKeyUsage) pair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  usage,
	}
	for _, u := range usage {
		if u == x509.ExtKeyUsageServerAuth {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
			tmpl.DNSNames = []string{"localhost"}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	must(t, err)
	p := pair{Cert: filepath.Join(dir, file+".pem"), Key: filepath.Join(dir, file+"-key.pem")}
	writePEM(t, p.Cert, "CERTIFICATE", der)
	kb, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	writePEM(t, p.Key, "EC PRIVATE KEY", kb)
	return p
}

func (c *ca) server(t testing.TB, dir, file string) pair {
	return c.leaf(t, dir, file, pkix.Name{CommonName: file, Organization: []string{"agentgw"}}, x509.ExtKeyUsageServerAuth)
}

// client issues a client certificate whose subject is
// CN=<cn>,OU=<ou>,O=agentgw, the form accounts.conf maps to users.
func (c *ca) client(t testing.TB, dir, cn, ou string) pair {
	return c.leaf(t, dir, cn, pkix.Name{CommonName: cn, OrganizationalUnit: []string{ou}, Organization: []string{"agentgw"}}, x509.ExtKeyUsageClientAuth)
}

// route issues a certificate usable on both ends of a cluster route.
func (c *ca) route(t testing.TB, dir, file string) pair {
	return c.leaf(t, dir, file, pkix.Name{CommonName: file, Organization: []string{"agentgw"}}, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
}

// tlsConfig is a client TLS config trusting c, presenting p if set.
func (c *ca) tlsConfig(t testing.TB, p *pair) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(c.cert)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if p != nil {
		kp, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		must(t, err)
		cfg.Certificates = []tls.Certificate{kp}
	}
	return cfg
}

// forcing is tlsConfig presenting p whatever CAs the server asks for. Go
// otherwise sends no certificate when its issuer is not among them, and
// a test of "a certificate from another CA" would test "no certificate".
func (c *ca) forcing(t testing.TB, p pair) *tls.Config {
	t.Helper()
	cfg := c.tlsConfig(t, nil)
	kp, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	must(t, err)
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &kp, nil }
	return cfg
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o700))
	must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
