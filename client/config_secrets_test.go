package client

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

// TestConfigErrorsHideSeeds: a seed pasted where a trusted gateway key
// or a gateway xkey belongs is refused, and the error, which the caller
// is likely to log, quotes it redacted (identity.SafeText).
func TestConfigErrorsHideSeeds(t *testing.T) {
	server, _ := nkeys.CreateServer()
	curve, _ := nkeys.CreateCurveKeys()
	nseed, _ := server.Seed()
	xseed, _ := curve.Seed()
	check := func(what string, err error, want ...string) {
		t.Helper()
		if err == nil {
			t.Fatalf("%s: a seed was accepted as a public key", what)
		}
		for _, s := range [][]byte{nseed, xseed} {
			if strings.Contains(err.Error(), string(s[:20])) {
				t.Errorf("%s: the error quotes a seed (starts %.4q)", what, s)
			}
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: the error lacks %q: %v", what, w, err)
			}
		}
	}
	cc := DefaultConsumerConfig()
	cc.TrustedGateways, cc.GatewayXKeys = []string{string(nseed)}, []string{string(xseed)}
	check("ConsumerConfig", cc.Validate(), "trusted gateway", "gateway xkey", "S…(58 characters)")

	var ac ApproverConfig
	ac.TrustedGateways = []string{string(nseed)}
	check("ApproverConfig", ac.Validate(), "trusted gateway", "S…(58 characters)")
}
