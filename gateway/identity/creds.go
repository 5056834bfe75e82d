package identity

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/envelope"
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

// credsBlock is jwt/v2's decorated block (its userConfigRE): a line with
// at least three '-' at each end, LF or CR LF, the value, LF or CR LF, and
// another such line ended by LF, CR LF or the end of the file. Go's '.'
// matches anything but LF; the TypeScript SDK's creds.ts has the same
// expression.
var credsBlock = regexp.MustCompile(`\s*(?:(?:[-]{3,}.*[-]{3,}\r?\n)([\w\-.=]+)(?:\r?\n[-]{3,}.*[-]{3,}(\r?\n|\z)))`)

// credsClaims bounds the claims ParseCreds reads: the strict JSON
// scanner's rules (no duplicate names, case variants included; valid
// UTF-8; bounded numbers), at most 8 levels (CheckPayload counts the
// object as level 2), as the TypeScript SDK's peekCredential reads them.
var credsClaims = envelope.Limits{MaxBytes: MaxTokenSize, MaxDepth: 9, MaxString: MaxTokenSize}

// ParseCreds reads a .creds file (docs/wire.md, ".creds files"): valid
// UTF-8, holding at least two decorated blocks, the first a token of
// valid compact-JWT form whose claims are strict JSON, the second the
// nkey user seed of the token's subject. Anything around and after the
// two blocks is ignored; a bare seed line is not a seed block. The
// token's signature and claim rules are not checked here (Verify does).
func ParseCreds(data []byte) (Token, nkeys.KeyPair, error) {
	if !utf8.Valid(data) {
		return "", nil, fmt.Errorf("%w: file is not UTF-8", ErrCreds)
	}
	blocks := credsBlock.FindAllSubmatch(data, 2)
	if len(blocks) == 0 {
		return "", nil, fmt.Errorf("%w: no decorated JWT block", ErrCreds)
	}
	tok := string(blocks[0][1])
	j, err := ParseJWT(tok)
	if err != nil {
		return "", nil, fmt.Errorf("%w: token: %w", ErrCreds, err)
	}
	var claims struct {
		Subject string `json:"sub"`
	}
	if envelope.CheckPayload(j.Payload, credsClaims) != nil || unmarshalLenient(j.Payload, &claims) != nil {
		return "", nil, fmt.Errorf("%w: token claims do not decode", ErrCreds)
	}
	if len(blocks) < 2 {
		return "", nil, fmt.Errorf("%w: no user seed block", ErrCreds)
	}
	seed := Seed(blocks[1][1])
	if err := matchSeed(seed, claims.Subject); err != nil {
		return "", nil, err
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return "", nil, fmt.Errorf("%w: seed does not decode", ErrCreds)
	}
	return Token(tok), kp, nil
}

// ReadCreds reads and parses the .creds file at path.
func ReadCreds(path string) (Token, nkeys.KeyPair, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("%w: read: %w", ErrCreds, SafeReadError(err))
	}
	defer clear(data)
	return ParseCreds(data)
}

// WriteCreds writes the .creds file for t and seed to path with mode
// 0600, atomically (WritePrivateFile).
func WriteCreds(path string, t Token, seed Seed) error {
	data, err := FormatCreds(t, seed)
	if err != nil {
		return err
	}
	defer clear(data)
	if err := WritePrivateFile(path, data); err != nil {
		return fmt.Errorf("%w: %w", ErrCreds, err)
	}
	return nil
}

// WritePrivateFile writes data to path with mode 0600, atomically: a
// temporary file in the same directory is written, synced and renamed
// over path, so a reader never sees half a file and an existing file of
// looser mode is replaced, not reused. The directory is then synced
// (syncDir), so that the rename survives a power loss.
func WritePrivateFile(path string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	renamed := false
	defer func() {
		if err != nil && !renamed {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	renamed = true
	if err = syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("written, but its directory could not be synced: a power loss may undo the write: %w", err)
	}
	return nil
}

// syncDirFile syncs an open directory: (*os.File).Sync, a variable so
// that a test sees the call.
var syncDirFile = (*os.File).Sync

// syncDir syncs directory dir, making a rename into it durable: a file
// synced and renamed into dir can otherwise come back after a power loss
// under its old name, or with its old content. A filesystem that cannot
// sync a directory (fsync answers EINVAL, or the operation is
// unsupported) is no error: nothing more can be done there. On Windows
// it does nothing: a directory opened there cannot be flushed
// (FlushFileBuffers needs a handle open for writing). internal/atomicfile
// has the same rule; the gateway's packages do not import internal ones.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = syncDirFile(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	return err
}
