package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/delivery"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/gateway/operator"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

type wvEnvSpec struct {
	name, signer, xkey   string
	seq                  uint64
	id, key, trace, span string
	capability           envelope.Capability
	target               string
	plain                string // plain payload, or
	sealed               string // sealed plaintext (to the gateway)
}

func (w *wvWorld) envelope(s wvEnvSpec) *wvEnvelope {
	p := envelope.Payload{Plain: json.RawMessage(s.plain)}
	var seal *wvSeal
	if s.sealed != "" {
		seal = w.seal(s.name+"-request", s.xkey, "gateway-xkey", s.sealed)
		ct, _ := hex.DecodeString(seal.SealedHex)
		p = envelope.Payload{Sealed: b64url.EncodeToString(ct), From: w.pubs[s.xkey], To: w.pubs["gateway-xkey"]}
	}
	body, err := envelope.Builder{MessageID: s.id, IdempotencyKey: s.key, TraceID: s.trace, Tenant: wvTenant,
		Audience: wvAudience, Capability: s.capability, Target: s.target, Payload: p}.Build(wvNow)
	if err != nil {
		w.t.Fatal(err)
	}
	sig := w.signer(s.signer).Sign(envelope.SigningInput(body))
	subj, err := subjects.Ingress(wvTenant, w.pubs[s.signer])
	if err != nil {
		w.t.Fatal(err)
	}
	parsed, err := envelope.Parse(body, envelope.Limits{})
	if err != nil {
		w.t.Fatal(err)
	}
	member := string(parsedPayload(body))
	pd := parsed.PayloadDigest()
	e := &wvEnvelope{
		Name: s.name, Signer: s.signer, Credential: s.signer, IngressSeq: s.seq,
		Message: wvMessage{Subject: subj, Body: string(body), Headers: []wvHeader{
			{header.Credential, w.creds[s.signer].Reveal()},
			{header.Signature, b64url.EncodeToString(sig)},
			{header.MsgID, s.id},
			{header.Traceparent, "00-" + s.trace + "-" + s.span + "-00"},
		}},
		SigningInput: string(envelope.SigningInput(body)), SignatureHex: hex.EncodeToString(sig), SignatureB64URL: b64url.EncodeToString(sig),
		BodySHA256Hex: sha256Hex(body), PayloadMember: member, PayloadSHA256Hex: hex.EncodeToString(pd[:]),
	}
	if seal != nil {
		e.Seal, e.Plaintext = seal.Name, s.sealed
	}
	w.envs[s.name] = e
	return e
}

// parsedPayload returns the bytes of body's payload member value: the
// builder writes it last, so it runs from `"payload":` to the final '}'.
func parsedPayload(body []byte) []byte {
	i := bytes.LastIndex(body, []byte(`"payload":`))
	return body[i+len(`"payload":`) : len(body)-1]
}

// ---- decision.json -------------------------------------------------------

type wvClaimSpec struct {
	name  string
	claim decision.Claims
}

func (w *wvWorld) claims(name string, env *wvEnvelope, aud, scope string, payload []byte, route, approver string) wvClaimSpec {
	return w.claimsFor(name, w.pubs["agent"], env, aud, scope, payload, route, approver)
}

func (w *wvWorld) claimsFor(name, sub string, env *wvEnvelope, aud, scope string, payload []byte, route, approver string) wvClaimSpec {
	b, err := envelope.Parse([]byte(env.Message.Body), envelope.Limits{})
	if err != nil {
		w.t.Fatal(err)
	}
	return wvClaimSpec{name, decision.Claims{
		ID: wvJTI(name), Subject: sub, Audience: aud, IssuedAt: wvNow, Expires: wvNow.Add(wvDecisionTTL),
		Tenant: wvTenant, Scope: scope, TraceID: b.TraceID, MessageID: b.MessageID,
		BodyDigest: env.BodySHA256Hex, PayloadDigest: sha256Hex(payload),
		PolicyIDs: []string{wvPolicyID}, PolicyVersion: w.policyV, Route: route,
		Act: decision.Actor{Approver: approver},
	}}
}

