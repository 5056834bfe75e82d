package yamlerr

import (
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/nats-io/nkeys"
)

// TestCleanHidesSource: every kind of go-yaml error, on a document whose
// lines hold a secret, is cleaned to a position and a problem with no
// byte of the secret; a short unknown key is still named.
func TestCleanHidesSource(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	secret := string(seed)
	type target struct {
		A int  `yaml:"a"`
		B bool `yaml:"b"`
	}
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"bare seed", secret + "\n", "line 1, column 1: string was used where mapping is expected"},
		{"syntax", "a: [" + secret + "\n", "line 1, column"},
		{"type", "a: " + secret + "\n", "line 1, column 4: cannot unmarshal string"},
		{"bool", "b: " + secret + "\n", "line 1, column 4"},
		{"secret as key", secret + ": 1\n", "unknown field <58 characters>"},
		{"duplicate secret key", "a: 1\n" + secret + ": 1\n" + secret + ": 2\n", "line 3"},
		{"alias", "a: *" + secret + "\n", "line 1"},
		{"unknown short key", "a: 1\nzz: " + secret + "\n", `line 2, column 1: unknown field "zz"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v target
			raw := yaml.UnmarshalWithOptions([]byte(tc.doc), &v, yaml.Strict())
			if raw == nil {
				t.Fatal("decoded")
			}
			got := Clean(raw).Error()
			if strings.Contains(got, secret[:8]) || strings.Contains(got, "\n") {
				t.Errorf("Clean = %q; holds source text", got)
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("Clean = %q; want it to contain %q", got, tc.want)
			}
		})
	}
}

// TestCleanHidesUnquotedValues: go-yaml's unknown-alias error names the
// alias unquoted ("cannot find anchor by alias name X"); a seed pasted
// there is not echoed.
func TestCleanHidesUnquotedValues(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	var v struct {
		A string `yaml:"a"`
	}
	err = Unmarshal([]byte("<<: *"+string(seed)+"\n"), &v)
	if err == nil {
		t.Fatal("an unknown alias decoded")
	}
	if strings.Contains(err.Error(), string(seed)) {
		t.Errorf("the error keeps the seed: %v", err)
	}
}

// TestCleanKeepsFieldNames: the unquoted text Clean hides is key- or
// token-shaped, not a Go field or type name an operator needs to find
// the mistake.
func TestCleanKeepsFieldNames(t *testing.T) {
	var v struct {
		MaxCredentialLifetimeSeconds int `yaml:"max_credential_lifetime_seconds"`
	}
	err := Unmarshal([]byte("max_credential_lifetime_seconds: [1]\n"), &v)
	if err == nil {
		t.Fatal("a list decoded into an int")
	}
	if !strings.Contains(err.Error(), "MaxCredentialLifetimeSeconds") {
		t.Errorf("the error hides the field's name: %v", err)
	}
}
