package identity

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

// TestParseSeedFileRoles: a seed file holds a user or a curve seed, read
// for that role only; the shared cases are client's seed_file_cases.
func TestParseSeedFileRoles(t *testing.T) {
	user := mustKey(t, nkeys.CreateUser)
	curve := mustKey(t, nkeys.CreateCurveKeys)
	us, _ := user.Seed()
	cs, _ := curve.Seed()
	if kp, err := ParseSeedFile(append(us, '\n'), nkeys.PrefixByteUser); err != nil || mustPub(t, kp) != mustPub(t, user) {
		t.Errorf("user seed file = %v", err)
	}
	if kp, err := ParseSeedFile(append(cs, '\n'), nkeys.PrefixByteCurve); err != nil || mustPub(t, kp) != mustPub(t, curve) {
		t.Errorf("curve seed file = %v", err)
	}
	for name, c := range map[string]struct {
		data []byte
		role nkeys.PrefixByte
	}{
		"user seed for an account": {us, nkeys.PrefixByteAccount},
		"curve seed for a user":    {cs, nkeys.PrefixByteUser},
		"user seed for a curve":    {us, nkeys.PrefixByteCurve},
	} {
		if _, err := ParseSeedFile(c.data, c.role); !errors.Is(err, ErrKey) {
			t.Errorf("%s = %v; want ErrKey", name, err)
		}
	}
	path := filepath.Join(t.TempDir(), "two.nk")
	if err := os.WriteFile(path, []byte(string(us)+"\n"+string(us)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadUserSeedFile(path)
	if !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), string(us)) {
		t.Errorf("ReadUserSeedFile(two seed lines) = %v; want ErrKey naming the file, not the seed", err)
	}
}

// TestKeyFileErrorsHideAPastedSeed: a seed pasted where a key file's
// path belongs (keys.signing: SNAG…) is never echoed by the error that
// the file does not exist; the error still says which cause it has.
func TestKeyFileErrorsHideAPastedSeed(t *testing.T) {
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	path := filepath.Join(t.TempDir(), string(seed))
	for name, read := range map[string]func(string) error{
		"ReadSeedFile":      func(p string) error { _, err := ReadSeedFile(p); return err },
		"ReadCurveSeedFile": func(p string) error { _, err := ReadCurveSeedFile(p); return err },
		"ReadCreds":         func(p string) error { _, _, err := ReadCreds(p); return err },
	} {
		err := read(path)
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s(missing) = %v; want a not-exist error", name, err)
		}
		if strings.Contains(err.Error(), string(seed)) {
			t.Errorf("%s: the error quotes the seed in its path: %v", name, err)
		}
	}
	// A file that is there but holds no seed: its path is named safely too.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(path, []byte("not a seed\n"), 0o600))
	if _, err := ReadSeedFile(path); err == nil || strings.Contains(err.Error(), string(seed)) {
		t.Errorf("ReadSeedFile(no seed) = %v; want an error without the seed", err)
	}
	if _, err := ReadCurveSeedFile(path); err == nil || strings.Contains(err.Error(), string(seed)) {
		t.Errorf("ReadCurveSeedFile(no seed) = %v; want an error without the seed", err)
	}
	if got := SafePath("/etc/agentgw/keys/signing.nk"); got != "/etc/agentgw/keys/signing.nk" {
		t.Errorf("SafePath changed an ordinary path: %q", got)
	}
}

// TestSafeText: seeds and token-shaped runs are replaced by their length;
// public keys, upper-case ids and hex trace ids are kept.
func TestSafeText(t *testing.T) {
	seed, err := mustKey(t, nkeys.CreateUser).Seed()
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"--key " + string(seed): "--key S…(58 characters)",
		"eyJ0eXAiOiJKV1QiLCJhbGciOi.eyJqdGkiOiI0S1hGWFU1NFRTWU1I.7YxXM3uAybcWvQt5ZqzvVK76": "…(26 characters).…(28 characters).…(24 characters)",
		"open ya29.a0AfB_byC3x9Kq7ZLmN2pQ4rS6tU8vW0xY1zA3bC5dE7fG9hI: no such file":        "open ya29.…(49 characters): no such file",
		"key UDIDTS6BVULCGRFXPZXMUK2ODGE27IPAYS3MNKN2XEBEIWL6ACVCG3ZY is not revoked":      "key UDIDTS6BVULCGRFXPZXMUK2ODGE27IPAYS3MNKN2XEBEIWL6ACVCG3ZY is not revoked",
		"trace 4bf92f3577b34da6a3ce929d0e0e4736, /etc/agentgw/gateway-config_2024.yaml":    "trace 4bf92f3577b34da6a3ce929d0e0e4736, /etc/agentgw/gateway-config_2024.yaml",
	} {
		if got := SafeText(in); got != want {
			t.Errorf("SafeText(%q) = %q; want %q", in, got, want)
		}
	}
}
