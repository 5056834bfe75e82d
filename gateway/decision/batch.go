package decision

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"sync"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/identity"
)

// A decision token is four unpadded base64url segments:
//
//	header . claims . proof . signature
//
// header is exactly {"typ":"agentgw-decision","alg":"ed25519-nkey-merkle"}.
// The gateway decides a batch of messages at once and signs the batch
// once: each token's leaf is SHA-256(0x00 ‖ header "." claims) (the two
// segments as sent), the leaves of a batch form an RFC 9162 Merkle tree
// (interior nodes SHA-256(0x01 ‖ left ‖ right)), and the signature is
// Ed25519 by the gateway's 'N' key over "agentgw-decision-root-v1\n" ‖
// uint64be(tree size) ‖ root (the size is signed so a proof cannot be
// re-labelled with another size the same path also fits). proof is uvarint(leaf index) ‖ uvarint(tree size) ‖ the audit
// path (32 bytes per level). A batch of one has an empty path and its
// leaf is its root.
//
// Each token still verifies on its own — it carries everything needed to
// recompute the root the gateway signed — and a consumer that sees many
// tokens of one batch verifies the signature once (Verify caches roots it
// has verified).

const (
	tokenHeader = `{"typ":"agentgw-decision","alg":"ed25519-nkey-merkle"}`
	rootContext = "agentgw-decision-root-v1\n"
	// MaxBatch bounds the leaves of one signed batch.
	MaxBatch = 1 << 16
	// MaxTokenSize bounds a token's length.
	MaxTokenSize = 16 << 10
)

var (
	b64          = base64.RawURLEncoding
	tokenHeadB64 = b64.EncodeToString([]byte(tokenHeader))
)

// Pending is a token whose claims are final but whose batch is not yet
// signed (Prepare, then SignBatch or SignPending).
type Pending struct {
	signingInput []byte // header "." claims
	leaf         [32]byte
}

// claimsBufs holds the buffers claims are encoded into: a token's claims
// are only read to base64-encode them into its signing input.
var claimsBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Prepare checks c as Sign does and returns it ready for SignBatch.
func Prepare(s *identity.Signer, c Claims) (*Pending, error) {
	buf := claimsBufs.Get().(*[]byte)
	defer claimsBufs.Put(buf)
	payload, err := appendClaims((*buf)[:0], s, c)
	if err != nil {
		return nil, err
	}
	if cap(payload) <= 4<<10 {
		*buf = payload // a rare larger one is not kept
	}
	// The leaf hashes 0x00 ‖ signing input: one buffer holds both.
	in := make([]byte, 0, 1+len(tokenHeadB64)+1+b64.EncodedLen(len(payload)))
	in = append(in, 0)
	in = append(in, tokenHeadB64...)
	in = append(in, '.')
	in = b64.AppendEncode(in, payload)
	return &Pending{signingInput: in[1:], leaf: sha256.Sum256(in)}, nil
}

// SignBatch signs the batch ps with one signature and returns their
// tokens, in order.
func SignBatch(s *identity.Signer, ps []*Pending) ([]identity.Token, error) {
	signed, err := SignPending(s, ps)
	if err != nil {
		return nil, err
	}
	out := make([]identity.Token, len(ps))
	for i := range ps {
		out[i] = signed.Token(i)
	}
	return out, nil
}

// Signed is a signed batch whose tokens are written where they are
// needed (AppendToken), without a string of their own.
type Signed struct {
	ps    []*Pending
	paths [][][32]byte
	sig   string
}

