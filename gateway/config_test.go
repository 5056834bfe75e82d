package gateway

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/catalog"
)

// TestLoadConfigListsEveryDecodeProblem: every unknown field and every
// value of the wrong type is reported in one error, each with its place,
// not only the first the YAML library meets.
func TestLoadConfigListsEveryDecodeProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	must(t, os.WriteFile(path, []byte(`
audience: gw
data_dir: data
catalgo: catalog.yaml
keys:
  signing: signing.nk
  curv: curve.nk
limits:
  max_ttl: soon
consumer:
  batch: many
tenants:
  tenant_a:
    issuer: [AAAA]
tracing:
  exporter: stdout
  fiel: spans.jsonl
`), 0o600))
	_, err := LoadConfig(path)
	if err == nil {
		t.Fatal("LoadConfig accepted a config with six problems")
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Stage != StageDecode {
		t.Fatalf("LoadConfig = %v; want a *ConfigError of stage %q", err, StageDecode)
	}
	for _, want := range []string{
		`catalgo`, `keys.curv`, `limits.max_ttl`, `consumer.batch`, `tenants.tenant_a.issuer`, `tracing.fiel`,
		`line 4`, `line 7`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig error lacks %q:\n%v", want, err)
		}
	}
	if n := len(ce.Problems); n != 6 {
		t.Errorf("%d problems reported; want 6:\n%v", n, err)
	}

	// A config that decodes is validated, every problem at once.
	must(t, os.WriteFile(path, []byte("audience: gw\n"), 0o600))
	_, err = LoadConfig(path)
	if !errors.As(err, &ce) || ce.Stage != StageValidate || len(ce.Problems) < 3 {
		t.Errorf("LoadConfig of an incomplete config = %v; want a validation ConfigError listing each missing setting", err)
	}

	// A file that cannot be read is not a list of problems.
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || errors.As(err, &ce) {
		t.Errorf("LoadConfig(missing) = %v; want a plain read error", err)
	}
}

// TestConfigRefusesIssuerWithLineBreak: a trusted issuer is a key in the
// wire's strict form; nkeys alone reads one with a line break in it.
func TestConfigRefusesIssuerWithLineBreak(t *testing.T) {
	kp, err := nkeys.CreateAccount()
	must(t, err)
	pub, _ := kp.PublicKey()
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	for _, tc := range []struct {
		issuer  string
		refused bool
	}{{pub, false}, {pub[:20] + `\n` + pub[20:], true}} {
		must(t, os.WriteFile(path, []byte("audience: gw\ntenants:\n  tenant_a:\n    issuers: [\""+tc.issuer+"\"]\n"), 0o600))
		_, err := LoadConfig(path)
		if got := err != nil && strings.Contains(err.Error(), "is not an account public key"); got != tc.refused {
			t.Errorf("LoadConfig(issuer %q): refused = %v; want %v (%v)", tc.issuer, got, tc.refused, err)
		}
	}
}

// TestConfigHint: "every problem" is claimed only for a complete list.
func TestConfigHint(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		want       string
	}{
		{"decode", "catalgo: x\nkeys:\n  curv: y\n", "every decoding problem is listed above"},
		{"validate", "audience: gw\n", "every problem is listed above"},
		{"syntax", "audience: [gw\n", "reports the first problem it meets"},
	} {
		path := filepath.Join(dir, tc.name+".yaml")
		must(t, os.WriteFile(path, []byte(tc.yaml), 0o600))
		_, err := LoadConfig(path)
		if got := ConfigHint(err); !strings.Contains(got, tc.want) {
			t.Errorf("%s: ConfigHint(%v) = %q; want %q", tc.name, err, got, tc.want)
		}
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); ConfigHint(err) != "" {
		t.Errorf("ConfigHint of a read error = %q; want none", ConfigHint(err))
	}
}

