package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/identity"
)

// fileKind is what an identity file holds, as classify reads it.
type fileKind int

const (
	kindOther         fileKind = iota // none of the below
	kindMissing                       // no such file
	kindDir                           // a directory
	kindUnreadable                    // exists but cannot be read
	kindCredential                    // agentgw credential .creds: its JWT and the agent's user seed
	kindCredentialJWT                 // agentgw credential JWT without a seed (creds issue --jwt-only)
	kindUserCreds                     // NATS user .creds: a user JWT and its user seed
	kindUserJWT                       // NATS user JWT without a seed
	kindNATSJWT                       // another NATS JWT (account, operator, ...)
	kindSeed                          // an nkey seed; idFile.seed says of what
)

// maxIdentityFile bounds what classify reads: credentials and seeds are a
// few kilobytes.
const maxIdentityFile = 1 << 20

// idFile is what classify found at path. It holds no secret: public keys
// and kinds only.
type idFile struct {
	path    string
	kind    fileKind
	seed    nkeys.PrefixByte // kindSeed: the role of the seed
	jwtType string           // kindNATSJWT: the JWT's nats.type
	pub     string           // the public key of the seed, when there is one
	name    string           // a NATS user JWT's name claim
	issuer  string           // the JWT's issuer (an account for user JWTs)
	why     string           // kindUnreadable: the operating system's reason
}

// seedRoles names the role of each nkey seed prefix, as seeds are written
// ("SU…" a user's).
var seedRoles = map[nkeys.PrefixByte]string{
	nkeys.PrefixByteUser:     "a user (SU…)",
	nkeys.PrefixByteAccount:  "an account (SA…)",
	nkeys.PrefixByteOperator: "an operator (SO…)",
	nkeys.PrefixByteServer:   "a server (SN…)",
	nkeys.PrefixByteCluster:  "a cluster (SC…)",
	nkeys.PrefixByteCurve:    "a curve key (SX…)",
}

// String says what the file is, for an error: "a NATS user .creds file".
func (f idFile) String() string {
	switch f.kind {
	case kindMissing:
		return "no such file"
	case kindDir:
		return "a directory"
	case kindUnreadable:
		return "a file that cannot be read (" + f.why + ")"
	case kindCredential:
		return "an agentgw credential (.creds) of agent " + f.pub
	case kindCredentialJWT:
		return "an agentgw credential JWT without the agent's seed (written by 'creds issue --jwt-only')"
	case kindUserCreds:
		return "a NATS user .creds file (a NATS user JWT issued by account " + f.issuer + ", not an agentgw credential)"
	case kindUserJWT:
		return "a NATS user JWT without its seed"
	case kindNATSJWT:
		return "a NATS " + f.jwtType + " JWT"
	case kindSeed:
		role, ok := seedRoles[f.seed]
		if !ok {
			role = "an unknown role"
		}
		return "an nkey seed of " + role
	}
	return "neither an agentgw credential, a NATS .creds file nor an nkey seed"
}

// classify reads the file at path and says what it is. It never fails:
// a missing or unreadable file is a kind of its own. The contents are
// cleared before it returns.
func classify(path string) idFile {
	f := idFile{path: path}
	fh, err := os.Open(path)
	if err != nil {
		return f.openErr(err)
	}
	defer fh.Close()
	if st, err := fh.Stat(); err == nil && st.IsDir() {
		f.kind = kindDir
		return f
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxIdentityFile))
	defer clear(data)
	if err != nil {
		return f.openErr(err)
	}
	if tok, err := jwt.ParseDecoratedJWT(data); err == nil && len(tok) != len(data) {
		f.fromJWT(strings.TrimSpace(tok), data)
		return f
	}
	if t := bytes.TrimSpace(data); bytes.Count(t, []byte(".")) == 2 && bytes.HasPrefix(t, []byte("eyJ")) {
		f.fromJWT(string(t), nil)
		return f
	}
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] != 'S' {
			continue
		}
		if prefix, _, err := nkeys.DecodeSeed(line); err == nil {
			f.kind, f.seed = kindSeed, prefix
			f.pub = seedPublic(line)
			return f
		}
	}
	return f
}