// SignPending signs the batch ps with one signature.
func SignPending(s *identity.Signer, ps []*Pending) (*Signed, error) {
	if s == nil || s.Prefix() != nkeys.PrefixByteServer {
		return nil, fmt.Errorf("%w: decision tokens are signed by a gateway ('N') key", identity.ErrKey)
	}
	if len(ps) == 0 || len(ps) > MaxBatch {
		return nil, fmt.Errorf("decision: batch of %d tokens (1-%d)", len(ps), MaxBatch)
	}
	leaves := make([][32]byte, len(ps))
	for i, p := range ps {
		leaves[i] = p.leaf
	}
	// Every path holds at most one hash per level: one backing array.
	depth := bits.Len(uint(len(ps) - 1))
	backing := make([][32]byte, len(ps)*depth)
	paths := make([][][32]byte, len(ps))
	for i := range paths {
		paths[i] = backing[i*depth : i*depth : (i+1)*depth]
	}
	root := buildTree(leaves, 0, paths)
	sig := b64.EncodeToString(s.Sign(rootInput(uint64(len(ps)), root)))
	return &Signed{ps: ps, paths: paths, sig: sig}, nil
}

// Len is the number of tokens in the batch.
func (s *Signed) Len() int { return len(s.ps) }

// maxProof is the longest proof: two uvarints of at most MaxBatch and a
// path of one hash per level.
const maxProof = 2*binary.MaxVarintLen32 + 32*17

// proof returns token i's proof in buf.
func (s *Signed) proof(buf *[maxProof]byte, i int) []byte {
	p := binary.AppendUvarint(buf[:0], uint64(i))
	p = binary.AppendUvarint(p, uint64(len(s.ps)))
	for _, h := range s.paths[i] {
		p = append(p, h[:]...)
	}
	return p
}

// TokenLen is the length of token i.
func (s *Signed) TokenLen(i int) int {
	var buf [maxProof]byte
	return len(s.ps[i].signingInput) + 1 + b64.EncodedLen(len(s.proof(&buf, i))) + 1 + len(s.sig)
}

// AppendToken appends token i to b.
func (s *Signed) AppendToken(b []byte, i int) []byte {
	var buf [maxProof]byte
	b = append(b, s.ps[i].signingInput...)
	b = append(b, '.')
	b = b64.AppendEncode(b, s.proof(&buf, i))
	b = append(b, '.')
	return append(b, s.sig...)
}

// Token returns token i.
func (s *Signed) Token(i int) identity.Token {
	return identity.Token(s.AppendToken(make([]byte, 0, s.TokenLen(i)), i))
}

// rootInput is what the batch signature covers.
func rootInput(size uint64, root [32]byte) []byte {
	b := append([]byte(rootContext), make([]byte, 8)...)
	binary.BigEndian.PutUint64(b[len(rootContext):], size)
	return append(b, root[:]...)
}

