package identity

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nkeys"
)

// ReadSeedFile reads an nkey seed file: a bare seed, or a decorated file
// in which the first line that parses as a seed wins. Errors name the
// file, never its contents. The SDKs read their user and curve seed
// files by the stricter rules of ParseSeedFile.
func ReadSeedFile(path string) (nkeys.KeyPair, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", SafeReadError(err))
	}
	defer clear(data)
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "S") {
			if kp, err := nkeys.FromSeed([]byte(line)); err == nil {
				return kp, nil
			}
		}
	}
	return nil, fmt.Errorf("identity: %s: no nkey seed in file: %w", SafePath(path), ErrKey)
}

// seedInText finds what could be an nkey seed inside a longer text.
var seedInText = regexp.MustCompile(`S[A-Z2-7]{57}`)

// SafePath is path as errors and logs may show it: any run in it that
// could be an nkey seed (a seed pasted where its file's path belongs) is
// replaced by "S…" and its length.
func SafePath(path string) string {
	return seedInText.ReplaceAllStringFunc(path, func(s string) string { return fmt.Sprintf("S…(%d characters)", len(s)) })
}

// tokenInText finds a run of base64url characters long enough to be a
// bearer token or a JWT segment.
var tokenInText = regexp.MustCompile(`[A-Za-z0-9_-]{24,}`)

// SafeText is text (a flag's value, an argument, a message quoting
// them) as errors and logs may show it: SafePath, and any run of 24 or
// more base64url characters that mixes upper case, lower case and
// digits, as a bearer token or a JWT does, replaced by "…" and its
// length. Public keys and ids in upper case or lower-case hex are kept.
func SafeText(text string) string {
	return tokenInText.ReplaceAllStringFunc(SafePath(text), func(s string) string {
		if strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyz") && strings.ContainsAny(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") && strings.ContainsAny(s, "0123456789") {
			return fmt.Sprintf("…(%d characters)", len(s))
		}
		return s
	})
}

// SafeReadError is err, from reading or opening a file, naming the file
// by SafePath: a seed pasted where a path belongs is not echoed.
// errors.Is still sees its cause.
func SafeReadError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: pe.Op, Path: SafePath(pe.Path), Err: pe.Err}
	}
	return err
}

// seedText is an nkey seed as nkeys writes it: 'S', the role's letter
// and 56 more characters of A–Z 2–7 (58 in all, 36 bytes in base32).
var seedText = regexp.MustCompile(`^S[A-Z2-7]{57}$`)

// ParseSeedFile reads the nkey seed of role, nkeys.PrefixByteUser or
// nkeys.PrefixByteCurve, from the contents of a seed file as both SDKs
// read it (docs/wire.md, "Seed files"), and refuses anything else:
//
//   - the file is valid UTF-8;
//   - a file that holds a decorated block is a .creds file, read by
//     ParseCreds; its key is its user seed (a .creds file has no curve
//     seed);
//   - otherwise its lines (split at LF), less the spaces, tabs and CRs at
//     their ends and nothing else, hold exactly one line that starts
//     with 'S': the seed, "SU" (user) or "SX" (curve) and 56 more
//     characters of A–Z 2–7 with a valid checksum. Other lines are
//     ignored.
//
// Errors wrap ErrKey (ErrCreds for a .creds file) and never contain the
// file's contents.
func ParseSeedFile(data []byte, role nkeys.PrefixByte) (nkeys.KeyPair, error) {
	var want string
	switch role {
	case nkeys.PrefixByteUser:
		want = "SU"
	case nkeys.PrefixByteCurve:
		want = "SX"
	default:
		return nil, fmt.Errorf("%w: seed files hold user or curve seeds, not %v", ErrKey, role)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: seed file is not UTF-8", ErrKey)
	}
	if credsBlock.Match(data) {
		if role != nkeys.PrefixByteUser {
			return nil, fmt.Errorf("%w: a .creds file holds no %s seed", ErrKey, want)
		}
		_, kp, err := ParseCreds(data)
		return kp, err
	}
	var seed []byte
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		line = bytes.Trim(line, " \t\r")
		if len(line) == 0 || line[0] != 'S' {
			continue
		}
		if seed != nil {
			return nil, fmt.Errorf("%w: more than one seed line", ErrKey)
		}
		seed = line
	}
	if seed == nil {
		return nil, fmt.Errorf("%w: no seed line", ErrKey)
	}
	if !bytes.HasPrefix(seed, []byte(want)) || !seedText.Match(seed) {
		return nil, fmt.Errorf("%w: the seed line is not a %s seed", ErrKey, want)
	}
	if role == nkeys.PrefixByteCurve {
		kp, err := nkeys.FromCurveSeed(seed)
		if err != nil {
			return nil, fmt.Errorf("%w: the %s seed does not decode", ErrKey, want)
		}
		return kp, nil
	}
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return nil, fmt.Errorf("%w: the %s seed does not decode", ErrKey, want)
	}
	if pub, err := kp.PublicKey(); err != nil || !nkeys.IsValidPublicUserKey(pub) {
		kp.Wipe()
		return nil, fmt.Errorf("%w: the %s seed does not decode", ErrKey, want)
	}
	return kp, nil
}

// ReadUserSeedFile reads the user seed of the seed or .creds file at path
// by ParseSeedFile's rules. Errors name the file, never its contents.
func ReadUserSeedFile(path string) (nkeys.KeyPair, error) {
	return readSeedFile(path, nkeys.PrefixByteUser)
}

// ReadCurveSeedFile reads the curve seed of the seed file at path by
// ParseSeedFile's rules. Errors name the file, never its contents.
func ReadCurveSeedFile(path string) (nkeys.KeyPair, error) {
	return readSeedFile(path, nkeys.PrefixByteCurve)
}

func readSeedFile(path string, role nkeys.PrefixByte) (nkeys.KeyPair, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", SafeReadError(err))
	}
	defer clear(data)
	kp, err := ParseSeedFile(data, role)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SafePath(path), err)
	}
	return kp, nil
}