func (w *wvWorld) batch(name, signerLabel string, specs []wvClaimSpec) wvBatch {
	s := w.signer(signerLabel)
	ps := make([]*decision.Pending, len(specs))
	for i, c := range specs {
		p, err := decision.Prepare(s, c.claim)
		if err != nil {
			w.t.Fatal(err)
		}
		ps[i] = p
	}
	toks, err := decision.SignBatch(s, ps)
	if err != nil {
		w.t.Fatal(err)
	}
	b := wvBatch{Name: name, Size: len(specs)}
	var leaves [][32]byte
	for i, tok := range toks {
		parts := strings.Split(tok.Reveal(), ".")
		claims, _ := b64url.DecodeString(parts[1])
		proof, _ := b64url.DecodeString(parts[2])
		in := parts[0] + "." + parts[1]
		leaf := wvLeaf(in)
		leaves = append(leaves, leaf)
		_, n1 := binary.Uvarint(proof)
		_, n2 := binary.Uvarint(proof[n1:])
		path := []string{}
		for rest := proof[n1+n2:]; len(rest) > 0; rest = rest[32:] {
			path = append(path, hex.EncodeToString(rest[:32]))
		}
		b.Tokens = append(b.Tokens, wvToken{Name: specs[i].name, Audience: specs[i].claim.Audience, Index: i,
			Claims: json.RawMessage(claims), ClaimsJSON: string(claims), ClaimsB64URL: parts[1], SigningInput: in,
			LeafHex: hex.EncodeToString(leaf[:]), ProofHex: hex.EncodeToString(proof), ProofB64URL: parts[2],
			PathHex: path, Token: tok.Reveal()})
		w.tokens[specs[i].name] = tok.Reveal()
		if i == 0 {
			b.SignatureB64URL = parts[3]
			sig, _ := b64url.DecodeString(parts[3])
			b.SignatureHex = hex.EncodeToString(sig)
		}
	}
	nodes := []string{}
	root := wvTreeHash(leaves, &nodes)
	b.NodesHex = nodes
	b.RootHex = hex.EncodeToString(root[:])
	b.RootSigningInputHex = hex.EncodeToString(wvRootInput(uint64(len(leaves)), root))
	return b
}

func wvLeaf(signingInput string) [32]byte {
	return sha256.Sum256(append([]byte{0}, signingInput...))
}

