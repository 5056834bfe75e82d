package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// TestYAMLErrorsHideFileContents: a .creds or seed file given as the
// gateway config or the revocations file is refused with the line,
// column and problem; neither its JWT nor its seed is in the error.
func TestYAMLErrorsHideFileContents(t *testing.T) {
	ukp, _ := nkeys.CreateUser()
	akp, _ := nkeys.CreateAccount()
	seed, _ := ukp.Seed()
	pub, _ := ukp.PublicKey()
	tok, err := jwt.NewUserClaims(pub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(tok, seed)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, data := range map[string][]byte{"a.creds": creds, "a.nk": seed} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, cerr := LoadConfig(path)
		_, rerr := readRevocations(path)
		for what, err := range map[string]error{"LoadConfig": cerr, "readRevocations": rerr} {
			if err == nil {
				t.Fatalf("%s(%s) succeeded", what, name)
			}
			msg := err.Error()
			if strings.Contains(msg, string(seed[:12])) || strings.Contains(msg, tok[:12]) {
				t.Errorf("%s(%s) error holds the file's text:\n%s", what, name, msg)
			}
			if !strings.Contains(msg, "line 1, column 1") {
				t.Errorf("%s(%s) error does not locate the problem:\n%s", what, name, msg)
			}
		}
	}
}
