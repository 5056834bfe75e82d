package gateway

import (
	"os"
	"strings"
	"testing"
)

// TestReloadHidesSeedInPolicyFile: a policies entry that names an nkey
// seed file (here the gateway's own signing seed copied over the policy
// file) fails the reload; cedar-go quotes the token it stopped at, the
// whole seed. Neither the error Reload returns nor the gateway's log
// holds it, and the problem still names the file, line and column.
func TestReloadHidesSeedInPolicyFile(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the failed reload is logged as an error
	h.start()
	h.outputFor(h.send(h.body(nil))) // running
	seed, err := os.ReadFile(h.cfg.Keys.Signing)
	must(t, err)
	replaceFile(t, h.cfg.Policies[0], string(seed)+"\n")
	err = h.gw.Reload()
	if err == nil {
		t.Fatal("Reload accepted a seed file as policies")
	}
	if strings.Contains(err.Error(), string(seed)) {
		t.Errorf("the Reload error holds the seed")
	}
	if !strings.Contains(err.Error(), "policy.cedar:2:1: parse error") {
		t.Errorf("the Reload error does not locate the problem: %v", err)
	}
	if !strings.Contains(h.logs.String(), `"message":"reload"`) {
		t.Error("the failed reload was not logged")
	}
	h.scanSecrets()
}

// TestReloadHidesSecretsInRevocations: a seed pasted into keys:, a JWT
// into jtis: and a seed with a control character into principals: are
// malformed entries the reload reports; the report, returned and logged,
// quotes them redacted.
func TestReloadHidesSecretsInRevocations(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the failed reload is logged as an error
	h.start()
	h.outputFor(h.send(h.body(nil))) // running
	seed, err := h.agent.kp.Seed()
	must(t, err)
	tok := h.agent.token.Reveal()
	replaceFile(t, h.cfg.Revocations.File, "keys: ["+string(seed)+"]\njtis: [\""+tok+"\"]\nprincipals: [\""+string(seed)+"\\u0001\"]\n")
	err = h.gw.Reload()
	if err == nil {
		t.Fatal("Reload accepted malformed revocations")
	}
	msg := err.Error()
	for _, want := range []string{"is not an agent public key", "is not a credential id", "is not a principal"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Reload error lacks %q: %v", want, err)
		}
	}
	for _, s := range []string{string(seed[:20]), tok[:20]} {
		if strings.Contains(msg, s) || strings.Contains(h.logs.String(), s) {
			t.Errorf("a secret (starts %.4q) is in the Reload error or the log:\n%v", s, msg)
		}
	}
	h.scanSecrets()
}
