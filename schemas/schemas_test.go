package schemas_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/schemas"
	"github.com/agentgw/agentgw/subjects/reason"
)

// parserOnly lists the invalid fixtures that the envelope schema accepts
// because JSON Schema cannot express the rule (schemas/doc.go). Every other
// fixture must get the same verdict from the schema and from Parse.
var parserOnly = map[string]string{
	"malformed_envelope--duplicate-member.json":           "duplicate names",
	"malformed_envelope--duplicate-in-payload.json":       "duplicate names",
	"malformed_envelope--duplicate-in-plain.json":         "duplicate names",
	"malformed_envelope--duplicate-nested-in-plain.json":  "duplicate names",
	"malformed_envelope--case-duplicate-in-plain.json":    "case-folded duplicate names",
	"malformed_envelope--kelvin-duplicate-in-plain.json":  "case-folded duplicate names",
	"malformed_envelope--invalid-utf8-in-plain.json":      "invalid UTF-8 is replaced by decoding",
	"malformed_envelope--lone-surrogate.json":             "unpaired surrogate is replaced by decoding",
	"malformed_envelope--too-deep.json":                   "nesting depth",
	"malformed_envelope--huge-exponent.json":              "number bounds",
	"malformed_envelope--string-too-long.json":            "string length inside plain",
	"malformed_envelope--leap-second.json":                "date-time allows 23:59:60",
	"malformed_envelope--curve-key-checksum.json":         "nkey checksum",
	"malformed_envelope--respond-agent-key-checksum.json": "nkey checksum",
	"unsupported_version--v-1.0.json":                     "numbers compare by value",
}

func fixtures(t *testing.T, kind string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "testdata", "envelopes", kind, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s fixtures: %v", kind, err)
	}
	return files
}

