package client

import (
	"encoding/json"
	"testing"
)

// The shapes of the files in ../testdata/wire (docs/wire.md), shared by
// the generator (wire_vectors_test.go) and the checks (wire_check_test.go).

type wvHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// wvMessage is a NATS message: subject, headers (in the order listed) and
// data, given as text when it is UTF-8 JSON and as hex and base64url
// when it is binary.
type wvMessage struct {
	Subject    string     `json:"subject"`
	Headers    []wvHeader `json:"headers"`
	Body       string     `json:"body,omitempty"`
	DataHex    string     `json:"data_hex,omitempty"`
	DataB64URL string     `json:"data_b64url,omitempty"`
}

func (m wvMessage) header(name string) string {
	for _, h := range m.Headers {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

type wvKey struct {
	Label        string `json:"label"`
	Role         string `json:"role"`
	Algorithm    string `json:"algorithm"`
	Derivation   string `json:"derivation"`
	SeedRawHex   string `json:"seed_raw_hex"`
	Seed         string `json:"seed"`
	PublicRawHex string `json:"public_raw_hex"`
	Public       string `json:"public"`
}

type wvKeysFile struct {
	About string  `json:"about"`
	Keys  []wvKey `json:"keys"`
}

type wvIssue struct {
	Subject  string   `json:"subject"`
	Audience string   `json:"audience"`
	Tenant   string   `json:"tenant"`
	Service  string   `json:"service"`
	Name     string   `json:"name"`
	Scopes   []string `json:"scopes"`
	XKey     string   `json:"xkey"`
}

type wvCredential struct {
	Label              string          `json:"label"`
	Issuer             string          `json:"issuer"`
	IssuedAtUnix       int64           `json:"issued_at_unix"`
	TTLSeconds         int64           `json:"ttl_seconds"`
	Request            wvIssue         `json:"request"`
	HeaderJSON         string          `json:"header_json"`
	HeaderB64URL       string          `json:"header_b64url"`
	UnsignedClaimsJSON string          `json:"unsigned_claims_json"`
	JTI                string          `json:"jti"`
	Claims             json.RawMessage `json:"claims"`
	ClaimsJSON         string          `json:"claims_json"`
	ClaimsB64URL       string          `json:"claims_b64url"`
	SigningInput       string          `json:"signing_input"`
	SignatureB64URL    string          `json:"signature_b64url"`
	JWT                string          `json:"jwt"`
	Creds              string          `json:"creds"`
}

type wvCredentialReject struct {
	Name     string `json:"name"`
	JWT      string `json:"jwt"`
	Audience string `json:"audience"`
	NowUnix  int64  `json:"now_unix"`
	Want     string `json:"want"`
}

type wvCredentialsFile struct {
	About              string               `json:"about"`
	Trust              map[string][]string  `json:"trust"`
	Audience           string               `json:"audience"`
	VerifyAtUnix       int64                `json:"verify_at_unix"`
	SkewSeconds        int64                `json:"skew_seconds"`
	MaxLifetimeSeconds int64                `json:"max_lifetime_seconds"`
	Credentials        []wvCredential       `json:"credentials"`
	Rejects            []wvCredentialReject `json:"rejects"`
	CredsCases         []wvCredsCase        `json:"creds_cases"`
	SeedFileCases      []wvSeedFileCase     `json:"seed_file_cases"`
}

type wvEnvelope struct {
	Name             string    `json:"name"`
	Signer           string    `json:"signer"`
	Credential       string    `json:"credential"`
	IngressSeq       uint64    `json:"ingress_seq"`
	Message          wvMessage `json:"message"`
	SigningInput     string    `json:"signing_input"`
	SignatureHex     string    `json:"signature_hex"`
	SignatureB64URL  string    `json:"signature_b64url"`
	BodySHA256Hex    string    `json:"body_sha256_hex"`
	PayloadMember    string    `json:"payload_member"`
	PayloadSHA256Hex string    `json:"payload_sha256_hex"`
	Seal             string    `json:"seal,omitempty"`
	Plaintext        string    `json:"plaintext,omitempty"`
}

type wvEnvelopesFile struct {
	About          string        `json:"about"`
	VerifyAtUnix   int64         `json:"verify_at_unix"`
	Envelopes      []wvEnvelope  `json:"envelopes"`
	FreshnessCases []wvFreshCase `json:"freshness_cases"`
	BuildCases     []wvBuildCase `json:"build_cases"`
}

type wvSeal struct {
	Name         string `json:"name"`
	From         string `json:"from"`
	FromLabel    string `json:"from_label"`
	To           string `json:"to"`
	ToLabel      string `json:"to_label"`
	NonceHex     string `json:"nonce_hex"`
	Plaintext    string `json:"plaintext"`
	X25519Hex    string `json:"x25519_hex"`
	BoxKeyHex    string `json:"box_key_hex"`
	SealedHex    string `json:"sealed_hex"`
	SealedB64URL string `json:"sealed_b64url"`
}

type wvSealReject struct {
	Name      string `json:"name"`
	From      string `json:"from"`
	OpenWith  string `json:"open_with"`
	SealedHex string `json:"sealed_hex"`
	Want      string `json:"want"`
}

type wvSealsFile struct {
	About   string         `json:"about"`
	Seals   []wvSeal       `json:"seals"`
	Rejects []wvSealReject `json:"rejects"`
}

type wvToken struct {
	Name         string          `json:"name"`
	Audience     string          `json:"audience"`
	Index        int             `json:"index"`
	Claims       json.RawMessage `json:"claims"`
	ClaimsJSON   string          `json:"claims_json"`
	ClaimsB64URL string          `json:"claims_b64url"`
	SigningInput string          `json:"signing_input"`
	LeafHex      string          `json:"leaf_hex"`
	ProofHex     string          `json:"proof_hex"`
	ProofB64URL  string          `json:"proof_b64url"`
	PathHex      []string        `json:"path_hex"`
	Token        string          `json:"token"`
}

type wvBatch struct {
	Name                string    `json:"name"`
	Size                int       `json:"size"`
	Tokens              []wvToken `json:"tokens"`
	NodesHex            []string  `json:"nodes_hex"`
	RootHex             string    `json:"root_hex"`
	RootSigningInputHex string    `json:"root_signing_input_hex"`
	SignatureHex        string    `json:"signature_hex"`
	SignatureB64URL     string    `json:"signature_b64url"`
}

type wvDecisionReject struct {
	Name        string   `json:"name"`
	Token       string   `json:"token"`
	Trusted     []string `json:"trusted"`
	Audience    string   `json:"audience"`
	NowUnix     int64    `json:"now_unix"`
	SkewSeconds int64    `json:"skew_seconds"`
	Want        string   `json:"want"`
}

// wvMutation is one edit of a vector's bytes (a token of decision.json,
// a delivery's body in delivery.json; Of names which), checked as that
// vector is: At is a byte offset; set replaces the byte at At by Text,
// insert puts Text before it, delete removes it, swap exchanges it with
// the next one, truncate keeps the first At bytes. Want is the reason
// code, or "accepted".
type wvMutation struct {
	Of   string `json:"of"`
	Op   string `json:"op"`
	At   int    `json:"at"`
	Text string `json:"text,omitempty"`
	Want string `json:"want"`
}

// apply is m applied to s; an op not of the five, or an offset out of
// s, fails t.
func (m wvMutation) apply(t testing.TB, s string) string {
	t.Helper()
	last := len(s) - 1 // set, delete: the byte at At; swap: and the next
	switch m.Op {
	case "swap":
		last--
	case "insert", "truncate":
		last++
	}
	if m.At < 0 || m.At > last {
		t.Fatalf("mutation of %s: %s at %d, out of its %d bytes", m.Of, m.Op, m.At, len(s))
	}
	switch m.Op {
	case "set":
		return s[:m.At] + m.Text + s[m.At+1:]
	case "insert":
		return s[:m.At] + m.Text + s[m.At:]
	case "delete":
		return s[:m.At] + s[m.At+1:]
	case "swap":
		return s[:m.At] + s[m.At+1:m.At+2] + s[m.At:m.At+1] + s[m.At+2:]
	case "truncate":
		return s[:m.At]
	}
	t.Fatalf("mutation of %s: unknown op %q", m.Of, m.Op)
	return ""
}

type wvDecisionFile struct {
	About         string             `json:"about"`
	HeaderJSON    string             `json:"header_json"`
	HeaderB64URL  string             `json:"header_b64url"`
	LeafPrefixHex string             `json:"leaf_prefix_hex"`
	NodePrefixHex string             `json:"node_prefix_hex"`
	RootContext   string             `json:"root_context"`
	Gateway       string             `json:"gateway"`
	VerifyAtUnix  int64              `json:"verify_at_unix"`
	SkewSeconds   int64              `json:"skew_seconds"`
	Batches       []wvBatch          `json:"batches"`
	Rejects       []wvDecisionReject `json:"rejects"`
	Mutations     []wvMutation       `json:"mutations"`
}

type wvDeliveryVerify struct {
	Tenant               string   `json:"tenant"`
	Targets              []string `json:"targets"`
	TrustedGateways      []string `json:"trusted_gateways"`
	GatewayXKeys         []string `json:"gateway_xkeys"`
	ConsumerXKey         string   `json:"consumer_xkey"`
	NowUnix              int64    `json:"now_unix"`
	SkewSeconds          int64    `json:"skew_seconds"`
	VerifyAgentSignature bool     `json:"verify_agent_signature"`
}

type wvDelivery struct {
	Name        string           `json:"name"`
	Envelope    string           `json:"envelope"`
	Token       string           `json:"token"`
	Seal        string           `json:"seal,omitempty"`
	Message     wvMessage        `json:"message"`
	Verify      wvDeliveryVerify `json:"verify"`
	WantSealed  bool             `json:"want_sealed"`
	WantPayload string           `json:"want_payload"`
}

type wvDeliveryReject struct {
	Name    string    `json:"name"`
	Of      string    `json:"of"`
	Message wvMessage `json:"message"`
	Want    string    `json:"want"`
}

type wvDeliveriesFile struct {
	About      string             `json:"about"`
	Deliveries []wvDelivery       `json:"deliveries"`
	Rejects    []wvDeliveryReject `json:"rejects"`
	Mutations  []wvMutation       `json:"mutations"`
}

type wvAnswer struct {
	Name    string `json:"name"`
	Payload string `json:"payload"`
}

type wvApprovalFile struct {
	About           string          `json:"about"`
	HeldEnvelope    string          `json:"held_envelope"`
	Request         wvMessage       `json:"request"`
	BodyDigest      string          `json:"body_digest"`
	PayloadDigest   string          `json:"payload_digest"`
	PolicyVersion   string          `json:"policy_version"`
	Answers         []wvAnswer      `json:"answers"`
	ApproveEnvelope string          `json:"approve_envelope"`
	IdempotencyKey  string          `json:"idempotency_key"`
	Release         string          `json:"release"`
	RequestCases    []wvRequestCase `json:"request_cases"`
	TimeCases       []wvTimeCase    `json:"time_cases"`
}

type wvResponseFile struct {
	About           string    `json:"about"`
	RequestEnvelope string    `json:"request_envelope"`
	RespondEnvelope string    `json:"respond_envelope"`
	ResponsePlain   string    `json:"response_plaintext"`
	Sensitive       []string  `json:"sensitive"`
	ReplyPlain      string    `json:"reply_plaintext"`
	ReplySeal       string    `json:"reply_seal"`
	ReplyToken      string    `json:"reply_token"`
	Reply           wvMessage `json:"reply"`
	Agent           string    `json:"agent"`
	AgentXKey       string    `json:"agent_xkey"`
	GatewayXKey     string    `json:"gateway_xkey"`
	TrustedGateways []string  `json:"trusted_gateways"`
	VerifyAtUnix    int64     `json:"verify_at_unix"`
}

type wvOperatorFile struct {
	About              string    `json:"about"`
	Request            wvMessage `json:"request"`
	SigningInput       string    `json:"signing_input"`
	SignatureB64URL    string    `json:"signature_b64url"`
	VerifyAtUnix       int64     `json:"verify_at_unix"`
	ReplayDeniedSeq    uint64    `json:"replay_denied_seq"`
	ReplayBody         string    `json:"replay_body"`
	ReplayOperator     string    `json:"replay_operator"`
	ReplayExpiresUnix  int64     `json:"replay_expires_unix"`
	ReplayCredential   string    `json:"replay_credential"`
	ReplaySigningInput string    `json:"replay_signing_input"`
	ReplayHeader       string    `json:"replay_header"`
	Gateway            string    `json:"gateway"`
}

// ---- the scenario --------------------------------------------------------