// TestConfigDuplicateWindowCoversDecisionTTL: an output re-emitted
// later than the duplicate window is stored again, so the window must
// outlast its decision token (and the skew consumers allow): the copy
// then carries a dead token.
func TestConfigDuplicateWindowCoversDecisionTTL(t *testing.T) {
	for _, tc := range []struct {
		window, ttl string
		refused     bool
		skew        string
	}{
		{"20m", "5m", false, "30s"}, {"5m30s", "5m", false, "30s"}, {"5m29s", "5m", true, "30s"}, {"2s", "1s", true, "30s"},
		{"6m", "5m", false, "1m"}, {"5m59s", "5m", true, "1m"},
	} {
		path := filepath.Join(t.TempDir(), "gateway.yaml")
		must(t, os.WriteFile(path, []byte("audience: gw\nlimits:\n  max_ttl: 1s\n  skew: "+tc.skew+"\n  decision_ttl: "+tc.ttl+"\nstreams:\n  duplicate_window: "+tc.window+"\n"), 0o600))
		_, err := LoadConfig(path)
		if got := err != nil && strings.Contains(err.Error(), "must cover limits.decision_ttl + limits.skew"); got != tc.refused {
			t.Errorf("duplicate_window %s, decision_ttl %s, skew %s: refused = %v; want %v (%v)", tc.window, tc.ttl, tc.skew, got, tc.refused, err)
		}
	}
}

// TestConfigValidatesBudgets: a budget the budget package would refuse
// (a negative rate, which reads as unlimited; a limited bucket without
// a burst) is a configuration error, not a limit switched off.
func TestConfigValidatesBudgets(t *testing.T) {
	for _, b := range []string{"agent: {rate: -10, burst: 20}", "tenant: {rate: 5, burst: 0}"} {
		path := filepath.Join(t.TempDir(), "gateway.yaml")
		must(t, os.WriteFile(path, []byte("audience: gw\nbudgets:\n  "+b+"\n"), 0o600))
		_, err := LoadConfig(path)
		if err == nil || !strings.Contains(err.Error(), "budgets:") {
			t.Errorf("budgets %s: LoadConfig = %v; want a budgets error", b, err)
		}
	}
}

// TestConfigBoundsApprovalTTL: a held request's deadline must be one the
// ledger can store; past it every held request would fail its batch.
func TestConfigBoundsApprovalTTL(t *testing.T) {
	for ttl, ok := range map[string]bool{"8784h": true, "8785h": false, "1600000h": false} {
		path := filepath.Join(t.TempDir(), "gateway.yaml")
		must(t, os.WriteFile(path, []byte("audience: gw\nlimits:\n  approval_ttl: "+ttl+"\nstreams:\n  max_age: 9000h\n"), 0o600))
		_, err := LoadConfig(path)
		if bad := err != nil && strings.Contains(err.Error(), "limits.approval_ttl must be at most"); bad == ok {
			t.Errorf("limits.approval_ttl %s: LoadConfig = %v", ttl, err)
		}
	}
}

// TestConfigRefusesRespelledText: a tenant, claim value, principal or
// jti written unquoted so that YAML reads it as other text (0042 as 34)
// would name someone else: the config and the revocations list refuse
// it, with its line, and take the quoted form as written.
func TestConfigRefusesRespelledText(t *testing.T) {
	exchange := func(org, dept string) []byte {
		return []byte(`
audience: gw
exchange:
  idps:
    - name: corp
      issuer: https://login.example.com/realms/corp
      audience: agentgw
      tenants: [tenant_a]
      tenant_claim: org
      tenant_map: {` + org + `: tenant_a}
      rules:
        - id: billing
          claim: dept
          equals: ` + dept + `
          scopes: [refund:draft]
`)
	}
	var cfg Config
	err := decodeStrict(exchange("0042", "0100"), &cfg)
	if err == nil || !strings.Contains(err.Error(), "line 10, column") || !strings.Contains(err.Error(), "line 14, column") {
		t.Errorf("tenant_map key 0042 and equals 0100 unquoted: %v; want both refused with their lines", err)
	}
	cfg = Config{}
	if err := decodeStrict(exchange(`"0042"`, `"0100"`), &cfg); err != nil {
		t.Fatalf("quoted: %v", err)
	}
	if p := cfg.Exchange.IdPs[0]; p.TenantMap["0042"] != "tenant_a" || p.Rules[0].Equals != "0100" {
		t.Errorf("quoted: tenant_map %v, equals %q; want them as written", p.TenantMap, p.Rules[0].Equals)
	}

	path := filepath.Join(t.TempDir(), "revocations.yaml")
	must(t, os.WriteFile(path, []byte("jtis: []\nkeys: []\nprincipals: [0042]\n"), 0o600))
	if _, err := readRevocations(path); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("principal 0042 unquoted: %v; want refused (it would revoke principal 34)", err)
	}
	must(t, os.WriteFile(path, []byte("jtis: []\nkeys: []\nprincipals: ['0042']\n"), 0o600))
	if r, err := readRevocations(path); err != nil || len(r.Principals) != 1 || r.Principals[0] != "0042" {
		t.Errorf("principal '0042': %+v, %v; want it as written", r, err)
	}
}

