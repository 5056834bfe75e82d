package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/nacl/box"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/policy"
)

// The wire format v1 test vectors (docs/wire.md) live in ../testdata/wire.
// TestWireVectors builds every file from the code and compares it byte
// for byte with the checked-in one; with -update it rewrites them. The
// other TestWireVector* tests (wire_check_test.go) read the files the way
// an implementation in another language would, field by field, and check
// them against this SDK; gateway.TestWireVectorsThroughGateway sends the
// same messages through a real gateway.
var updateWire = flag.Bool("update", false, "rewrite ../testdata/wire/*.json from the code")

const wireDir = "../testdata/wire"

// The scenario's fixed values.
var (
	wvNow      = time.Date(2026, 11, 26, 1, 8, 41, 0, time.UTC) // wire-v1.json's verify_at
	wvCredIAT  = wvNow.Add(-10 * time.Second)
	wvAudience = "billing-gateway"
	wvTenant   = "tenant_a"
)

const (
	wvCredTTL     = time.Hour
	wvDecisionTTL = 5 * time.Minute  // the gateway's default limits.decision_ttl
	wvApprovalTTL = 15 * time.Minute // the gateway's default limits.approval_ttl
	wvSkew        = 30 * time.Second
	wvPolicyID    = "base.same_tenant"
)

// Domain-separated derivations of the scenario's fixed secrets. Anyone can
// recompute them; they are test material only.
const (
	wvKeyLabel   = "agentgw wire-v1 test key: "
	wvNonceLabel = "agentgw wire-v1 test nonce: "
	wvJTILabel   = "agentgw wire-v1 test jti: "
)

func wvHash(label, name string) []byte {
	h := sha256.Sum256([]byte(label + name))
	return h[:]
}

func wvNonce(name string) []byte { return wvHash(wvNonceLabel, name)[:24] }