func leafHash(signingInput []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(signingInput)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func nodeHash(l, r [32]byte) [32]byte {
	var buf [65]byte
	buf[0] = 1
	copy(buf[1:], l[:])
	copy(buf[33:], r[:])
	return sha256.Sum256(buf[:])
}

// buildTree returns the RFC 9162 Merkle tree hash of leaves (whose first
// index is off) and appends to paths[i] the audit path of each leaf,
// lowest level first.
func buildTree(leaves [][32]byte, off int, paths [][][32]byte) [32]byte {
	n := len(leaves)
	if n == 1 {
		return leaves[0]
	}
	k := 1
	for k<<1 < n {
		k <<= 1
	}
	left := buildTree(leaves[:k], off, paths)
	right := buildTree(leaves[k:], off+k, paths)
	for i := range k {
		paths[off+i] = append(paths[off+i], right)
	}
	for i := k; i < n; i++ {
		paths[off+i] = append(paths[off+i], left)
	}
	return nodeHash(left, right)
}

// minimal reports whether the n-byte uvarint at the start of b is in its
// shortest form (no final zero group after a continuation): a proof, and
// so a token, has one encoding.
func minimal(b []byte, n int) bool { return n == 1 || b[n-1] != 0 }

// rootOf recomputes the root from a leaf and its proof (RFC 9162
// §2.1.3.2) and returns it with the tree size, or reports the proof
// malformed.
func rootOf(leaf [32]byte, proof []byte) ([32]byte, uint64, error) {
	index, n := binary.Uvarint(proof)
	if n <= 0 || !minimal(proof, n) {
		return leaf, 0, errors.New("proof: bad leaf index")
	}
	proof = proof[n:]
	size, n := binary.Uvarint(proof)
	if n <= 0 || !minimal(proof, n) || size == 0 || size > MaxBatch || index >= size {
		return leaf, 0, errors.New("proof: bad tree size")
	}
	proof = proof[n:]
	if len(proof)%32 != 0 || len(proof)/32 > 17 {
		return leaf, 0, errors.New("proof: bad audit path")
	}
	fn, sn, r := index, size-1, leaf
	for len(proof) > 0 {
		var p [32]byte
		copy(p[:], proof[:32])
		proof = proof[32:]
		if sn == 0 {
			return leaf, 0, errors.New("proof: audit path too long")
		}
		if fn&1 == 1 || fn == sn {
			r = nodeHash(p, r)
			if fn&1 == 0 {
				for fn&1 == 0 && fn != 0 {
					fn >>= 1
					sn >>= 1
				}
			}
		} else {
			r = nodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return leaf, 0, errors.New("proof: audit path too short")
	}
	return r, size, nil
}

// parsed is a token split into its checked parts.
type parsed struct {
	payload []byte
	root    [32]byte
	size    uint64
	sig     []byte
}

// parseToken checks the token's form and recomputes its root. The
// signature is not checked.
func parseToken(token string) (*parsed, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("token of %d bytes exceeds %d", len(token), MaxTokenSize)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 4 {
		return nil, errors.New("not a four-part decision token")
	}
	if parts[0] != tokenHeadB64 {
		return nil, errors.New("header is not the decision token header")
	}
	payload, err := decodeCanonical(parts[1])
	if err != nil {
		return nil, errors.New("claims are not canonical base64url")
	}
	proof, err := decodeCanonical(parts[2])
	if err != nil {
		return nil, errors.New("proof is not canonical base64url")
	}
	sig, err := decodeCanonical(parts[3])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, errors.New("signature is not 64 canonical base64url bytes")
	}
	root, size, err := rootOf(leafHash([]byte(token[:len(parts[0])+1+len(parts[1])])), proof)
	if err != nil {
		return nil, err
	}
	return &parsed{payload: payload, root: root, size: size, sig: sig}, nil
}

// decodeCanonical decodes unpadded base64url, refusing any encoding that
// would not re-encode to the same string (stray bits).
func decodeCanonical(s string) ([]byte, error) {
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if b64.EncodeToString(b) != s {
		return nil, errors.New("not canonical")
	}
	return b, nil
}

// verifiedRoots remembers (issuer, root, signature) triples whose
// signature verified, so the other tokens of a batch cost no Ed25519
// verification. Bounded: it is emptied when full.
var verifiedRoots = struct {
	sync.Mutex
	m map[[32]byte]struct{}
}{m: map[[32]byte]struct{}{}}

const verifiedRootsMax = 4096

func rootKey(issuer string, signed, sig []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(issuer))
	h.Write([]byte{0})
	h.Write(signed)
	h.Write(sig)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// verifyRoot checks the batch signature over (size, root) with the
// gateway key issuer.
func verifyRoot(issuer string, size uint64, root [32]byte, sig []byte) bool {
	signed := rootInput(size, root)
	k := rootKey(issuer, signed, sig)
	verifiedRoots.Lock()
	_, ok := verifiedRoots.m[k]
	verifiedRoots.Unlock()
	if ok {
		return true
	}
	if nkeys.Prefix(issuer) != nkeys.PrefixByteServer {
		return false
	}
	kp, err := nkeys.FromPublicKey(issuer)
	if err != nil {
		return false
	}
	if kp.Verify(signed, sig) != nil {
		return false
	}
	verifiedRoots.Lock()
	if len(verifiedRoots.m) >= verifiedRootsMax {
		clear(verifiedRoots.m)
	}
	verifiedRoots.m[k] = struct{}{}
	verifiedRoots.Unlock()
	return true
}