// TestConfigRefusesWhatCannotRun: settings that load but would not run
// as they read are refused, each saying why: a fetch_wait whose pulls
// (five of it) the ingress consumers would refuse, so nothing would be
// consumed; an output max_age below the duplicate window, which the
// server refuses; an approval_ttl longer than the approval stream keeps
// a held request; a second YAML document, which the decoder would drop.
func TestConfigRefusesWhatCannotRun(t *testing.T) {
	for _, tc := range []struct {
		yaml, refusal string // refusal "": loads
	}{
		{"consumer:\n  fetch_wait: 12s\n", ""},
		{"consumer:\n  fetch_wait: 13s\n", "consumer.fetch_wait (13s) must be at most 12s"},
		{"streams:\n  max_age: 10m\n  duplicate_window: 20m\n", "streams.max_age (10m0s) must cover streams.duplicate_window"},
		{"limits:\n  approval_ttl: 720h\n", "limits.approval_ttl (720h0m0s) must be at most streams.max_age (168h0m0s)"},
		{"limits:\n  approval_ttl: 720h\nstreams:\n  max_age: 800h\n", ""},
		{"---\nlimits:\n  max_credential_lifetime: 1h\n", "a second YAML document"},
	} {
		path := filepath.Join(t.TempDir(), "gateway.yaml")
		must(t, os.WriteFile(path, []byte("audience: gw\n"+tc.yaml), 0o600))
		_, err := LoadConfig(path)
		// The file names no catalog, keys or tenants: it is refused for
		// those whatever else it says, with every problem listed.
		switch {
		case tc.refusal == "" && err != nil && (strings.Contains(err.Error(), "fetch_wait") || strings.Contains(err.Error(), "approval_ttl")):
			t.Errorf("%q: refused: %v", tc.yaml, err)
		case tc.refusal != "" && (err == nil || !strings.Contains(err.Error(), tc.refusal)):
			t.Errorf("%q: LoadConfig = %v; want it refused (%s)", tc.yaml, err, tc.refusal)
		}
	}
}

// TestCatalogApprovalTTLWithinApprovalStream: a catalog target that
// holds requests longer than the approval stream keeps them is refused
// (at start and at a reload, which keeps the rules in force).
func TestCatalogApprovalTTLWithinApprovalStream(t *testing.T) {
	cat, err := catalog.Parse([]byte("targets:\n  - name: payments.send\n    kind: tool_call\n    tenants: [tenant_a]\n    plain: true\n    scope: payments:send\n    approval: true\n    approval_ttl: 200h\n"), t.TempDir())
	must(t, err)
	cfg := DefaultConfig()
	if err := cfg.checkApprovalTTLs(cat); err == nil || !errors.Is(err, catalog.ErrInvalid) || !strings.Contains(err.Error(), "payments.send") {
		t.Errorf("approval_ttl 200h under streams.max_age %s: %v; want the target refused", cfg.Streams.MaxAge, err)
	}
	cfg.Streams.MaxAge = 300 * time.Hour
	if err := cfg.checkApprovalTTLs(cat); err != nil {
		t.Errorf("approval_ttl 200h under streams.max_age 300h: %v", err)
	}
}
