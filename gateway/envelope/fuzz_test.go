package envelope

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/agentgw/agentgw/schemas"
	"github.com/agentgw/agentgw/subjects/reason"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

var (
	envSchemaOnce sync.Once
	envSchema     *jsonschema.Schema
	envSchemaErr  error
)

// FuzzParse: Parse never panics; it refuses only with its three codes;
// and whatever it accepts
//   - is strict JSON to an independent decoder (go-json-experiment's
//     jsontext: valid UTF-8, no duplicate names) and to encoding/json,
//   - is valid under the envelope JSON Schema (the parser is never more
//     lenient than the contract),
//   - satisfies every field rule, and rebuilds through Builder to a body
//     that parses to the same values (checkInvariants).
//
// Seeds: testdata/fuzz/FuzzParse, the fixtures in
// ../testdata/envelopes, and the wire-v1 body.
func FuzzParse(f *testing.F) {
	f.Add(render(baseMembers()))
	f.Add(sealed("eGt2McHP-lnC9tqWxmR2Mg", testFrom, testTo))
	fixtures, _ := filepath.Glob("../../testdata/envelopes/*/*.json")
	for _, path := range fixtures {
		if raw, err := os.ReadFile(path); err == nil {
			f.Add(raw)
		}
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := Parse(raw, Limits{})
		if err != nil {
			switch reason.Of(err) {
			case reason.MalformedEnvelope, reason.UnsupportedVersion, reason.Oversized:
			default:
				t.Fatalf("Parse(%q) = %v: not one of Parse's codes", raw, err)
			}
			if b != nil {
				t.Fatalf("Parse(%q) returned a Body and %v", raw, err)
			}
			return
		}
		if !jsontext.Value(raw).IsValid() {
			t.Fatalf("Parse accepted %q, which jsontext finds invalid", raw)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("Parse accepted %q; encoding/json: %v", raw, err)
		}
		envSchemaOnce.Do(func() { envSchema, envSchemaErr = schemas.Compile(schemas.Envelope) })
		if envSchemaErr != nil {
			t.Fatal(envSchemaErr)
		}
		if err := schemas.Validate(envSchema, raw); err != nil {
			t.Fatalf("Parse accepted %q; the schema does not: %v", raw, err)
		}
		checkInvariants(t, b, raw)
	})
}