func wvJTI(name string) string {
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(wvHash(wvJTILabel, name)[:16])
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

var b64url = base64.RawURLEncoding

// wvWorld holds every key and intermediate result of the scenario while
// the files are built.
type wvWorld struct {
	t       testing.TB
	keys    map[string]nkeys.KeyPair
	pubs    map[string]string
	keyList []wvKey
	creds   map[string]identity.Token
	envs    map[string]*wvEnvelope
	seals   map[string]*wvSeal
	tokens  map[string]string
	policyV string
}

// wireV1Keys are the keys wire-v1.json fixes; the others are derived.
var wireV1Keys = map[string]string{
	"issuer":       "issuer_seed",
	"agent":        "agent_seed",
	"agent-xkey":   "agent_xkey_seed",
	"gateway-xkey": "gateway_xkey_seed",
}

// The scenario's keys, in keys.json order.
var wvKeyRoles = []struct {
	label  string
	role   string
	prefix nkeys.PrefixByte
}{
	{"issuer", "tenant issuer: signs credentials", nkeys.PrefixByteAccount},
	{"agent", "agent: sends requests", nkeys.PrefixByteUser},
	{"agent-xkey", "agent curve key: seals requests, opens replies", nkeys.PrefixByteCurve},
	{"gateway-signing", "gateway: signs decision tokens and replay authorizations", nkeys.PrefixByteServer},
	{"gateway-xkey", "gateway curve key: opens requests, re-seals deliveries and replies", nkeys.PrefixByteCurve},
	{"consumer", "capability consumer: answers requests", nkeys.PrefixByteUser},
	{"consumer-xkey", "consumer curve key: the catalog's consumer_xkey", nkeys.PrefixByteCurve},
	{"approver", "approver: grants held requests", nkeys.PrefixByteUser},
	{"approver-xkey", "approver curve key", nkeys.PrefixByteCurve},
	{"operator", "operator: asks for replays", nkeys.PrefixByteUser},
	{"operator-xkey", "operator curve key", nkeys.PrefixByteCurve},
	{"untrusted-gateway", "a gateway key no consumer trusts", nkeys.PrefixByteServer},
}

func newWVWorld(t testing.TB) *wvWorld {
	t.Helper()
	w := &wvWorld{t: t, keys: map[string]nkeys.KeyPair{}, pubs: map[string]string{}, creds: map[string]identity.Token{},
		envs: map[string]*wvEnvelope{}, seals: map[string]*wvSeal{}, tokens: map[string]string{}}
	raw, err := os.ReadFile("../testdata/wire-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var v1 struct{ Keys map[string]string }
	if err := json.Unmarshal(raw, &v1); err != nil {
		t.Fatal(err)
	}
	for _, k := range wvKeyRoles {
		var seed []byte
		derivation := fmt.Sprintf("seed_raw = SHA-256(%q)", wvKeyLabel+k.label)
		if field, ok := wireV1Keys[k.label]; ok {
			seed = []byte(v1.Keys[field])
			derivation = "testdata/wire-v1.json keys." + field
		} else if seed, err = nkeys.EncodeSeed(k.prefix, wvHash(wvKeyLabel, k.label)); err != nil {
			t.Fatal(err)
		}
		kp, err := nkeys.FromSeed(seed)
		if err != nil {
			t.Fatalf("key %s: %v", k.label, err)
		}
		pub, _ := kp.PublicKey()
		_, rawSeed, err := nkeys.DecodeSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		rawPub, err := nkeys.Decode(k.prefix, []byte(pub))
		if err != nil {
			t.Fatalf("key %s: %v", k.label, err)
		}
		alg := "ed25519"
		if k.prefix == nkeys.PrefixByteCurve {
			alg = "x25519"
		}
		w.keys[k.label], w.pubs[k.label] = kp, pub
		w.keyList = append(w.keyList, wvKey{Label: k.label, Role: k.role, Algorithm: alg, Derivation: derivation,
			SeedRawHex: hex.EncodeToString(rawSeed), Seed: string(seed), PublicRawHex: hex.EncodeToString(rawPub), Public: pub})
	}
	w.policyV, err = policy.Digest(filepath.Join(wireDir, "policy.cedar"))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *wvWorld) signer(label string) *identity.Signer {
	s, err := identity.NewSigner(w.keys[label])
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

func (w *wvWorld) box(label string) *identity.Box {
	b, err := identity.NewBox(w.keys[label])
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

// ---- keys.json ---------------------------------------------------------

func (w *wvWorld) keysFile() wvKeysFile {
	return wvKeysFile{
		About: "agentgw wire format v1 test keys (docs/wire.md, \"Keys\"); for tests only. " +
			"ed25519 keys: public_raw = Ed25519 public key of seed_raw (RFC 8032). x25519 keys: public_raw = X25519(seed_raw, 9) (RFC 7748). " +
			"Encodings: nkeys base32 with role prefix and CRC-16/XMODEM.",
		Keys: w.keyList,
	}
}

// ---- credential.json ---------------------------------------------------

var wvCredSpecs = []struct {
	label, xkey, service, name string
	scopes                     []string
}{
	{"agent", "agent-xkey", "support-agent-runtime", "support agent", []string{"agent:delegate", "kb:read", "pay:send", "refund:draft"}},
	{"consumer", "consumer-xkey", "refunds-tool", "refunds tool", []string{"respond:refunds.draft_refund"}},
	{"approver", "approver-xkey", "approvals-desk", "approver", []string{"approve:payments.*"}},
	{"operator", "operator-xkey", "operations", "operator", []string{"operator:replay"}},
}

func (w *wvWorld) issue(req identity.IssueRequest, at time.Time) identity.Token {
	tok, err := identity.Issue(w.keys["issuer"], req, at)
	if err != nil {
		w.t.Fatal(err)
	}
	return tok
}

func (w *wvWorld) credentialFile() wvCredentialsFile {
	f := wvCredentialsFile{
		About: "agentgw credentials: compact JWTs {typ JWT, alg ed25519-nkey} signed by the tenant issuer (docs/wire.md, \"Credentials\"). " +
			"Each verifies with trust, audience, skew and max lifetime below at verify_at_unix; each reject fails with the reason code in want. " +
			"creds_cases are .creds files (\".creds files\") around the agent's credential that a reader accepts or refuses as want says; " +
			"seed_file_cases are seed files (\"Seed files\") read for a user or a curve seed, accepted with the seed's public key or refused.",
		Trust:              map[string][]string{wvTenant: {w.pubs["issuer"]}},
		Audience:           wvAudience,
		VerifyAtUnix:       wvNow.Unix(),
		SkewSeconds:        int64(wvSkew / time.Second),
		MaxLifetimeSeconds: int64(identity.DefaultMaxLifetime / time.Second),
	}
	for _, s := range wvCredSpecs {
		req := identity.IssueRequest{Subject: w.pubs[s.label], Audience: wvAudience, Tenant: wvTenant, Service: s.service,
			Name: s.name, Scopes: s.scopes, XKey: w.pubs[s.xkey], TTL: wvCredTTL}
		tok := w.issue(req, wvCredIAT)
		w.creds[s.label] = tok
		parts := strings.Split(tok.Reveal(), ".")
		hdr, _ := b64url.DecodeString(parts[0])
		claims, _ := b64url.DecodeString(parts[1])
		var c struct {
			JTI string `json:"jti"`
		}
		if err := json.Unmarshal(claims, &c); err != nil {
			w.t.Fatal(err)
		}
		unsigned := strings.Replace(string(claims), `"jti":"`+c.JTI+`"`, `"jti":""`, 1)
		seed, _ := w.keys[s.label].Seed()
		creds, err := identity.FormatCreds(tok, identity.Seed(seed))
		if err != nil {
			w.t.Fatal(err)
		}
		f.Credentials = append(f.Credentials, wvCredential{
			Label: s.label, Issuer: w.pubs["issuer"], IssuedAtUnix: wvCredIAT.Unix(), TTLSeconds: int64(wvCredTTL / time.Second),
			Request: wvIssue{Subject: req.Subject, Audience: req.Audience, Tenant: req.Tenant, Service: req.Service,
				Name: req.Name, Scopes: req.Scopes, XKey: req.XKey},
			HeaderJSON: string(hdr), HeaderB64URL: parts[0], UnsignedClaimsJSON: unsigned, JTI: c.JTI,
			Claims: json.RawMessage(claims), ClaimsJSON: string(claims), ClaimsB64URL: parts[1],
			SigningInput: parts[0] + "." + parts[1], SignatureB64URL: parts[2], JWT: tok.Reveal(), Creds: string(creds),
		})
	}
	agent := f.Credentials[0]
	f.CredsCases = w.credsCases(agent)
	f.SeedFileCases = w.seedFileCases(agent)
	skew := int64(wvSkew / time.Second)
	exp := wvCredIAT.Add(wvCredTTL).Unix()
	base := identity.IssueRequest{Subject: w.pubs["agent"], Audience: wvAudience, Tenant: wvTenant, XKey: w.pubs["agent-xkey"],
		Scopes: []string{"kb:read"}, TTL: wvCredTTL}
	otherTenant := base
	otherTenant.Tenant = "tenant_b"
	tooLong := base
	tooLong.TTL = 2 * time.Hour
	// The agent's claims under jwt/v2's legacy v1 algorithm name, signed
	// properly: the header alone makes it malformed.
	legacyHead := b64url.EncodeToString([]byte(`{"typ":"JWT","alg":"ed25519"}`))
	legacyIn := legacyHead + "." + agent.ClaimsB64URL
	legacy := legacyIn + "." + b64url.EncodeToString(w.signer("issuer").Sign([]byte(legacyIn)))
	// The agent's credential with one more scope in its claims and the
	// original signature.
	forged := b64url.EncodeToString([]byte(strings.Replace(agent.ClaimsJSON, `"agent:delegate"`, `"admin:all","agent:delegate"`, 1)))
	tampered := agent.HeaderB64URL + "." + forged + "." + agent.SignatureB64URL
	f.Rejects = []wvCredentialReject{
		{"expired", agent.JWT, wvAudience, exp + skew + 1, "credential_expired"},
		{"not_yet_valid", agent.JWT, wvAudience, wvCredIAT.Unix() - skew - 1, "credential_not_yet_valid"},
		{"wrong_audience", agent.JWT, "other-gateway", wvNow.Unix(), "wrong_audience"},
		{"issuer_not_trusted_for_tenant", w.issue(otherTenant, wvCredIAT).Reveal(), wvAudience, wvNow.Unix(), "untrusted_issuer"},
		{"lifetime_too_long", w.issue(tooLong, wvCredIAT).Reveal(), wvAudience, wvNow.Unix(), "credential_lifetime_too_long"},
		{"legacy_alg_ed25519", legacy, wvAudience, wvNow.Unix(), "malformed_credential"},
		{"claims_edited_after_signing", tampered, wvAudience, wvNow.Unix(), "malformed_credential"},
	}
	return f
}

// ---- sealed.json ---------------------------------------------------------

// seal seals plaintext from the curve key from to the curve key to with
// the nonce derived from name: the nkeys xkey format, byte for byte what
// identity.Box.Seal writes with that nonce.
func (w *wvWorld) seal(name, from, to, plaintext string) *wvSeal {
	nonce := wvNonce(name)
	sealed, err := w.keys[from].SealWithRand([]byte(plaintext), w.pubs[to], bytes.NewReader(nonce))
	if err != nil {
		w.t.Fatal(err)
	}
	s := w.describeSeal(name, from, to, plaintext, sealed)
	w.seals[name] = s
	return s
}

func (w *wvWorld) describeSeal(name, from, to, plaintext string, sealed []byte) *wvSeal {
	seed, _ := w.keys[from].Seed()
	_, priv, _ := nkeys.DecodeSeed(seed)
	pub, _ := nkeys.Decode(nkeys.PrefixByteCurve, []byte(w.pubs[to]))
	dh, err := curve25519.X25519(priv, pub)
	if err != nil {
		w.t.Fatal(err)
	}
	var k, p, s [32]byte
	copy(p[:], pub)
	copy(s[:], priv)
	box.Precompute(&k, &p, &s)
	return &wvSeal{Name: name, From: w.pubs[from], FromLabel: from, To: w.pubs[to], ToLabel: to,
		NonceHex: hex.EncodeToString(sealed[4:28]), Plaintext: plaintext, X25519Hex: hex.EncodeToString(dh),
		BoxKeyHex: hex.EncodeToString(k[:]), SealedHex: hex.EncodeToString(sealed), SealedB64URL: b64url.EncodeToString(sealed)}
}

func (w *wvWorld) sealsFile(order []string) wvSealsFile {
	f := wvSealsFile{About: "nkeys xkey sealed payloads: \"xkv1\" || 24-byte nonce || NaCl box (crypto_box: X25519, HSalsa20, XSalsa20-Poly1305; 16-byte tag first) " +
		"(docs/wire.md, \"Sealed payloads\"). Each opens with the seed of to_label from from; each reject fails with the reason code in want."}
	for _, n := range order {
		f.Seals = append(f.Seals, *w.seals[n])
	}
	// wire-v1.json's sealed payload: random nonce, open only.
	raw, _ := os.ReadFile("../testdata/wire-v1.json")
	var v1 struct {
		SealedPayload struct {
			Plaintext string `json:"plaintext"`
			Sealed    string `json:"sealed_b64url"`
		} `json:"sealed_payload"`
	}
	if err := json.Unmarshal(raw, &v1); err != nil {
		w.t.Fatal(err)
	}
	ct, err := b64url.DecodeString(v1.SealedPayload.Sealed)
	if err != nil {
		w.t.Fatal(err)
	}
	f.Seals = append(f.Seals, *w.describeSeal("wire-v1", "agent-xkey", "gateway-xkey", v1.SealedPayload.Plaintext, ct))

	good, _ := hex.DecodeString(w.seals["refund-request"].SealedHex)
	mutate := func(f func([]byte) []byte) string { return hex.EncodeToString(f(bytes.Clone(good))) }
	zeroKey, err := nkeys.Encode(nkeys.PrefixByteCurve, make([]byte, 32))
	if err != nil {
		w.t.Fatal(err)
	}
	from := w.pubs["agent-xkey"]
	f.Rejects = []wvSealReject{
		{"version_xkv2", from, "gateway-xkey", mutate(func(b []byte) []byte { b[3] = '2'; return b }), "seal_broken"},
		{"tag_flipped", from, "gateway-xkey", mutate(func(b []byte) []byte { b[28] ^= 1; return b }), "seal_broken"},
		{"ciphertext_flipped", from, "gateway-xkey", mutate(func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b }), "seal_broken"},
		{"shorter_than_44_bytes", from, "gateway-xkey", mutate(func(b []byte) []byte { return b[:43] }), "seal_broken"},
		{"other_sender", w.pubs["approver-xkey"], "gateway-xkey", hex.EncodeToString(good), "seal_broken"},
		{"other_recipient", from, "consumer-xkey", hex.EncodeToString(good), "seal_broken"},
		{"low_order_sender_key", string(zeroKey), "gateway-xkey", hex.EncodeToString(good), "seal_mismatch"},
	}
	return f
}

// ---- envelope.json ---------------------------------------------------------

func wvEncode(t testing.TB, v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestWireVectors regenerates ../testdata/wire from the code and compares
// it byte for byte with the checked-in files (-update rewrites them).
func TestWireVectors(t *testing.T) {
	files := newWVWorld(t).build()
	for name, got := range files {
		path := filepath.Join(wireDir, name)
		if *updateWire {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./client -run TestWireVectors -update)", err)
		}
		if !bytes.Equal(got, want) {
			gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
			for i := range min(len(gl), len(wl)) {
				if gl[i] != wl[i] {
					t.Errorf("%s line %d:\n got %.200s\nwant %.200s", name, i+1, gl[i], wl[i])
					break
				}
			}
			t.Errorf("%s differs from what the code produces (%d vs %d bytes); if the wire format changed on purpose, "+
				"it needs a new version (docs/wire.md)", name, len(got), len(want))
		}
	}
}