func wvNode(l, r [32]byte) [32]byte {
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

// wvTreeHash is RFC 9162's MTH over leaf hashes, written from the RFC
// rather than from package decision; nodes collects every interior node
// in the order computed (left subtree first).
func wvTreeHash(leaves [][32]byte, nodes *[]string) [32]byte {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1
	for 2*k < len(leaves) {
		k *= 2
	}
	n := wvNode(wvTreeHash(leaves[:k], nodes), wvTreeHash(leaves[k:], nodes))
	*nodes = append(*nodes, hex.EncodeToString(n[:]))
	return n
}

func wvRootInput(size uint64, root [32]byte) []byte {
	b := append([]byte("agentgw-decision-root-v1\n"), make([]byte, 8)...)
	binary.BigEndian.PutUint64(b[len(b)-8:], size)
	return append(b, root[:]...)
}

func (w *wvWorld) decisionFile(batches []wvBatch) wvDecisionFile {
	f := wvDecisionFile{
		About: "gateway decision tokens: header.claims.proof.signature, batch-signed under a Merkle root (docs/wire.md, \"Decision tokens\"). " +
			"Each token verifies with trust [gateway], its audience, at verify_at_unix with skew_seconds; each reject fails with the reason code in want, and so does each mutation (docs/wire.md, \"Test vectors\").",
		HeaderJSON:    `{"typ":"agentgw-decision","alg":"ed25519-nkey-merkle"}`,
		LeafPrefixHex: "00", NodePrefixHex: "01", RootContext: "agentgw-decision-root-v1\n",
		Gateway: w.pubs["gateway-signing"], VerifyAtUnix: wvNow.Unix(), SkewSeconds: int64(wvSkew / time.Second),
		Batches: batches,
	}
	f.HeaderB64URL = b64url.EncodeToString([]byte(f.HeaderJSON))
	first := batches[0].Tokens[0]
	trusted := []string{w.pubs["gateway-signing"]}
	skew := int64(wvSkew / time.Second)
	exp := wvNow.Add(wvDecisionTTL).Unix()
	// The same claims signed by a key no consumer trusts.
	untrusted := w.batch("untrusted", "untrusted-gateway", []wvClaimSpec{{first.Name + "-untrusted", w.claimSpec(first)}}).Tokens[0].Token
	// The first token's proof re-labelled with tree size 4: the path still
	// leads to the same root, but the signature covers size 3.
	parts := strings.Split(first.Token, ".")
	proof, _ := b64url.DecodeString(parts[2])
	proof[1] = 4
	relabelled := parts[0] + "." + parts[1] + "." + b64url.EncodeToString(proof) + "." + parts[3]
	// The first token's proof with its leaf index written in two bytes
	// (0x80 0x00 for 0): the same root and signature, but a token has one
	// encoding, and a uvarint its shortest.
	unpadded, _ := b64url.DecodeString(parts[2])
	padded := append([]byte{unpadded[0] | 0x80, 0x00}, unpadded[1:]...)
	notMinimal := parts[0] + "." + parts[1] + "." + b64url.EncodeToString(padded) + "." + parts[3]
	edited := strings.Replace(first.ClaimsJSON, `"scope":"refund:draft"`, `"scope":"refund:issue"`, 1)
	tampered := parts[0] + "." + b64url.EncodeToString([]byte(edited)) + "." + parts[2] + "." + parts[3]
	// The first token's claims with a line break inside sub (and act.sub),
	// signed by the trusted key as a batch of one: a lenient base32
	// decoder still reads the key, the wire's 56-character form does not.
	sub := w.claimSpec(first).Subject
	broken := strings.ReplaceAll(first.ClaimsJSON, `"sub":"`+sub+`"`, `"sub":"`+sub[:20]+`\n`+sub[20:]+`"`)
	in := parts[0] + "." + b64url.EncodeToString([]byte(broken))
	sig := w.signer("gateway-signing").Sign(wvRootInput(1, wvLeaf(in)))
	lineBreak := in + "." + b64url.EncodeToString([]byte{0, 1}) + "." + b64url.EncodeToString(sig)
	f.Rejects = []wvDecisionReject{
		{"untrusted_gateway", untrusted, trusted, first.Audience, wvNow.Unix(), skew, "decision_token_invalid"},
		{"tree_size_relabelled", relabelled, trusted, first.Audience, wvNow.Unix(), skew, "decision_token_invalid"},
		{"proof_index_not_minimal", notMinimal, trusted, first.Audience, wvNow.Unix(), skew, "decision_token_invalid"},
		{"claims_edited", tampered, trusted, first.Audience, wvNow.Unix(), skew, "decision_token_invalid"},
		{"sub_with_line_break", lineBreak, trusted, first.Audience, wvNow.Unix(), skew, "decision_token_invalid"},
		{"issued_in_future", first.Token, trusted, first.Audience, wvNow.Unix() - skew - 1, skew, "decision_token_invalid"},
		{"expired", first.Token, trusted, first.Audience, exp + skew + 1, skew, "decision_token_expired"},
		{"other_audience", first.Token, trusted, "payments.send", wvNow.Unix(), skew, "decision_token_audience"},
		{"empty", "", trusted, first.Audience, wvNow.Unix(), skew, "decision_token_missing"},
	}
	f.Mutations = w.decisionMutations(batches)
	return f
}

// wvMutationLabel derives the edits of decisionMutations.
const wvMutationLabel = "agentgw wire-v1 test mutation: "

// wvMutationText is what set and insert write: the token alphabets'
// neighbours, padding, whitespace, a NUL and a character beyond ASCII.
var wvMutationText = []string{"A", "z", "0", "_", "-", ".", "=", "+", "/", " ", "\n", "\x00", "é"}

// wvDrawMutations is n edits of data, derived from wvHash of name and
// their index, with no way to tell them from random ones.
func wvDrawMutations(name, data string, n int) []wvMutation {
	ms := make([]wvMutation, 0, n)
	for i := range n {
		h := wvHash(wvMutationLabel, fmt.Sprintf("%s/%d", name, i))
		at := int(binary.BigEndian.Uint32(h[1:5]) % uint32(len(data)-1))
		text := wvMutationText[int(h[5])%len(wvMutationText)]
		switch h[0] % 10 {
		case 0, 1, 2, 3:
			ms = append(ms, wvMutation{Op: "set", At: at, Text: text})
		case 4, 5:
			ms = append(ms, wvMutation{Op: "insert", At: at, Text: text})
		case 6, 7:
			ms = append(ms, wvMutation{Op: "delete", At: at})
		case 8:
			ms = append(ms, wvMutation{Op: "swap", At: at})
		default:
			ms = append(ms, wvMutation{Op: "truncate", At: at})
		}
	}
	return ms
}

// decisionMutations edits every token of batches: each separator deleted
// and doubled, the last character of each segment moved to the next one
// of the alphabet (a string that may decode to the same bytes when the
// segment's last bits are unused, which a canonical reader refuses), and
// 30 edits of wvDrawMutations. Each is verified here; one that verifies
// stops the build.
func (w *wvWorld) decisionMutations(batches []wvBatch) []wvMutation {
	opt := func(aud string) decision.VerifyOptions {
		return decision.VerifyOptions{TrustedGateways: []string{w.pubs["gateway-signing"]}, Audience: aud, Now: wvNow, Skew: wvSkew}
	}
	next := func(c byte) string {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		return string(alphabet[(strings.IndexByte(alphabet, c)+1)%len(alphabet)])
	}
	var out []wvMutation
	for _, b := range batches {
		for _, tok := range b.Tokens {
			var ms []wvMutation
			for i := 0; i < len(tok.Token); i++ {
				switch {
				case tok.Token[i] == '.':
					ms = append(ms, wvMutation{Op: "delete", At: i}, wvMutation{Op: "insert", At: i, Text: "."})
				case i+1 == len(tok.Token) || tok.Token[i+1] == '.':
					ms = append(ms, wvMutation{Op: "set", At: i, Text: next(tok.Token[i])})
				}
			}
			ms = append(ms, wvDrawMutations(tok.Name, tok.Token, 30)...)
			for _, m := range ms {
				m.Of = tok.Name
				edited := m.apply(w.t, tok.Token)
				if edited == tok.Token {
					continue // a swap of equal bytes, a set to the same one
				}
				_, err := decision.Verify(edited, opt(tok.Audience))
				if err == nil {
					w.t.Fatalf("%s edited (%s at %d) still verifies: %q", tok.Name, m.Op, m.At, edited)
				}
				m.Want = string(reason.Of(err))
				out = append(out, m)
			}
		}
	}
	return out
}

// deliveryMutations is 60 edits of wvDrawMutations of each delivery's
// body, each verified here with the delivery's options. One that verifies
// (whitespace between the document's members, say) must yield the
// delivery's own payload, or the build stops.
func (w *wvWorld) deliveryMutations(deliveries []wvDelivery) []wvMutation {
	var out []wvMutation
	for _, d := range deliveries {
		v := d.Verify
		opt := VerifyOptions{Tenant: v.Tenant, Targets: v.Targets, TrustedGateways: v.TrustedGateways, GatewayXKeys: v.GatewayXKeys,
			Curve: w.box("consumer-xkey"), VerifyAgentSignature: v.VerifyAgentSignature, Now: wvNow, Skew: wvSkew}
		for _, m := range wvDrawMutations(d.Name, d.Message.Body, 60) {
			m.Of = d.Name
			body := m.apply(w.t, d.Message.Body)
			if body == d.Message.Body {
				continue
			}
			got, err := VerifyDelivery(d.Message.Subject, wvHeaders(d.Message), []byte(body), opt)
			m.Want = string(reason.Of(err))
			if err == nil {
				if string(got.Payload) != d.WantPayload {
					w.t.Fatalf("%s edited (%s at %d) verifies with another payload: %q", d.Name, m.Op, m.At, got.Payload)
				}
				m.Want = "accepted"
			}
			out = append(out, m)
		}
	}
	return out
}

// claimSpec reads a token's claims back into decision.Claims.
func (w *wvWorld) claimSpec(t wvToken) decision.Claims {
	c, err := decision.Verify(t.Token, decision.VerifyOptions{TrustedGateways: []string{w.pubs["gateway-signing"]},
		Audience: t.Audience, Now: wvNow})
	if err != nil {
		w.t.Fatal(err)
	}
	c.Issuer, c.Act.Subject, c.Act.Via = "", "", "" // the signer's to fill
	return *c
}

// ---- the whole set ---------------------------------------------------------

// wvOutputMsgID is the gateway's Nats-Msg-Id of the outputs of ingress
// sequence seq from agent with message id: "agw-" + hex of the first 16
// bytes of SHA-256(uint64be(seq) || tenant || 0x00 || agent || 0x00 ||
// message_id).
func wvOutputMsgID(seq uint64, tenant, agent, messageID string) string {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	h.Write(b[:])
	h.Write([]byte(tenant + "\x00" + agent + "\x00" + messageID))
	return "agw-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// wvStored is the form the ingress stream stores a published subject in,
// with the gateway's default single partition: agentgw.in.0.<tenant>.<agent>.
func wvStored(published string) string {
	return "agentgw.in.0." + strings.TrimPrefix(published, "agentgw.in.")
}

func (w *wvWorld) build() map[string][]byte {
	keys := w.keysFile()
	creds := w.credentialFile()

	refund := w.envelope(wvEnvSpec{name: "refund", signer: "agent", xkey: "agent-xkey", seq: 1,
		id: "5d1e0c3a9b7f4e21a6c8d2f0b4e6a801", key: "refund:ord_123:draft", trace: "4bf92f3577b34da6a3ce929d0e0e4736", span: "00f067aa0ba902b7",
		capability: envelope.ToolCall, target: "refunds.draft_refund", sealed: `{"order_id":"ord_123","amount_cents":2500}`})
	search := w.envelope(wvEnvSpec{name: "search", signer: "agent", seq: 2,
		id: "5d1e0c3a9b7f4e21a6c8d2f0b4e6a802", trace: "0af7651916cd43dd8448eb211c80319c", span: "b7ad6b7169203331",
		capability: envelope.Read, target: "kb.search", plain: `{"q":"refund policy"}`})
	payment := w.envelope(wvEnvSpec{name: "payment", signer: "agent", seq: 3,
		id: "5d1e0c3a9b7f4e21a6c8d2f0b4e6a803", key: "pay:inv_77", trace: "8a3c60f7d188f8fa79d48a391a778fa6", span: "53995c3f42cd8ad8",
		capability: envelope.ToolCall, target: "payments.send", plain: `{"amount_cents":990000,"currency":"EUR"}`})

	// The approval request the gateway publishes for payment, and the
	// approver's answer.
	paymentBody, _ := envelope.Parse([]byte(payment.Message.Body), envelope.Limits{})
	pd := paymentBody.PayloadDigest()
	req := approval.Request{
		HeldMessageID: paymentBody.MessageID, TraceID: paymentBody.TraceID, Tenant: wvTenant, Agent: w.pubs["agent"],
		Service: "support-agent-runtime", Capability: string(paymentBody.Capability), Target: paymentBody.Target, Risk: "critical",
		PolicyIDs: []string{wvPolicyID}, PolicyVersion: w.policyV,
		BodyDigest: "sha256:" + payment.BodySHA256Hex, PayloadDigest: "sha256:" + hex.EncodeToString(pd[:]),
		Fields:      map[string]any{"amount_cents": json.Number("990000"), "currency": "EUR"},
		RequestedAt: wvNow, Deadline: wvNow.Add(wvApprovalTTL),
	}
	reqJSON, err := json.Marshal(req)
	if err != nil {
		w.t.Fatal(err)
	}
	approvalSubj, _ := subjects.Approval(wvTenant, "payments.send")
	answer := func(d, why string) string {
		b, err := json.Marshal(approval.Answer{Decision: d, Reason: why, BodyDigest: req.BodyDigest, PolicyVersion: req.PolicyVersion})
		if err != nil {
			w.t.Fatal(err)
		}
		return string(b)
	}
	grant, deny := answer(approval.Grant, "within the monthly budget"), answer(approval.Deny, "")
	approve := w.envelope(wvEnvSpec{name: "approve", signer: "approver", seq: 4,
		id: "5d1e0c3a9b7f4e21a6c8d2f0b4e6a804", key: answerKey(req.HeldMessageID), trace: req.TraceID, span: "e457b5a2e4d86bd1",
		capability: envelope.Approve, target: req.HeldMessageID, plain: grant})

	// The consumer's answer to refund and the reply the gateway makes of it.
	response := `{"refund_id":"rf_09467fe9","status":"drafted","customer_email":"customer@example.com"}`
	respond := w.envelope(wvEnvSpec{name: "respond", signer: "consumer", xkey: "consumer-xkey", seq: 5,
		id: "5d1e0c3a9b7f4e21a6c8d2f0b4e6a805", trace: "4bf92f3577b34da6a3ce929d0e0e4736", span: "5fb397be34d26b51",
		capability: envelope.Respond, target: envelope.RequestRef(w.pubs["agent"], "5d1e0c3a9b7f4e21a6c8d2f0b4e6a801"), sealed: response})
	cat, err := catalog.Load(filepath.Join(wireDir, "catalog.yaml"))
	if err != nil {
		w.t.Fatal(err)
	}
	refunds, _ := cat.Lookup("refunds.draft_refund")
	replyPlain, err := refunds.ValidateResponse([]byte(response))
	if err != nil {
		w.t.Fatal(err)
	}

	// Re-seals and decision tokens.
	refundOut := w.seal("refund-delivery", "gateway-xkey", "consumer-xkey", refund.Plaintext)
	paymentOut := w.seal("payment-delivery", "gateway-xkey", "consumer-xkey", `{"amount_cents":990000,"currency":"EUR"}`)
	replyOut := w.seal("reply", "gateway-xkey", "agent-xkey", string(replyPlain))
	ct := func(s *wvSeal) []byte { b, _ := hex.DecodeString(s.SealedHex); return b }
	searchPlain := []byte(`{"q":"refund policy"}`)
	deliveries := w.batch("deliveries", "gateway-signing", []wvClaimSpec{
		w.claims("refund-delivery", refund, "refunds.draft_refund", "refund:draft", ct(refundOut), decision.RouteAllow, ""),
		w.claims("search-delivery", search, "kb.search", "kb:read", searchPlain, decision.RouteAllow, ""),
		w.claims("payment-delivery", payment, "payments.send", "pay:send", ct(paymentOut), decision.RouteAllow, w.pubs["approver"]),
	})
	replyBatch := w.batch("reply", "gateway-signing", []wvClaimSpec{
		w.claimsFor("reply", w.pubs["agent"], respond, w.pubs["agent"], "respond:refunds.draft_refund", ct(replyOut), decision.RouteReply, ""),
	})
	// Decision notices to the senders (notice.json), signed as one batch.
	msgID := func(e *wvEnvelope) string { return e.Message.header(header.MsgID) }
	deadline := wvNow.Add(wvApprovalTTL).UTC()
	noticeSpecs := []wvNoticeSpec{
		{"refund-notice", "agent", refund, refund, 1, ".notice",
			notice.Notice{MessageID: msgID(refund), Route: notice.RouteAllow, Target: "refunds.draft_refund"}},
		{"search-notice", "agent", search, search, 2, ".notice",
			notice.Notice{MessageID: msgID(search), Route: notice.RouteDeny, Reason: "budget_exceeded"}},
		{"payment-notice", "agent", payment, payment, 3, ".notice",
			notice.Notice{MessageID: msgID(payment), Route: notice.RouteApproval, ApprovalID: msgID(payment), Deadline: &deadline}},
		{"approve-notice", "approver", approve, approve, 4, ".notice",
			notice.Notice{MessageID: msgID(approve), Route: notice.RouteAllow, Target: "payments.send", Answers: msgID(payment), Answer: notice.AnswerGrant}},
		{"payment-release-notice", "agent", payment, approve, 4, ".notice.held",
			notice.Notice{MessageID: msgID(payment), Route: notice.RouteAllow, Target: "payments.send"}},
	}
	noticeData := w.noticeData(noticeSpecs)
	noticeClaims := make([]wvClaimSpec, len(noticeSpecs))
	for i, s := range noticeSpecs {
		noticeClaims[i] = w.noticeClaims(s, noticeData[i])
	}
	noticeBatch := w.batch("notices", "gateway-signing", noticeClaims)
	// The approval request's token: addressed to the target, bound to
	// the request's bytes, living until its deadline.
	approvalSpec := w.claims("payment-approval-request", payment, "payments.send", "pay:send", reqJSON, decision.RouteApproval, "")
	approvalSpec.claim.Expires = req.Deadline
	approvalBatch := w.batch("approval", "gateway-signing", []wvClaimSpec{approvalSpec})
	dec := w.decisionFile([]wvBatch{deliveries, replyBatch, noticeBatch, approvalBatch})

	// Deliveries.
	dl := wvDeliveriesFile{About: "capability deliveries: the body of a message on agentgw.cap.<tenant>.<target> (docs/wire.md, \"Delivery document\"). " +
		"Each verifies with verify (the consumer's curve key is consumer_xkey, its seed in keys.json) and yields want_payload; each reject fails with want, and so does each mutation (docs/wire.md, \"Test vectors\")."}
	for _, d := range []struct {
		name, target string
		env          *wvEnvelope
		seq          uint64
		seal         *wvSeal
		plain        string
	}{
		{"refund-delivery", "refunds.draft_refund", refund, 1, refundOut, refund.Plaintext},
		{"search-delivery", "kb.search", search, 2, nil, string(searchPlain)},
		{"payment-delivery", "payments.send", payment, 4, paymentOut, `{"amount_cents":990000,"currency":"EUR"}`},
	} {
		doc := delivery.Doc{Decision: w.tokens[d.name], Signature: d.env.Message.header(header.Signature), Envelope: []byte(d.env.Message.Body)}
		sealName := ""
		if d.seal != nil {
			doc.Sealed, doc.SealedFrom, sealName = d.seal.SealedB64URL, w.pubs["gateway-xkey"], d.seal.Name
		}
		body, err := doc.Append(nil)
		if err != nil {
			w.t.Fatal(err)
		}
		subj, _ := subjects.Capability(wvTenant, d.target)
		env, _ := envelope.Parse([]byte(d.env.Message.Body), envelope.Limits{})
		dl.Deliveries = append(dl.Deliveries, wvDelivery{
			Name: d.name, Envelope: d.env.Name, Token: d.name, Seal: sealName,
			Message: wvMessage{Subject: subj, Body: string(body), Headers: []wvHeader{
				{header.MsgID, wvOutputMsgID(d.seq, wvTenant, w.pubs["agent"], env.MessageID)},
				{header.Route, "allow"},
				{header.IngressSeq, strconv.FormatUint(d.seq, 10)},
				{header.MessageID, env.MessageID},
				{header.Traceparent, d.env.Message.header(header.Traceparent)},
			}},
			Verify: wvDeliveryVerify{Tenant: wvTenant, Targets: []string{d.target}, TrustedGateways: []string{w.pubs["gateway-signing"]},
				GatewayXKeys: []string{w.pubs["gateway-xkey"]}, ConsumerXKey: w.pubs["consumer-xkey"], NowUnix: wvNow.Unix(),
				SkewSeconds: int64(wvSkew / time.Second), VerifyAgentSignature: true},
			WantSealed: d.seal != nil, WantPayload: d.plain,
		})
	}
	first := dl.Deliveries[0].Message
	reject := func(name string, edit func(string) string, want string) wvDeliveryReject {
		m := first
		m.Body = edit(m.Body)
		return wvDeliveryReject{Name: name, Of: dl.Deliveries[0].Name, Message: m, Want: want}
	}
	dl.Rejects = []wvDeliveryReject{
		reject("envelope_edited", func(s string) string {
			return strings.Replace(s, `"idempotency_key":"refund:ord_123:draft"`, `"idempotency_key":"refund:ord_124:draft"`, 1)
		}, "decision_token_binding"),
		reject("resealed_payload_swapped", func(s string) string {
			return strings.Replace(s, refundOut.SealedB64URL, paymentOut.SealedB64URL, 1)
		}, "decision_token_binding"),
		reject("no_resealed_payload", func(s string) string {
			return strings.Replace(s, `","sealed":"`+refundOut.SealedB64URL+`","sealed_from":"`+w.pubs["gateway-xkey"], "", 1)
		}, "seal_broken"),
		reject("token_removed", func(s string) string { return strings.Replace(s, w.tokens["refund-delivery"], "", 1) }, "decision_token_missing"),
		reject("agent_signature_of_another_body", func(s string) string {
			return strings.Replace(s, refund.SignatureB64URL, search.SignatureB64URL, 1)
		}, "bad_signature"),
	}
	dl.Mutations = w.deliveryMutations(dl.Deliveries)

	// Approval.
	paymentEnv := payment.Message
	appr := wvApprovalFile{
		About: "approvals (docs/wire.md, \"Approvals\"): the request the gateway publishes for the held envelope, with its decision token in " +
			"Agentgw-Decision (decision.json, batch \"approval\": route approval, audience the target, payload_digest the SHA-256 of the body), " +
			"the answers an approver may put in " +
			"the plain payload of an approve envelope, the approve envelope (envelope.json), and the delivery its grant releases (delivery.json). " +
			"request_cases are the request with a number or member changed, on the request's subject, that a reader accepts (reading fields as given) or refuses as want says " +
			"(they test the reader alone: none is the bytes the token binds); " +
			"time_cases are the request with other requested_at and deadline, which a reader reads to the nanosecond (Unix nanoseconds in decimal, \"\" for no time) " +
			"and, at now, finds expired (now later than the deadline) or pending.",
		HeldEnvelope: payment.Name,
		Request: wvMessage{Subject: approvalSubj, Body: string(reqJSON), Headers: []wvHeader{
			{header.MsgID, wvOutputMsgID(3, wvTenant, w.pubs["agent"], paymentBody.MessageID)},
			{header.Route, "approval"},
			{header.IngressSeq, "3"},
			{header.IngressSubject, wvStored(paymentEnv.Subject)},
			{header.DecidedAt, wvNow.Format(time.RFC3339Nano)},
			{header.MessageID, paymentBody.MessageID},
			{header.TraceID, paymentBody.TraceID},
			{header.Target, paymentBody.Target},
			{header.Tenant, wvTenant},
			{header.Agent, w.pubs["agent"]},
			{header.Policy, wvPolicyID},
			{header.PolicyVersion, w.policyV},
			{header.Traceparent, paymentEnv.header(header.Traceparent)},
			{header.Decision, w.tokens["payment-approval-request"]},
		}},
		BodyDigest: req.BodyDigest, PayloadDigest: req.PayloadDigest, PolicyVersion: w.policyV,
		Answers:         []wvAnswer{{"grant", grant}, {"deny", deny}},
		ApproveEnvelope: approve.Name, IdempotencyKey: answerKey(req.HeldMessageID), Release: "payment-delivery",
		RequestCases: wvRequestCases(w.t, string(reqJSON)),
		TimeCases:    wvTimeCases(w.t, string(reqJSON)),
	}

	// Response and reply.
	respondBody, _ := envelope.Parse([]byte(respond.Message.Body), envelope.Limits{})
	replySubj, _ := subjects.Reply(wvTenant, w.pubs["agent"])
	resp := wvResponseFile{
		About: "a response and its reply (docs/wire.md, \"Responses and replies\"): the consumer's respond envelope (envelope.json) answers the request " +
			"envelope; the gateway removes the catalog's sensitive fields, re-encodes the object and seals it to the requesting agent.",
		RequestEnvelope: refund.Name, RespondEnvelope: respond.Name, ResponsePlain: response, Sensitive: refunds.Sensitive,
		ReplyPlain: string(replyPlain), ReplySeal: replyOut.Name, ReplyToken: "reply",
		Reply: wvMessage{Subject: replySubj, DataHex: replyOut.SealedHex, DataB64URL: replyOut.SealedB64URL, Headers: []wvHeader{
			{header.MsgID, wvOutputMsgID(5, wvTenant, w.pubs["consumer"], respondBody.MessageID)},
			{header.Route, "allow"},
			{header.IngressSeq, "5"},
			{header.IngressSubject, wvStored(respond.Message.Subject)},
			{header.DecidedAt, wvNow.Format(time.RFC3339Nano)},
			{header.MessageID, respondBody.MessageID},
			{header.TraceID, respondBody.TraceID},
			{header.Target, respondBody.Target},
			{header.Tenant, wvTenant},
			{header.Agent, w.pubs["consumer"]},
			{header.Policy, wvPolicyID},
			{header.PolicyVersion, w.policyV},
			{header.Traceparent, respond.Message.header(header.Traceparent)},
			{header.Decision, w.tokens["reply"]},
			{"Agentgw-Request-Id", "5d1e0c3a9b7f4e21a6c8d2f0b4e6a801"},
			{"Agentgw-Responder", w.pubs["consumer"]},
			{header.SealedFrom, w.pubs["gateway-xkey"]},
		}},
		Agent: w.pubs["agent"], AgentXKey: w.pubs["agent-xkey"], GatewayXKey: w.pubs["gateway-xkey"],
		TrustedGateways: []string{w.pubs["gateway-signing"]}, VerifyAtUnix: wvNow.Unix(),
	}

	envs := wvEnvelopesFile{
		About: "agentgw envelopes as agents publish them (docs/wire.md, \"Envelope\"): subject, headers, body; signature = Ed25519(signer's key, signing_input). " +
			"ingress_seq is the message's place in the scenario the gateway test replays. Each parses, verifies and is fresh at verify_at_unix " +
			"(max_ttl 5 min, skew 30 s). Times compare to the nanosecond (\"Freshness\"): each freshness case is the search envelope with issued_at " +
			"and expires_at in place of its own, checked at now (now_unix_nano) with max_ttl_ns and skew_ns, and is fresh or refused with the reason " +
			"code in want; each build case is the search envelope's fields built at now with a TTL of ttl_ns nanoseconds, giving body, or refused " +
			"with the reason code in want.",
		VerifyAtUnix:   wvNow.Unix(),
		FreshnessCases: wvFreshnessCases(w.t, search.Message.Body),
		BuildCases:     wvBuildCases(w.t, search.Message.Body),
	}
	for _, e := range []*wvEnvelope{refund, search, payment, approve, respond} {
		envs.Envelopes = append(envs.Envelopes, *e)
	}

	op := w.operatorFile(search)
	notices := w.noticeFile(noticeSpecs, noticeData, resp.Reply)

	out := map[string][]byte{}
	for name, v := range map[string]any{
		"keys.json": keys, "credential.json": creds, "envelope.json": envs,
		"sealed.json":   w.sealsFile([]string{"refund-request", "respond-request", "refund-delivery", "payment-delivery", "reply"}),
		"decision.json": dec, "delivery.json": dl, "approval.json": appr, "response.json": resp, "operator.json": op,
		"notice.json": notices, "headers.json": wvHeadersVectors(), "consumers.json": wvConsumerNames(),
	} {
		out[name] = wvEncode(w.t, v)
	}
	return out
}

func (w *wvWorld) operatorFile(denied *wvEnvelope) wvOperatorFile {
	req := operator.Request{V: 1, RequestID: "5d1e0c3a9b7f4e21a6c8d2f0b4e6a806", Tenant: wvTenant, DeniedSeq: 9, DryRun: true,
		IssuedAt: wvNow, ExpiresAt: wvNow.Add(time.Minute)}
	body, err := json.Marshal(req)
	if err != nil {
		w.t.Fatal(err)
	}
	sig := w.signer("operator").Sign(operator.SigningInput(body))
	exp := wvNow.Add(5 * time.Minute).Unix()
	// The operator's credential sealed by the gateway to its own curve
	// key, bound to the body: "agentgw-credential-v1\n" ‖ SHA-256(body)
	// ‖ the credential, as identity.Box.SealCredential writes it (with
	// this vector's nonce).
	bodySum := sha256.Sum256([]byte(denied.Message.Body))
	opCred := append(append([]byte("agentgw-credential-v1\n"), bodySum[:]...), w.creds["operator"].Reveal()...)
	sealedCred, err := w.keys["gateway-xkey"].SealWithRand(opCred, w.pubs["gateway-xkey"], bytes.NewReader(wvNonce("replay-credential")))
	if err != nil {
		w.t.Fatal(err)
	}
	replayCred := b64url.EncodeToString(sealedCred)
	credSum := sha256.Sum256([]byte(replayCred))
	in := operator.ReplayInput(denied.BodySHA256Hex, 9, w.pubs["operator"], exp, hex.EncodeToString(credSum[:]))
	auth := w.signer("gateway-signing").Sign(in)
	return wvOperatorFile{
		About: "operator replay requests (docs/wire.md, \"Operator replay\"): a request signed by the operator, and the replay authorization " +
			"the gateway attaches when it re-submits the denied message (here the search envelope, at denied stream sequence 9).",
		Request: wvMessage{Subject: operator.Subject, Body: string(body), Headers: []wvHeader{
			{header.Credential, w.creds["operator"].Reveal()},
			{header.Signature, b64url.EncodeToString(sig)},
		}},
		SigningInput: string(operator.SigningInput(body)), SignatureB64URL: b64url.EncodeToString(sig), VerifyAtUnix: wvNow.Unix(),
		ReplayDeniedSeq: 9, ReplayBody: denied.Message.Body, ReplayOperator: w.pubs["operator"], ReplayExpiresUnix: exp,
		ReplayCredential:   replayCred,
		ReplaySigningInput: string(in),
		ReplayHeader:       fmt.Sprintf("%d.%s.%d.%s", 9, w.pubs["operator"], exp, b64url.EncodeToString(auth)),
		Gateway:            w.pubs["gateway-signing"],
	}
}