func (f idFile) openErr(err error) idFile {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f.kind = kindMissing
	default:
		f.kind = kindUnreadable
		f.why = "cannot read"
		var pe *fs.PathError
		if errors.As(err, &pe) {
			f.why = pe.Err.Error()
		}
	}
	return f
}

// fromJWT classifies a compact JWT by its claims (signature unchecked:
// this only says what the file is meant to be), and the decorated seed
// of data when data is a .creds file.
func (f *idFile) fromJWT(tok string, data []byte) {
	var claims struct {
		Issuer string `json:"iss"`
		Name   string `json:"name"`
		Sub    string `json:"sub"`
		Nats   struct {
			Type          string `json:"type"`
			IssuerAccount string `json:"issuer_account"`
		} `json:"nats"`
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(raw, &claims) != nil {
		return
	}
	f.issuer = claims.Issuer
	if claims.Nats.IssuerAccount != "" {
		f.issuer = claims.Nats.IssuerAccount
	}
	hasSeed := false
	if data != nil {
		if kp, err := nkeys.ParseDecoratedNKey(data); err == nil {
			if pub, err := kp.PublicKey(); err == nil && nkeys.IsValidPublicUserKey(pub) {
				hasSeed, f.pub = true, pub
			}
			kp.Wipe()
		}
	}
	switch claims.Nats.Type {
	case identity.CredentialType:
		f.kind = kindCredentialJWT
		if hasSeed {
			f.kind = kindCredential
		}
	case "user":
		if claims.Name != "" && claims.Name != claims.Sub {
			f.name = clean(claims.Name)
		}
		f.kind = kindUserJWT
		if hasSeed {
			f.kind = kindUserCreds
		}
	case "":
		f.kind = kindOther
	default:
		f.kind, f.jwtType = kindNATSJWT, clean(claims.Nats.Type)
	}
}

// seedPublic returns the public key of seed, empty when it has none
// (curve seeds have one too).
func seedPublic(seed []byte) string {
	var kp nkeys.KeyPair
	var err error
	if bytes.HasPrefix(seed, []byte("SX")) {
		kp, err = nkeys.FromCurveSeed(seed)
	} else {
		kp, err = nkeys.FromSeed(seed)
	}
	if err != nil {
		return ""
	}
	defer kp.Wipe()
	pub, _ := kp.PublicKey()
	return pub
}

// fileError says that the file a flag (or an environment variable, or a
// context) names is not what was expected, and what it is.
type fileError struct {
	source string // "--credential", "$NATS_CREDS", `context "prod" (creds)`
	want   string // "an agentgw credential (a .creds file from 'agentgw creds issue')"
	got    idFile
}

func (e *fileError) Error() string {
	name := identity.SafePath(e.got.path)
	if e.source != "" {
		name = e.source + " " + name
	}
	if e.got.kind == kindMissing {
		return fmt.Sprintf("%s: no such file (expected %s)", name, e.want)
	}
	return fmt.Sprintf("%s: expected %s, found %s", name, e.want, e.got)
}

// wantCredential is what --credential expects.
const wantCredential = "an agentgw credential (a .creds file from 'agentgw creds issue')"

// wantCredentialAny is what creds show and creds revoke read: a
// credential with or without its seed.
const wantCredentialAny = "an agentgw credential (a .creds or JWT-only file from 'agentgw creds issue')"

// wantNATSIdentity is what --creds, $NATS_CREDS, $NATS_NKEY and a
// context's creds and nkey expect.
const wantNATSIdentity = "a NATS user .creds file or a user nkey seed (SU…) file"

// checkCredential classifies the file of an agentgw credential flag.
func checkCredential(source, path string) (idFile, error) {
	f := classify(path)
	if f.kind != kindCredential {
		return f, &fileError{source: source, want: wantCredential, got: f}
	}
	return f, nil
}

// checkNATSIdentity classifies a file naming the NATS user to connect
// as: a NATS user .creds, a user nkey seed, or an agentgw credential (the
// nkey user of its key, as tenant accounts name agents).
func checkNATSIdentity(source, path string) (idFile, error) {
	f := classify(path)
	switch {
	case f.kind == kindUserCreds, f.kind == kindCredential:
		return f, nil
	case f.kind == kindSeed && f.seed == nkeys.PrefixByteUser:
		return f, nil
	}
	return f, &fileError{source: source, want: wantNATSIdentity, got: f}
}
