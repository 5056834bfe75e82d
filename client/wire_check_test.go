package client

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/nacl/box"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// The checks below read ../testdata/wire as an implementation in another
// language would: each value from its field, each rule from docs/wire.md
// (the nkey encoding, the hash inputs and the Merkle proof are recomputed
// here from the spec, not by the packages that wrote them), and then hand
// the bytes to this SDK's verifiers.

func wvLoad[T any](t *testing.T, name string) T {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(wireDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var v T
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

func wvUnhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wvKeyring is keys.json indexed by label and by public key.
type wvKeyring map[string]wvKey

func wvKeysOf(t *testing.T) wvKeyring {
	k := wvKeyring{}
	for _, key := range wvLoad[wvKeysFile](t, "keys.json").Keys {
		k[key.Label], k[key.Public] = key, key
	}
	return k
}

func (k wvKeyring) pair(t *testing.T, labelOrPublic string) nkeys.KeyPair {
	t.Helper()
	key, ok := k[labelOrPublic]
	if !ok {
		t.Fatalf("no key %s in keys.json", labelOrPublic)
	}
	kp, err := nkeys.FromSeed([]byte(key.Seed))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func (k wvKeyring) box(t *testing.T, labelOrPublic string) *identity.Box {
	t.Helper()
	b, err := identity.NewBox(k.pair(t, labelOrPublic))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0).
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

var nkeyBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// wvDecodeNkey decodes an encoded nkey per docs/wire.md: base32 (RFC
// 4648 alphabet, no padding) of prefix ‖ 32 raw bytes ‖ CRC-16/XMODEM of
// both, little-endian. A public key has a one-byte prefix (role << 3); a
// seed two bytes: 18<<3 | role>>5, (role&31)<<3.
func wvDecodeNkey(t *testing.T, s string, seed bool) (role byte, raw []byte) {
	t.Helper()
	b, err := nkeyBase32.DecodeString(s)
	if err != nil {
		t.Fatalf("%.8s…: %v", s, err)
	}
	n := len(b) - 2
	if crc16(b[:n]) != binary.LittleEndian.Uint16(b[n:]) {
		t.Fatalf("%.8s…: checksum", s)
	}
	if !seed {
		if n != 33 {
			t.Fatalf("%.8s…: %d bytes", s, n)
		}
		return b[0], b[1:n]
	}
	if n != 34 || b[0]&0xf8 != 18<<3 {
		t.Fatalf("%.8s…: not a seed", s)
	}
	return b[0]<<5 | b[1]>>3, b[2:n]
}

var wvRolePrefix = map[string]byte{"A": 0, "U": 20 << 3, "N": 13 << 3, "X": 23 << 3}

func TestWireVectorKeys(t *testing.T) {
	for _, k := range wvLoad[wvKeysFile](t, "keys.json").Keys {
		t.Run(k.Label, func(t *testing.T) {
			role, pub := wvDecodeNkey(t, k.Public, false)
			seedRole, seed := wvDecodeNkey(t, k.Seed, true)
			if want := wvRolePrefix[k.Public[:1]]; role != want || seedRole != want {
				t.Errorf("role prefixes %#x, %#x; want %#x", role, seedRole, want)
			}
			if hex.EncodeToString(pub) != k.PublicRawHex || hex.EncodeToString(seed) != k.SeedRawHex {
				t.Errorf("raw keys differ from public_raw_hex / seed_raw_hex")
			}
			var derived []byte
			switch k.Algorithm {
			case "ed25519":
				derived = ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
			case "x25519":
				derived, _ = curve25519.X25519(seed, curve25519.Basepoint)
			default:
				t.Fatalf("algorithm %q", k.Algorithm)
			}
			if !bytes.Equal(derived, pub) {
				t.Errorf("public key is not derived from the seed")
			}
			if strings.HasPrefix(k.Derivation, "seed_raw = SHA-256") {
				if h := sha256.Sum256([]byte(wvKeyLabel + k.Label)); !bytes.Equal(h[:], seed) {
					t.Errorf("seed is not %s", k.Derivation)
				}
			}
			if got, _ := wvKeysOf(t).pair(t, k.Label).PublicKey(); got != k.Public {
				t.Errorf("nkeys.FromSeed(seed).PublicKey() = %s; want %s", got, k.Public)
			}
		})
	}
}

func TestWireVectorCredentials(t *testing.T) {
	f := wvLoad[wvCredentialsFile](t, "credential.json")
	keys := wvKeysOf(t)
	verifier := func(aud string) *identity.Verifier {
		v, err := identity.NewVerifier(identity.VerifierConfig{Audience: aud, Skew: time.Duration(f.SkewSeconds) * time.Second,
			MaxLifetime: time.Duration(f.MaxLifetimeSeconds) * time.Second, Trust: f.Trust, CacheSize: -1}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range f.Credentials {
		t.Run(c.Label, func(t *testing.T) {
			if c.JWT != c.SigningInput+"."+c.SignatureB64URL || c.SigningInput != c.HeaderB64URL+"."+c.ClaimsB64URL {
				t.Fatal("jwt is not header.claims.signature")
			}
			if h, _ := b64url.DecodeString(c.HeaderB64URL); string(h) != c.HeaderJSON || c.HeaderJSON != `{"typ":"JWT","alg":"ed25519-nkey"}` {
				t.Errorf("header = %s", h)
			}
			if b, _ := b64url.DecodeString(c.ClaimsB64URL); string(b) != c.ClaimsJSON {
				t.Error("claims_b64url does not decode to claims_json")
			}
			_, issuer := wvDecodeNkey(t, c.Issuer, false)
			sig, _ := b64url.DecodeString(c.SignatureB64URL)
			if !ed25519.Verify(issuer, []byte(c.SigningInput), sig) {
				t.Error("signature does not verify with the issuer key over signing_input")
			}
			if strings.Replace(c.ClaimsJSON, `"jti":"`+c.JTI+`"`, `"jti":""`, 1) != c.UnsignedClaimsJSON {
				t.Error("unsigned_claims_json is not claims_json with an empty jti")
			}
			sum := sha512.Sum512_256([]byte(c.UnsignedClaimsJSON))
			if got := nkeyBase32.EncodeToString(sum[:]); got != c.JTI {
				t.Errorf("jti = %s; base32(SHA-512/256(unsigned)) = %s", c.JTI, got)
			}
			cred, err := verifier(f.Audience).Verify(c.JWT, time.Unix(f.VerifyAtUnix, 0))
			if err != nil {
				t.Fatalf("Verify = %v", err)
			}
			r := c.Request
			if cred.Subject != r.Subject || cred.Audience != r.Audience || cred.Tenant != r.Tenant || cred.Service != r.Service ||
				cred.Name != r.Name || cred.XKey != r.XKey || !slices.Equal(cred.Scopes, r.Scopes) || cred.ID != c.JTI ||
				cred.IssuedAt.Unix() != c.IssuedAtUnix || cred.Expires.Unix() != c.IssuedAtUnix+c.TTLSeconds {
				t.Errorf("Verify = %+v; want %+v", cred, r)
			}
			tok, kp, err := identity.ParseCreds([]byte(c.Creds))
			if err != nil {
				t.Fatalf("ParseCreds = %v", err)
			}
			if pub, _ := kp.PublicKey(); tok.Reveal() != c.JWT || pub != r.Subject || keys[r.Subject].Seed == "" {
				t.Error("creds file does not hold the jwt and the subject's seed")
			}
		})
	}
	for _, r := range f.Rejects {
		t.Run("reject/"+r.Name, func(t *testing.T) {
			_, err := verifier(r.Audience).Verify(r.JWT, time.Unix(r.NowUnix, 0))
			if got := reason.Of(err); string(got) != r.Want {
				t.Errorf("Verify = %v; want %s", err, r.Want)
			}
		})
	}
}

func wvEnvelopes(t *testing.T) map[string]wvEnvelope {
	m := map[string]wvEnvelope{}
	for _, e := range wvLoad[wvEnvelopesFile](t, "envelope.json").Envelopes {
		m[e.Name] = e
	}
	return m
}

func wvHeaders(m wvMessage) nats.Header {
	h := nats.Header{}
	for _, kv := range m.Headers {
		h[kv.Name] = append(h[kv.Name], kv.Value)
	}
	return h
}

func TestWireVectorEnvelopes(t *testing.T) {
	f := wvLoad[wvEnvelopesFile](t, "envelope.json")
	keys := wvKeysOf(t)
	seals := map[string]wvSeal{}
	for _, s := range wvLoad[wvSealsFile](t, "sealed.json").Seals {
		seals[s.Name] = s
	}
	creds := map[string]wvCredential{}
	for _, c := range wvLoad[wvCredentialsFile](t, "credential.json").Credentials {
		creds[c.Label] = c
	}
	now := time.Unix(f.VerifyAtUnix, 0)
	for _, e := range f.Envelopes {
		t.Run(e.Name, func(t *testing.T) {
			body := []byte(e.Message.Body)
			if e.SigningInput != "agentgw-envelope-v1\n"+e.Message.Body {
				t.Error(`signing_input is not "agentgw-envelope-v1\n" ‖ body`)
			}
			_, pub := wvDecodeNkey(t, keys[e.Signer].Public, false)
			sig := wvUnhex(t, e.SignatureHex)
			if !ed25519.Verify(pub, []byte(e.SigningInput), sig) || b64url.EncodeToString(sig) != e.SignatureB64URL {
				t.Error("signature_hex does not verify over signing_input, or is not signature_b64url")
			}
			h := wvHeaders(e.Message)
			if err := envelope.Verify(pub, body, h.Get(header.Signature)); err != nil {
				t.Errorf("envelope.Verify(header) = %v", err)
			}
			b, err := envelope.Parse(body, envelope.Limits{})
			if err != nil {
				t.Fatalf("Parse = %v", err)
			}
			if err := (envelope.Freshness{MaxTTL: envelope.DefaultMaxTTL, Skew: envelope.DefaultSkew}).Check(b, now); err != nil {
				t.Errorf("Freshness.Check = %v", err)
			}
			if subj, _ := subjects.Ingress(b.Tenant, keys[e.Signer].Public); subj != e.Message.Subject {
				t.Errorf("subject = %s; want %s", e.Message.Subject, subj)
			}
			if h.Get(header.MsgID) != b.MessageID || h.Get(header.Credential) != creds[e.Credential].JWT {
				t.Error("Nats-Msg-Id is not the message id, or Agentgw-Credential is not the signer's credential")
			}
			if !strings.HasSuffix(e.Message.Body, `"payload":`+e.PayloadMember+`}`) {
				t.Error("payload_member is not the body's payload member value")
			}
			if sha256Hex(body) != e.BodySHA256Hex || sha256Hex([]byte(e.PayloadMember)) != e.PayloadSHA256Hex {
				t.Error("body_sha256_hex or payload_sha256_hex is wrong")
			}
			if d := b.PayloadDigest(); hex.EncodeToString(d[:]) != e.PayloadSHA256Hex {
				t.Error("PayloadDigest differs from payload_sha256_hex")
			}
			if e.Seal != "" {
				s := seals[e.Seal]
				if b.Payload.Sealed != s.SealedB64URL || b.Payload.From != s.From || b.Payload.To != s.To {
					t.Errorf("payload is not seal %s", e.Seal)
				}
				if s.From != creds[e.Credential].Request.XKey || s.Plaintext != e.Plaintext {
					t.Error("sealed payload is not from the credential's xkey, or does not hold plaintext")
				}
			}
		})
	}
}

func TestWireVectorSeals(t *testing.T) {
	f := wvLoad[wvSealsFile](t, "sealed.json")
	keys := wvKeysOf(t)
	for _, s := range f.Seals {
		t.Run(s.Name, func(t *testing.T) {
			sealed := wvUnhex(t, s.SealedHex)
			if b64url.EncodeToString(sealed) != s.SealedB64URL {
				t.Error("sealed_b64url is not sealed_hex")
			}
			if string(sealed[:4]) != "xkv1" || hex.EncodeToString(sealed[4:28]) != s.NonceHex || len(sealed) != 4+24+16+len(s.Plaintext) {
				t.Fatal(`sealed is not "xkv1" ‖ nonce ‖ tag ‖ ciphertext`)
			}
			// NaCl crypto_box from the raw keys.
			_, toSeed := wvDecodeNkey(t, keys[s.ToLabel].Seed, true)
			_, fromPub := wvDecodeNkey(t, s.From, false)
			var nonce [24]byte
			var pk, sk, k [32]byte
			copy(nonce[:], sealed[4:28])
			copy(pk[:], fromPub)
			copy(sk[:], toSeed)
			if dh, _ := curve25519.X25519(toSeed, fromPub); hex.EncodeToString(dh) != s.X25519Hex {
				t.Error("x25519_hex is not X25519(recipient seed, sender public)")
			}
			box.Precompute(&k, &pk, &sk)
			if hex.EncodeToString(k[:]) != s.BoxKeyHex {
				t.Error("box_key_hex is not HSalsa20(X25519, 0)")
			}
			if pt, ok := box.Open(nil, sealed[28:], &nonce, &pk, &sk); !ok || string(pt) != s.Plaintext {
				t.Error("crypto_box_open does not yield plaintext")
			}
			pt, err := keys.box(t, s.ToLabel).Open(sealed, s.From)
			if err != nil || string(pt) != s.Plaintext {
				t.Errorf("identity.Box.Open = %q, %v", pt, err)
			}
			if s.Name != "wire-v1" {
				again, err := keys.pair(t, s.FromLabel).SealWithRand([]byte(s.Plaintext), s.To, bytes.NewReader(nonce[:]))
				if err != nil || !bytes.Equal(again, sealed) {
					t.Errorf("sealing plaintext with nonce_hex does not reproduce sealed_hex (%v)", err)
				}
			}
		})
	}
	for _, r := range f.Rejects {
		t.Run("reject/"+r.Name, func(t *testing.T) {
			_, err := keys.box(t, r.OpenWith).Open(wvUnhex(t, r.SealedHex), r.From)
			if got := reason.Of(err); string(got) != r.Want {
				t.Errorf("Open = %v; want %s", err, r.Want)
			}
		})
	}
}

// wvRootFromPath recomputes a Merkle root from a leaf hash and its audit
// path (RFC 9162 §2.1.3.2).
func wvRootFromPath(leaf [32]byte, index, size uint64, path [][32]byte) ([32]byte, bool) {
	fn, sn, r := index, size-1, leaf
	for _, p := range path {
		if sn == 0 {
			return r, false
		}
		if fn&1 == 1 || fn == sn {
			r = wvNode(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = wvNode(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	return r, sn == 0
}

func TestWireVectorDecisionTokens(t *testing.T) {
	f := wvLoad[wvDecisionFile](t, "decision.json")
	if h, _ := b64url.DecodeString(f.HeaderB64URL); string(h) != f.HeaderJSON {
		t.Error("header_b64url is not header_json")
	}
	_, gw := wvDecodeNkey(t, f.Gateway, false)
	opt := func(aud string) decision.VerifyOptions {
		return decision.VerifyOptions{TrustedGateways: []string{f.Gateway}, Audience: aud,
			Now: time.Unix(f.VerifyAtUnix, 0), Skew: time.Duration(f.SkewSeconds) * time.Second}
	}
	for _, b := range f.Batches {
		root := [32]byte(wvUnhex(t, b.RootHex))
		signed := append(append([]byte(f.RootContext), binary.BigEndian.AppendUint64(nil, uint64(b.Size))...), root[:]...)
		if hex.EncodeToString(signed) != b.RootSigningInputHex {
			t.Errorf("%s: root_signing_input_hex is not context ‖ uint64be(size) ‖ root", b.Name)
		}
		if !ed25519.Verify(gw, signed, wvUnhex(t, b.SignatureHex)) {
			t.Errorf("%s: batch signature does not verify", b.Name)
		}
		var leaves [][32]byte
		for _, tok := range b.Tokens {
			t.Run(b.Name+"/"+tok.Name, func(t *testing.T) {
				parts := strings.Split(tok.Token, ".")
				if len(parts) != 4 || parts[0] != f.HeaderB64URL || parts[1] != tok.ClaimsB64URL || parts[2] != tok.ProofB64URL ||
					parts[3] != b.SignatureB64URL || tok.SigningInput != parts[0]+"."+parts[1] {
					t.Fatal("token is not header.claims.proof.signature")
				}
				if c, _ := b64url.DecodeString(tok.ClaimsB64URL); string(c) != tok.ClaimsJSON {
					t.Error("claims_b64url is not claims_json")
				}
				leaf := sha256.Sum256(append([]byte{0}, tok.SigningInput...))
				if hex.EncodeToString(leaf[:]) != tok.LeafHex {
					t.Error("leaf_hex is not SHA-256(0x00 ‖ signing_input)")
				}
				leaves = append(leaves, leaf)
				proof := wvUnhex(t, tok.ProofHex)
				if p, _ := b64url.DecodeString(tok.ProofB64URL); !bytes.Equal(p, proof) {
					t.Error("proof_b64url is not proof_hex")
				}
				want := binary.AppendUvarint(binary.AppendUvarint(nil, uint64(tok.Index)), uint64(b.Size))
				var path [][32]byte
				for _, p := range tok.PathHex {
					want = append(want, wvUnhex(t, p)...)
					path = append(path, [32]byte(wvUnhex(t, p)))
				}
				if !bytes.Equal(proof, want) {
					t.Error("proof is not uvarint(index) ‖ uvarint(size) ‖ path")
				}
				if r, ok := wvRootFromPath(leaf, uint64(tok.Index), uint64(b.Size), path); !ok || r != root {
					t.Error("the audit path does not lead to root_hex")
				}
				c, err := decision.Verify(tok.Token, opt(tok.Audience))
				if err != nil {
					t.Fatalf("decision.Verify = %v", err)
				}
				var got, wantClaims map[string]any
				cj, _ := json.Marshal(map[string]any{"aud": c.Audience, "exp": c.Expires.Unix(), "jti": c.ID, "iat": c.IssuedAt.Unix(),
					"iss": c.Issuer, "sub": c.Subject, "nats": map[string]any{"act": c.Act, "body_digest": c.BodyDigest, "message_id": c.MessageID,
						"payload_digest": c.PayloadDigest, "policy_ids": c.PolicyIDs, "policy_version": c.PolicyVersion, "route": c.Route,
						"scope": c.Scope, "tenant": c.Tenant, "trace_id": c.TraceID, "type": decision.Type, "version": 2}})
				_ = json.Unmarshal(cj, &got)
				_ = json.Unmarshal(tok.Claims, &wantClaims)
				if gj, _ := json.Marshal(got); !bytes.Equal(gj, mustJSON(t, wantClaims)) {
					t.Errorf("Verify claims = %s; want %s", gj, mustJSON(t, wantClaims))
				}
			})
		}
		var nodes []string
		if r := wvTreeHash(leaves, &nodes); r != root || !slices.Equal(nodes, b.NodesHex) {
			t.Errorf("%s: the tree of the leaves is not nodes_hex / root_hex", b.Name)
		}
	}
	for _, r := range f.Rejects {
		t.Run("reject/"+r.Name, func(t *testing.T) {
			_, err := decision.Verify(r.Token, decision.VerifyOptions{TrustedGateways: r.Trusted, Audience: r.Audience,
				Now: time.Unix(r.NowUnix, 0), Skew: time.Duration(r.SkewSeconds) * time.Second})
			if got := reason.Of(err); string(got) != r.Want {
				t.Errorf("Verify = %v; want %s", err, r.Want)
			}
		})
	}
	audiences := map[string]string{}
	for _, b := range f.Batches {
		for _, tok := range b.Tokens {
			audiences[tok.Name] = tok.Audience
		}
	}
	tokens := wvTokens(t)
	if len(f.Mutations) != 400 {
		t.Errorf("%d mutations; want the 400 docs/wire.md counts", len(f.Mutations))
	}
	for i, m := range f.Mutations {
		tok, ok := tokens[m.Of]
		if !ok {
			t.Fatalf("mutation %d edits %q, no token of the file", i, m.Of)
		}
		if _, err := decision.Verify(m.apply(t, tok), opt(audiences[m.Of])); string(reason.Of(err)) != m.Want {
			t.Errorf("mutation %d (%s %s at %d): Verify = %v; want %s", i, m.Of, m.Op, m.At, err, m.Want)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wvTokens(t *testing.T) map[string]string {
	m := map[string]string{}
	for _, b := range wvLoad[wvDecisionFile](t, "decision.json").Batches {
		for _, tok := range b.Tokens {
			m[tok.Name] = tok.Token
		}
	}
	return m
}

func TestWireVectorDeliveries(t *testing.T) {
	f := wvLoad[wvDeliveriesFile](t, "delivery.json")
	keys, envs, tokens := wvKeysOf(t), wvEnvelopes(t), wvTokens(t)
	seals := map[string]wvSeal{}
	for _, s := range wvLoad[wvSealsFile](t, "sealed.json").Seals {
		seals[s.Name] = s
	}
	byName := map[string]wvDelivery{}
	opts := func(d wvDelivery) VerifyOptions {
		v := d.Verify
		return VerifyOptions{Tenant: v.Tenant, Targets: v.Targets, TrustedGateways: v.TrustedGateways, GatewayXKeys: v.GatewayXKeys,
			Curve: keys.box(t, v.ConsumerXKey), VerifyAgentSignature: v.VerifyAgentSignature,
			Now: time.Unix(v.NowUnix, 0), Skew: time.Duration(v.SkewSeconds) * time.Second}
	}
	for _, d := range f.Deliveries {
		byName[d.Name] = d
		t.Run(d.Name, func(t *testing.T) {
			env := envs[d.Envelope]
			doc := delivery.Doc{Decision: tokens[d.Token], Signature: wvHeaders(env.Message).Get(header.Signature), Envelope: []byte(env.Message.Body)}
			if d.Seal != "" {
				doc.Sealed, doc.SealedFrom = seals[d.Seal].SealedB64URL, seals[d.Seal].From
			}
			if want, err := doc.Append(nil); err != nil || string(want) != d.Message.Body {
				t.Errorf("body is not the delivery document of its parts (%v)", err)
			}
			got, err := VerifyDelivery(d.Message.Subject, wvHeaders(d.Message), []byte(d.Message.Body), opts(d))
			if err != nil {
				t.Fatalf("VerifyDelivery = %v", err)
			}
			if string(got.Payload) != d.WantPayload || got.Sealed != d.WantSealed || string(got.Body) != env.Message.Body {
				t.Errorf("VerifyDelivery = payload %q sealed %v; want %q %v", got.Payload, got.Sealed, d.WantPayload, d.WantSealed)
			}
			if h := wvHeaders(d.Message); h.Get(header.MessageID) != got.Envelope.MessageID || h.Get(header.Route) != "allow" {
				t.Error("Agentgw-Message-Id or Agentgw-Route header is wrong")
			}
		})
	}
	for _, r := range f.Rejects {
		t.Run("reject/"+r.Name, func(t *testing.T) {
			_, err := VerifyDelivery(r.Message.Subject, wvHeaders(r.Message), []byte(r.Message.Body), opts(byName[r.Of]))
			if got := reason.Of(err); string(got) != r.Want {
				t.Errorf("VerifyDelivery = %v; want %s", err, r.Want)
			}
		})
	}
	if len(f.Mutations) != 180 {
		t.Errorf("%d mutations; want the 180 docs/wire.md counts", len(f.Mutations))
	}
	for i, m := range f.Mutations {
		d, ok := byName[m.Of]
		if !ok {
			t.Fatalf("mutation %d edits %q, no delivery of the file", i, m.Of)
		}
		got, err := VerifyDelivery(d.Message.Subject, wvHeaders(d.Message), []byte(m.apply(t, d.Message.Body)), opts(d))
		verdict := string(reason.Of(err))
		if err == nil {
			verdict = "accepted"
			if string(got.Payload) != d.WantPayload {
				t.Errorf("mutation %d (%s %s at %d) verifies with another payload", i, m.Of, m.Op, m.At)
			}
		}
		if verdict != m.Want {
			t.Errorf("mutation %d (%s %s at %d): VerifyDelivery = %v; want %s", i, m.Of, m.Op, m.At, err, m.Want)
		}
	}
}

func TestWireVectorApproval(t *testing.T) {
	f := wvLoad[wvApprovalFile](t, "approval.json")
	envs := wvEnvelopes(t)
	held := envs[f.HeldEnvelope]
	heldBody, err := envelope.Parse([]byte(held.Message.Body), envelope.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	req, err := DecodeRequest(f.Request.Subject, []byte(f.Request.Body), heldBody.Tenant)
	if err != nil {
		t.Fatalf("DecodeRequest = %v", err)
	}
	if req.BodyDigest != "sha256:"+held.BodySHA256Hex || req.PayloadDigest != "sha256:"+held.PayloadSHA256Hex ||
		req.BodyDigest != f.BodyDigest || req.PayloadDigest != f.PayloadDigest || req.PolicyVersion != f.PolicyVersion {
		t.Errorf("request digests %s, %s; want sha256: of the held body and payload member", req.BodyDigest, req.PayloadDigest)
	}
	if req.HeldMessageID != heldBody.MessageID || req.TraceID != heldBody.TraceID || req.Target != heldBody.Target ||
		req.Agent != strings.TrimPrefix(held.Message.Subject, "agentgw.in."+heldBody.Tenant+".") {
		t.Errorf("request = %+v; does not describe the held envelope", req)
	}
	if !req.Deadline.After(req.RequestedAt) {
		t.Error("deadline is not after requested_at")
	}
	// The gateway reads an answer this way (approvalGate).
	answers := map[string]approval.Answer{}
	for _, a := range f.Answers {
		var ans approval.Answer
		dec := json.NewDecoder(strings.NewReader(a.Payload))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&ans); err != nil || ans.Decision != a.Name || ans.BodyDigest != req.BodyDigest || ans.PolicyVersion != req.PolicyVersion {
			t.Errorf("answer %s = %+v, %v; want decision %s bound to the request", a.Name, ans, err, a.Name)
		}
		if err := envelope.CheckPayload([]byte(a.Payload), envelope.Limits{}); err != nil {
			t.Errorf("answer %s is not a strict JSON object: %v", a.Name, err)
		}
		answers[a.Name] = ans
	}
	approve := envs[f.ApproveEnvelope]
	ab, err := envelope.Parse([]byte(approve.Message.Body), envelope.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if ab.Capability != envelope.Approve || ab.Target != req.HeldMessageID || ab.TraceID != req.TraceID ||
		ab.IdempotencyKey != f.IdempotencyKey || f.IdempotencyKey != answerKey(req.HeldMessageID) || ab.Payload.IsSealed() {
		t.Errorf("approve envelope = %+v; want a plain approve of %s", ab, req.HeldMessageID)
	}
	var grant approval.Answer
	if err := json.Unmarshal(ab.Payload.Plain, &grant); err != nil || grant != answers[approval.Grant] {
		t.Errorf("approve payload = %s; want the grant answer", ab.Payload.Plain)
	}
	if approve.Signer == held.Signer {
		t.Error("the approver is the requester")
	}
}

func TestWireVectorResponse(t *testing.T) {
	f := wvLoad[wvResponseFile](t, "response.json")
	keys, envs, tokens := wvKeysOf(t), wvEnvelopes(t), wvTokens(t)
	request, respond := envs[f.RequestEnvelope], envs[f.RespondEnvelope]
	rq, _ := envelope.Parse([]byte(request.Message.Body), envelope.Limits{})
	rs, err := envelope.Parse([]byte(respond.Message.Body), envelope.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if rs.Capability != envelope.Respond || rs.Target != envelope.RequestRef(f.Agent, rq.MessageID) || rs.TraceID != rq.TraceID {
		t.Errorf("respond envelope = %+v; want a respond to %s in its trace", rs, rq.MessageID)
	}
	ct, err := rs.Payload.SealedBytes()
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := keys.box(t, rs.Payload.To).Open(ct, rs.Payload.From); err != nil || string(pt) != f.ResponsePlain {
		t.Errorf("respond payload opens to %q, %v", pt, err)
	}
	cat, err := catalog.Load(filepath.Join(wireDir, "catalog.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	target, _ := cat.Lookup(rq.Target)
	if red, err := target.ValidateResponse([]byte(f.ResponsePlain)); err != nil || string(red) != f.ReplyPlain ||
		!slices.Equal(target.Sensitive, f.Sensitive) {
		t.Errorf("redacted response = %s, %v; want reply_plaintext", red, err)
	}
	data := wvUnhex(t, f.Reply.DataHex)
	if b64url.EncodeToString(data) != f.Reply.DataB64URL {
		t.Error("data_b64url is not data_hex")
	}
	m := &nats.Msg{Subject: f.Reply.Subject, Header: wvHeaders(f.Reply), Data: data}
	if m.Header.Get(header.Decision) != tokens[f.ReplyToken] || m.Header.Get("Agentgw-Request-Id") != rq.MessageID {
		t.Error("reply headers do not carry the reply token and the request id")
	}
	if subj, _ := subjects.Reply(rq.Tenant, f.Agent); subj != f.Reply.Subject {
		t.Errorf("reply subject %s; want %s", f.Reply.Subject, subj)
	}
	now := time.Unix(f.VerifyAtUnix, 0)
	a := &Agent{pub: f.Agent, tenant: rq.Tenant, box: keys.box(t, f.AgentXKey), cfg: AgentConfig{GatewayXKey: f.GatewayXKey}, now: func() time.Time { return now }}
	r, err := a.verifyReply(m, rq.Target, WaitOptions{TrustedGateways: f.TrustedGateways})
	if err != nil {
		t.Fatalf("verifyReply = %v", err)
	}
	if string(r.Payload) != f.ReplyPlain || r.MessageID != rs.MessageID || r.Responder != respond.Message.Subject[len("agentgw.in.tenant_a."):] ||
		r.Claims.BodyDigest != respond.BodySHA256Hex {
		t.Errorf("verifyReply = %+v", r)
	}
}

func TestWireVectorOperator(t *testing.T) {
	f := wvLoad[wvOperatorFile](t, "operator.json")
	keys := wvKeysOf(t)
	now := time.Unix(f.VerifyAtUnix, 0)
	body := []byte(f.Request.Body)
	if f.SigningInput != "agentgw-operator-v1\n"+f.Request.Body {
		t.Error(`signing_input is not "agentgw-operator-v1\n" ‖ body`)
	}
	if _, err := operator.Parse(body, now, wvSkew); err != nil {
		t.Errorf("operator.Parse = %v", err)
	}
	h := wvHeaders(f.Request)
	cred, err := identity.NewVerifier(identity.VerifierConfig{Audience: wvAudience, Skew: wvSkew,
		Trust: map[string][]string{wvTenant: {keys["issuer"].Public}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cred.Verify(h.Get(header.Credential), now)
	if err != nil {
		t.Fatal(err)
	}
	_, pub := wvDecodeNkey(t, c.Subject, false)
	sig, _ := b64url.DecodeString(h.Get(header.Signature))
	if !ed25519.Verify(pub, []byte(f.SigningInput), sig) || h.Get(header.Signature) != f.SignatureB64URL || !c.HasScope(operator.Scope) {
		t.Error("operator signature does not verify with the credential's subject, or the credential lacks operator:replay")
	}
	digest := sha256Hex([]byte(f.ReplayBody))
	gwBox := keys.box(t, "gateway-xkey")
	if tok, err := gwBox.OpenCredential(f.ReplayCredential, gwBox.PublicKey(), []byte(f.ReplayBody)); err != nil || tok.Reveal() != h.Get(header.Credential) {
		t.Errorf("replay_credential does not open, bound to the body, to the operator's credential: %v", err)
	}
	credDigest := sha256Hex([]byte(f.ReplayCredential))
	in := "agentgw-replay-v2\n" + digest + "\n" + strconv.FormatUint(f.ReplayDeniedSeq, 10) + "\n" + f.ReplayOperator + "\n" +
		strconv.FormatInt(f.ReplayExpiresUnix, 10) + "\n" + credDigest
	if in != f.ReplaySigningInput || in != string(operator.ReplayInput(digest, f.ReplayDeniedSeq, f.ReplayOperator, f.ReplayExpiresUnix, credDigest)) {
		t.Error("replay_signing_input is wrong")
	}
	parts := strings.Split(f.ReplayHeader, ".")
	if len(parts) != 4 || parts[0] != strconv.FormatUint(f.ReplayDeniedSeq, 10) || parts[1] != f.ReplayOperator ||
		parts[2] != strconv.FormatInt(f.ReplayExpiresUnix, 10) {
		t.Fatal("replay header is not seq.operator.expires.signature")
	}
	_, gw := wvDecodeNkey(t, f.Gateway, false)
	rs, _ := b64url.DecodeString(parts[3])
	if !ed25519.Verify(gw, []byte(in), rs) {
		t.Error("replay authorization does not verify with the gateway key")
	}
}
