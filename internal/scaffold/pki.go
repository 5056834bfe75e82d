package scaffold

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// authority is a certificate authority: made here or loaded from the
// operator's files.
type authority struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	keyPEM  []byte // nil for a loaded CA: its key is never copied
}

// newAuthority makes a self-signed P-256 CA valid for validity.
func newAuthority(cn string, now time.Time, validity time.Duration) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{org}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &authority{
		cert:    cert,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:     key,
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
	}, nil
}

// ErrCA reports an existing CA that cannot sign: unreadable files, a key
// that is not the certificate's, a certificate that is not a CA.
var ErrCA = errors.New("scaffold: CA")

// loadAuthority reads an existing CA certificate and its private key
// (PKCS#8, SEC 1 EC or PKCS#1 RSA PEM). Errors name the files, never the
// key material.
func loadAuthority(certFile, keyFile string) (*authority, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %w", ErrCA, err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: %s: no PEM CERTIFICATE block", ErrCA, certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCA, certFile, err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: %s is not a CA certificate (basic constraints CA and key usage certSign)", ErrCA, certFile)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: key: %w", ErrCA, err)
	}
	defer clear(keyPEM)
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("%w: %s: no PEM block", ErrCA, keyFile)
	}
	defer clear(kb.Bytes)
	var key any
	switch kb.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		return nil, fmt.Errorf("%w: %s: PEM block %q is not a private key", ErrCA, keyFile, kb.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: cannot parse the private key", ErrCA, keyFile)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %s: unsupported key type", ErrCA, keyFile)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := signer.Public().(equaler); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: the key in %s does not belong to the certificate in %s", ErrCA, keyFile, certFile)
	}
	return &authority{cert: cert, certPEM: pem.EncodeToMemory(block), key: signer}, nil
}

// leafKind is what a leaf certificate is for.
type leafKind int

const (
	serverLeaf leafKind = iota // a node's client port
	clientLeaf                 // a client identity (mTLS)
	routeLeaf                  // both ends of a cluster route
)

// pemPair is a certificate and its private key, PEM encoded.
type pemPair struct {
	cert, key []byte
}

// issue signs a P-256 leaf for subject. Server and route certificates
// carry sans (DNS names or IP addresses).
func (a *authority) issue(kind leafKind, subject pkix.Name, sans []string, now time.Time, validity time.Duration) (pemPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pemPair{}, err
	}
	serial, err := newSerial()
	if err != nil {
		return pemPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	switch kind {
	case serverLeaf:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case clientLeaf:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case routeLeaf:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	if kind != clientLeaf {
		for _, s := range sans {
			if ip := net.ParseIP(s); ip != nil {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			} else {
				tmpl.DNSNames = append(tmpl.DNSNames, s)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return pemPair{}, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return pemPair{}, err
	}
	return pemPair{
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
	}, nil
}

// newSerial is a random 128-bit serial number, as RFC 5280 allows.
func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// org is the O of every subject: accounts.conf maps
// CN=<name>,OU=<role>,O=agentgw to users.
const org = "agentgw"

// clientSubject is the subject of a client certificate; its RFC 2253
// form is the user name in accounts.conf.
func clientSubject(cn, ou string) pkix.Name {
	return pkix.Name{CommonName: cn, OrganizationalUnit: []string{ou}, Organization: []string{org}}
}

// rfc2253 is the user name nats-server derives from a clientSubject
// (verify_and_map).
func rfc2253(cn, ou string) string { return "CN=" + cn + ",OU=" + ou + ",O=" + org }
