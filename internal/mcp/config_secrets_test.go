package mcp

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

// TestEndpointConfigHidesSeeds: a seed pasted where a trusted gateway or
// a trusted issuer public key belongs is refused, and the error, which
// is logged or printed, quotes it redacted.
func TestEndpointConfigHidesSeeds(t *testing.T) {
	server, _ := nkeys.CreateServer()
	account, _ := nkeys.CreateAccount()
	nseed, _ := server.Seed()
	aseed, _ := account.Seed()
	e := EndpointConfig{TrustedGateways: []string{string(nseed)}, TrustedIssuers: []string{string(aseed)}}
	err := e.validate()
	if err == nil {
		t.Fatal("seeds accepted as public keys")
	}
	for _, s := range [][]byte{nseed, aseed} {
		if strings.Contains(err.Error(), string(s[:20])) {
			t.Errorf("the error quotes a seed (starts %.4q)", s)
		}
	}
	for _, want := range []string{"trusted gateway \"S…(58 characters)\"", "trusted issuer \"S…(58 characters)\""} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks %q", want)
		}
	}
}
