package identity

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func TestCredsRoundTrip(t *testing.T) {
	v := loadVector(t)
	tok, seed := Token(v.Credential.JWT), Seed(v.Keys.AgentSeed)
	data, err := FormatCreds(tok, seed)
	if err != nil {
		t.Fatalf("FormatCreds = %v", err)
	}

	t.Run("layout is jwt/v2 FormatUserConfig's", func(t *testing.T) {
		// A real NATS user creds file for the same key, with its JWT and
		// label swapped for ours, must be byte-identical.
		uc := jwt.NewUserClaims(v.Keys.AgentPublic)
		userJWT, err := uc.Encode(mustSeed(t, v.Keys.IssuerSeed))
		if err != nil {
			t.Fatal(err)
		}
		ref, err := jwt.FormatUserConfig(userJWT, []byte(v.Keys.AgentSeed))
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.ReplaceAll(ref, []byte(userJWT), []byte(v.Credential.JWT))
		want = bytes.ReplaceAll(want, []byte("NATS USER JWT"), []byte("NATS AGENTGW-CREDENTIAL JWT"))
		if !bytes.Equal(data, want) {
			t.Errorf("FormatCreds =\n%s\nwant\n%s", data, want)
		}
	})
	t.Run("jwt/v2 and nkeys parse it", func(t *testing.T) {
		got, err := jwt.ParseDecoratedJWT(data)
		if err != nil || got != v.Credential.JWT {
			t.Errorf("jwt.ParseDecoratedJWT = %v", err)
		}
		kp, err := nkeys.ParseDecoratedUserNKey(data)
		if err != nil || mustPub(t, kp) != v.Keys.AgentPublic {
			t.Errorf("nkeys.ParseDecoratedUserNKey = %v", err)
		}
	})
	t.Run("ParseCreds", func(t *testing.T) {
		got, kp, err := ParseCreds(data)
		if err != nil {
			t.Fatalf("ParseCreds = %v", err)
		}
		if got != tok || mustPub(t, kp) != v.Keys.AgentPublic {
			t.Errorf("ParseCreds = %v, %s", got, mustPub(t, kp))
		}
	})
	t.Run("file is 0600 and nats.go uses it", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "agent.creds")
		if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := WriteCreds(path, tok, seed); err != nil {
			t.Fatalf("WriteCreds = %v", err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("mode = %v; want 0600", fi.Mode().Perm())
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 1 {
			t.Errorf("WriteCreds left %d entries in the directory; want 1", len(ents))
		}
		got, kp, err := ReadCreds(path)
		if err != nil || got != tok || mustPub(t, kp) != v.Keys.AgentPublic {
			t.Fatalf("ReadCreds = %v", err)
		}

		var o nats.Options
		if err := nats.UserCredentials(path)(&o); err != nil {
			t.Fatal(err)
		}
		userJWT, err := o.UserJWT()
		if err != nil || userJWT != v.Credential.JWT {
			t.Fatalf("nats UserJWT() = %v", err)
		}
		nonce := []byte("server-nonce")
		sig, err := o.SignatureCB(nonce)
		if err != nil {
			t.Fatalf("nats SignatureCB = %v", err)
		}
		if err := mustSeed(t, v.Keys.AgentSeed).Verify(nonce, sig); err != nil {
			t.Errorf("nats signed the nonce with another key: %v", err)
		}
	})

	bad := []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"bare jwt", v.Credential.JWT},
		{"jwt block only", string(data[:bytes.Index(data, []byte("****"))])},
		{"seed of another key", strings.Replace(string(data), v.Keys.AgentSeed, otherUserSeed(t), 1)},
		{"account seed", strings.Replace(string(data), v.Keys.AgentSeed, v.Keys.IssuerSeed, 1)},
		{"garbled jwt", strings.Replace(string(data), v.Credential.JWT, "abc.def", 1)},
		// Claims are read by the strict scanner: a member name with a
		// control character is refused, as by the TypeScript reader.
		{"control character in a claim name", strings.Replace(string(data), v.Credential.JWT, withClaimName(t, v.Credential.JWT, `x\u0000`), 1)},
	}
	for _, tt := range bad {
		t.Run("deny/"+tt.name, func(t *testing.T) {
			_, _, err := ParseCreds([]byte(tt.data))
			if !errors.Is(err, ErrCreds) {
				t.Fatalf("ParseCreds(%s) = %v; want ErrCreds", tt.name, err)
			}
			if f := leaks(err.Error(), seed, tok); f != "" {
				t.Errorf("ParseCreds(%s) error leaks %q", tt.name, f)
			}
		})
	}
	t.Run("deny/format with another key's seed", func(t *testing.T) {
		other, _ := mustKey(t, NewAgent).Seed()
		if _, err := FormatCreds(tok, Seed(other)); !errors.Is(err, ErrCreds) {
			t.Errorf("FormatCreds(other seed) = %v; want ErrCreds", err)
		}
		if _, err := FormatCreds(tok, Seed(v.Keys.IssuerSeed)); !errors.Is(err, ErrCreds) {
			t.Errorf("FormatCreds(account seed) = %v; want ErrCreds", err)
		}
		if err := WriteCreds(filepath.Join(t.TempDir(), "x.creds"), "not-a-jwt", seed); !errors.Is(err, ErrCreds) {
			t.Errorf("WriteCreds(garbage) = %v; want ErrCreds", err)
		}
	})
}

// otherUserSeed is a fresh user seed, made at test time so that no seed
// is committed outside testdata.
func otherUserSeed(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return string(seed)
}

// withClaimName returns jwt with a member named name (as JSON text)
// added to its claims; the signature no longer matches, which ParseCreds
// does not check.
func withClaimName(t *testing.T, jwt, name string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || claims[0] != '{' {
		t.Fatalf("claims of %q: %v", jwt, err)
	}
	claims = append([]byte(`{"`+name+`":1,`), claims[1:]...)
	parts[1] = base64.RawURLEncoding.EncodeToString(claims)
	return strings.Join(parts, ".")
}