// TestEnvelopeFixtures validates every fixture against the envelope schema
// and proves that Parse and the schema agree on it.
func TestEnvelopeFixtures(t *testing.T) {
	sch, err := schemas.Compile(schemas.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range fixtures(t, "valid") {
		t.Run("valid/"+filepath.Base(path), func(t *testing.T) {
			raw, _ := os.ReadFile(path)
			if _, err := envelope.Parse(raw, envelope.Limits{}); err != nil {
				t.Errorf("Parse = %v; want nil", err)
			}
			if err := schemas.Validate(sch, raw); err != nil {
				t.Errorf("schema: %v; want valid", err)
			}
		})
	}
	seen := map[string]bool{}
	for _, path := range fixtures(t, "invalid") {
		name := filepath.Base(path)
		seen[name] = true
		t.Run("invalid/"+name, func(t *testing.T) {
			code, _, ok := strings.Cut(name, "--")
			if !ok || !reason.Known(reason.Code(code)) {
				t.Fatalf("fixture name %q does not start with <reason code>--", name)
			}
			raw, _ := os.ReadFile(path)
			if _, err := envelope.Parse(raw, envelope.Limits{}); !errors.Is(err, reason.Code(code)) {
				t.Errorf("Parse = %v; want %s", err, code)
			}
			err := schemas.Validate(sch, raw)
			if why, only := parserOnly[name]; only {
				if err != nil {
					t.Errorf("schema rejects a parser-only case (%s): %v; move it out of parserOnly", why, err)
				}
				return
			}
			if err == nil {
				t.Error("schema accepts; Parse rejects")
			}
		})
	}
	for name := range parserOnly {
		if !seen[name] {
			t.Errorf("parserOnly names missing fixture %s", name)
		}
	}
}

type wire struct {
	Credential struct {
		Claims json.RawMessage `json:"claims"`
		JWT    string          `json:"jwt"`
	} `json:"credential"`
}

func TestCredentialSchema(t *testing.T) {
	raw, err := os.ReadFile("../testdata/wire-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var w wire
	if err := json.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	sch, err := schemas.Compile(schemas.Credential)
	if err != nil {
		t.Fatal(err)
	}
	// The claims as they travel in the JWT, and as the vector lists them.
	parts := strings.Split(w.Credential.JWT, ".")
	inJWT, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	for name, doc := range map[string][]byte{"jwt": inJWT, "claims": w.Credential.Claims} {
		if err := schemas.Validate(sch, doc); err != nil {
			t.Errorf("credential %s: %v; want valid", name, err)
		}
	}

	edit := func(f func(c, nats map[string]any)) []byte {
		var c map[string]any
		if err := json.Unmarshal(inJWT, &c); err != nil {
			t.Fatal(err)
		}
		f(c, c["nats"].(map[string]any))
		b, _ := json.Marshal(c)
		return b
	}
	tests := []struct {
		name string
		doc  []byte
		ok   bool
	}{
		{"ok/no-name", edit(func(c, _ map[string]any) { delete(c, "name") }), true},
		{"ok/no-scopes", edit(func(_, n map[string]any) { n["scopes"] = []string{} }), true},
		{"ok/approve-pattern", edit(func(_, n map[string]any) { n["scopes"] = []string{"approve:refunds.*", "respond:refunds.draft_refund"} }), true},
		{"ok/principal", edit(func(_, n map[string]any) { n["principal"] = "https://idp.example.com#5f0c2a7e-user" }), true},
		{"deny/principal-empty", edit(func(_, n map[string]any) { n["principal"] = "" }), false},
		{"deny/principal-control", edit(func(_, n map[string]any) { n["principal"] = "https://idp.example.com#a\nb" }), false},
		{"ok/actors", edit(func(_, n map[string]any) { n["actors"] = []any{"https://idp.example.com#bob"} }), true},
		{"deny/actors-nine", edit(func(_, n map[string]any) {
			n["actors"] = []any{"a", "b", "c", "d", "e", "f", "g", "h", "i"}
		}), false},
		{"deny/actor-empty", edit(func(_, n map[string]any) { n["actors"] = []any{""} }), false},
		{"deny/actor-control", edit(func(_, n map[string]any) { n["actors"] = []any{"https://idp.example.com#a\nb"} }), false},
		{"deny/actor-number", edit(func(_, n map[string]any) { n["actors"] = []any{7} }), false},
		{"deny/missing-exp", edit(func(c, _ map[string]any) { delete(c, "exp") }), false},
		{"deny/missing-jti", edit(func(c, _ map[string]any) { delete(c, "jti") }), false},
		{"deny/missing-nats", edit(func(c, _ map[string]any) { delete(c, "nats") }), false},
		{"deny/extra-claim", edit(func(c, _ map[string]any) { c["admin"] = true }), false},
		{"deny/sub-not-user", edit(func(c, _ map[string]any) { c["sub"] = c["iss"] }), false},
		{"deny/iss-not-account", edit(func(c, _ map[string]any) { c["iss"] = c["sub"] }), false},
		{"deny/aud-array", edit(func(c, _ map[string]any) { c["aud"] = []string{"billing-gateway"} }), false},
		{"deny/exp-string", edit(func(c, _ map[string]any) { c["exp"] = "1795658911" }), false},
		{"deny/exp-fraction", edit(func(c, _ map[string]any) { c["exp"] = 1795658911.5 }), false},
		{"deny/wrong-type", edit(func(_, n map[string]any) { n["type"] = "user" }), false},
		{"deny/version-1", edit(func(_, n map[string]any) { n["version"] = 1 }), false},
		{"deny/tenant-upper", edit(func(_, n map[string]any) { n["tenant"] = "Tenant_A" }), false},
		{"deny/tenant-wildcard", edit(func(_, n map[string]any) { n["tenant"] = "*" }), false},
		{"deny/scope-no-colon", edit(func(_, n map[string]any) { n["scopes"] = []string{"refund"} }), false},
		{"deny/scope-space", edit(func(_, n map[string]any) { n["scopes"] = []string{"refund: draft"} }), false},
		{"deny/scope-duplicate", edit(func(_, n map[string]any) { n["scopes"] = []string{"refund:draft", "refund:draft"} }), false},
		{"deny/scopes-string", edit(func(_, n map[string]any) { n["scopes"] = "refund:draft" }), false},
		{"deny/xkey-user-key", edit(func(c, n map[string]any) { n["xkey"] = c["sub"] }), false},
		{"deny/nats-extra", edit(func(_, n map[string]any) { n["superuser"] = true }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := schemas.Validate(sch, tt.doc)
			if tt.ok != (err == nil) {
				t.Errorf("Validate(%s) = %v; want ok=%v", tt.doc, err, tt.ok)
			}
		})
	}
}

func TestCompile(t *testing.T) {
	if _, err := schemas.Compile("nope.schema.json"); !errors.Is(err, schemas.ErrUnknownSchema) {
		t.Errorf("Compile(unknown) = %v; want ErrUnknownSchema", err)
	}
	ok := `{"type":"object","properties":{"tenant":{"$ref":"https://agentgw.dev/schemas/v1/envelope.schema.json#/$defs/token"},"at":{"type":"string","format":"date-time"}}}`
	s, err := schemas.CompileBytes("catalog:///refunds.schema.json", []byte(ok))
	if err != nil {
		t.Fatalf("CompileBytes = %v", err)
	}
	if err := schemas.Validate(s, []byte(`{"tenant":"tenant_a","at":"2026-11-26T01:08:41Z"}`)); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
	if err := schemas.Validate(s, []byte(`{"at":"yesterday"}`)); err == nil {
		t.Error("Validate(bad date-time) = nil; want an error (format assertions on)")
	}
	tests := []struct{ name, doc string }{
		{"file-ref", `{"$ref":"file:///etc/passwd"}`},
		{"http-ref", `{"$ref":"https://example.com/s.json"}`},
		{"duplicate-names", `{"type":"object","type":"string"}`},
		{"invalid-utf8", "{\"title\":\"\xff\"}"},
		{"not-json", `{`},
		{"bad-keyword-value", `{"type":12}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := schemas.CompileBytes("catalog:///x.schema.json", []byte(tt.doc)); err == nil {
				t.Errorf("CompileBytes(%q) = nil; want an error", tt.doc)
			}
		})
	}
	if _, err := schemas.CompileBytes("catalog:///d.schema.json", []byte(`{"type":"object","type":"string"}`)); !errors.Is(err, schemas.ErrNotStrictJSON) {
		t.Errorf("CompileBytes(duplicate) = %v; want ErrNotStrictJSON", err)
	}
	names := 0
	entries, _ := os.ReadDir(".")
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".schema.json") {
			names++
			if _, err := schemas.FS().Open(e.Name()); err != nil {
				t.Errorf("FS() lacks %s", e.Name())
			}
		}
	}
	if names != 4 {
		t.Errorf("%d schema files; want 4 (envelope, credential, audit event, eval cases)", names)
	}
	for _, n := range []string{schemas.Envelope, schemas.Credential, schemas.AuditEvent, schemas.EvalCases} {
		if _, err := schemas.Compile(n); err != nil {
			t.Errorf("Compile(%s) = %v", n, err)
		}
	}
}

// TestUnknownFormatRefused: a format the validator does not know is,
// by the JSON Schema rule, accepted unchecked; a configured schema that
// names one is refused, wherever a schema may stand, while the names
// of properties and data under const, enum, default and examples are
// not keywords. Every known format is checked: it refuses a value.
func TestUnknownFormatRefused(t *testing.T) {
	for _, s := range []string{
		`{"type":"string","format":"iban"}`,
		`{"properties":{"iban":{"type":"string","format":"e-mail"}}}`,
		`{"properties":{"default":{"format":"iban"}}}`,
		`{"items":{"anyOf":[{"format":"uuid"},{"format":"ulid"}]}}`,
		`{"$defs":{"x":{"format":"iban"}},"$ref":"#/$defs/x"}`,
	} {
		if _, err := schemas.CompileBytes("mem:///s.json", []byte(s)); err == nil || !strings.Contains(err.Error(), "is not one the validator checks") {
			t.Errorf("%s: %v; want refused", s, err)
		}
	}
	for _, s := range []string{
		`{"properties":{"format":{"type":"string"}}}`,
		`{"const":{"format":"iban"}}`,
		`{"enum":[{"format":"iban"}]}`,
		`{"default":{"format":"iban"},"examples":[{"format":"x"}]}`,
	} {
		if _, err := schemas.CompileBytes("mem:///s.json", []byte(s)); err != nil {
			t.Errorf("%s: %v; want compiled", s, err)
		}
	}
	for _, f := range schemas.KnownFormats {
		sch, err := schemas.CompileBytes("mem:///s.json", []byte(`{"format":"`+f+`"}`))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if schemas.Validate(sch, []byte(`"%%% not a `+f+` %%%"`)) == nil {
			t.Errorf("format %s accepts anything: it is not checked", f)
		}
	}
}
