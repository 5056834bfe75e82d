package identity

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// ErrCreds is returned (wrapped) when a .creds file cannot be written or
// read. Its messages never contain the token or the seed.
var ErrCreds = errors.New("identity: creds")

// FormatCreds returns a NATS .creds file, byte for byte the layout of
// jwt/v2's FormatUserConfig: the JWT block in jwt/v2's template labelled
// by the claim type ("-----BEGIN NATS AGENTGW-CREDENTIAL JWT-----", where
// a NATS user has "USER"), then the seed as jwt/v2's DecorateSeed writes
// it. nats.UserCredentials, nkeys and jwt/v2's ParseDecoratedJWT /
// ParseDecoratedUserNKey read it. (jwt/v2's own DecorateJWT cannot be
// used: its Decode checks a generic claim's signature the v1 way.) seed must be the user
// ('U') seed of the token's subject; the token's signature is not checked
// here (Verify does that).
func FormatCreds(t Token, seed Seed) ([]byte, error) {
	j, err := ParseJWT(string(t))
	if err != nil {
		return nil, fmt.Errorf("%w: token: %w", ErrCreds, err)
	}
	var claims struct {
		Subject string `json:"sub"`
		Nats    struct {
			Type string `json:"type"`
		} `json:"nats"`
	}
	if err := unmarshalLenient(j.Payload, &claims); err != nil || claims.Nats.Type == "" {
		return nil, fmt.Errorf("%w: token claims have no nats.type", ErrCreds)
	}
	if err := matchSeed(seed, claims.Subject); err != nil {
		return nil, err
	}
	kind := strings.ToUpper(claims.Nats.Type)
	if !isSafeID(kind) {
		return nil, fmt.Errorf("%w: claim type is not a safe label", ErrCreds)
	}
	var w bytes.Buffer
	fmt.Fprintf(&w, "-----BEGIN NATS %s JWT-----\n%s\n------END NATS %s JWT------\n\n", kind, t.Reveal(), kind)
	d, err := jwt.DecorateSeed(seed.Reveal())
	if err != nil {
		return nil, fmt.Errorf("%w: seed decoration failed", ErrCreds)
	}
	w.Write(d)
	clear(d)
	return w.Bytes(), nil
}

// matchSeed checks that seed is a user seed whose public key is sub.
func matchSeed(seed Seed, sub string) error {
	if !bytes.HasPrefix(seed, []byte("SU")) {
		return fmt.Errorf("%w: seed is not a user ('SU') seed", ErrCreds)
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return fmt.Errorf("%w: seed does not decode", ErrCreds)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil || pub != sub {
		return fmt.Errorf("%w: seed is not the key of the token's subject", ErrCreds)
	}
	return nil
}

// ParseCreds reads a .creds file: it needs both decorated blocks, a token
// of valid compact-JWT form and a user seed that is the token's subject.
// The token's signature and claims are not checked here (Verify does).
func ParseCreds(data []byte) (Token, nkeys.KeyPair, error) {
	tok, err := jwt.ParseDecoratedJWT(data)
	if err != nil || len(tok) == len(data) {
		// ParseDecoratedJWT returns the whole input when it finds no block.
		return "", nil, fmt.Errorf("%w: no decorated JWT block", ErrCreds)
	}
	tok = strings.TrimSpace(tok)
	j, err := ParseJWT(tok)
	if err != nil {
		return "", nil, fmt.Errorf("%w: token: %w", ErrCreds, err)
	}
	var claims struct {
		Subject string `json:"sub"`
	}
	if err := unmarshalLenient(j.Payload, &claims); err != nil {
		return "", nil, fmt.Errorf("%w: token claims do not decode", ErrCreds)
	}
	kp, err := jwt.ParseDecoratedUserNKey(data)
	if err != nil {
		return "", nil, fmt.Errorf("%w: no user seed block", ErrCreds)
	}
	seed, err := kp.Seed()
	if err != nil {
		return "", nil, fmt.Errorf("%w: no user seed", ErrCreds)
	}
	if err := matchSeed(Seed(seed), claims.Subject); err != nil {
		kp.Wipe()
		return "", nil, err
	}
	return Token(tok), kp, nil
}

// ReadCreds reads and parses the .creds file at path.
func ReadCreds(path string) (Token, nkeys.KeyPair, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("%w: read: %w", ErrCreds, err)
	}
	defer clear(data)
	return ParseCreds(data)
}

// WriteCreds writes the .creds file for t and seed to path with mode
// 0600, atomically: a temporary file in the same directory is written,
// synced and renamed over path, so a reader never sees half a file and an
// existing file of looser mode is replaced, not reused.
func WriteCreds(path string, t Token, seed Seed) (err error) {
	data, err := FormatCreds(t, seed)
	if err != nil {
		return err
	}
	defer clear(data)
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%w: write: %w", ErrCreds, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("%w: chmod: %w", ErrCreds, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("%w: write: %w", ErrCreds, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("%w: sync: %w", ErrCreds, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("%w: close: %w", ErrCreds, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("%w: rename: %w", ErrCreds, err)
	}
	return nil
}
