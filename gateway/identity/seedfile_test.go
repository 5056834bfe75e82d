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
