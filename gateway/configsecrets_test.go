package gateway

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

// TestConfigHidesIssuerSeed: an issuer seed pasted where its public key
// belongs (tenants.<t>.issuers) is refused, and the error, which the CLI
// prints and a reload logs, quotes it redacted.
func TestConfigHidesIssuerSeed(t *testing.T) {
	kp, _ := nkeys.CreateAccount()
	seed, _ := kp.Seed()
	cfg := DefaultConfig()
	cfg.Tenants = map[string]TenantConfig{"tenant_a": {Issuers: []string{string(seed)}}}
	err := cfg.Validate()
	if err == nil {
		t.Fatal("an issuer seed was accepted as an issuer key")
	}
	if strings.Contains(err.Error(), string(seed[:20])) {
		t.Errorf("the error quotes the seed")
	}
	if !strings.Contains(err.Error(), `issuer "S…(58 characters)" is not an account public key`) {
		t.Errorf("the error does not name the issuer entry")
	}
}
