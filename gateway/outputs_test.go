package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

func TestRecordedOutputsRoundTrip(t *testing.T) {
	a := nats.NewMsg("agentgw.cap.t.x")
	a.Header.Set("Nats-Msg-Id", "agw-1")
	a.Header["Multi"] = []string{"1", "2"}
	a.Data = []byte("body\x00bytes")
	b := nats.NewMsg("agentgw.audit.t")
	b.Data = []byte("the ingress body")
	ingress := []byte("the ingress body")
	c := nats.NewMsg("agentgw.cap.t.y") // a delivery: the body wraps the envelope
	c.Data = []byte(`{"v":1,"envelope":the ingress body}`)
	rec, err := encodeOutputs([]*nats.Msg{a, b, c}, ingress)
	must(t, err)
	if bytes.Contains(rec, ingress) {
		t.Error("the ingress body was recorded instead of referenced")
	}
	got, err := decodeOutputs(rec, ingress)
	must(t, err)
	if len(got) != 3 || !bytes.Equal(got[2].Data, c.Data) || got[0].Subject != a.Subject || !bytes.Equal(got[0].Data, a.Data) ||
		got[0].Header.Get("Nats-Msg-Id") != "agw-1" || len(got[0].Header["Multi"]) != 2 || got[1].Subject != b.Subject || string(got[1].Data) != "the ingress body" {
		t.Fatalf("round trip = %+v", got)
	}
	// Every truncation is an error, never a panic.
	for i := range rec {
		if _, err := decodeOutputs(rec[:i], ingress); err == nil {
			t.Fatalf("decodeOutputs(truncated to %d) = nil error", i)
		}
	}
}

// TestRecordedOutputsSizedWithoutTheEnvelope: the record is allocated
// for what it holds; the envelope a delivery or a denial carries is
// referenced, so no room is reserved for it (an outcome per message).
func TestRecordedOutputsSizedWithoutTheEnvelope(t *testing.T) {
	ingress := bytes.Repeat([]byte("e"), 4096)
	deny := nats.NewMsg("agentgw.denied.t")
	deny.Data = ingress
	deliver := nats.NewMsg("agentgw.cap.t.x")
	deliver.Data = append(append([]byte(`{"v":1,"envelope":`), ingress...), '}')
	rec, err := encodeOutputs([]*nats.Msg{deny, deliver}, ingress)
	must(t, err)
	if cap(rec) > len(rec)+256 {
		t.Errorf("a record of %d bytes was allocated %d", len(rec), cap(rec))
	}
}

func TestAgentKeysCache(t *testing.T) {
	var c agentKeys
	a := newActor(t)
	k1, err := c.get(a.pub)
	must(t, err)
	k2, err := c.get(a.pub)
	must(t, err)
	if k1 != k2 {
		t.Error("a second lookup decoded the key again")
	}
	// Change the last character (part of the checksum) to another one.
	last := "A"
	if a.pub[len(a.pub)-1] == 'A' {
		last = "B"
	}
	if _, err := c.get(a.pub[:len(a.pub)-1] + last); err == nil {
		t.Error("a key with a bad checksum was accepted")
	}
	if _, err := c.get("N" + a.pub[1:]); err == nil {
		t.Error("a server key was accepted as an agent key")
	}
	for range maxAgentKeys + 5 {
		kp, err := identity.NewAgent()
		must(t, err)
		pub, _ := kp.PublicKey()
		_, err = c.get(pub)
		must(t, err)
	}
	if n := len(c.keys); n > maxAgentKeys {
		t.Errorf("cache holds %d keys; want at most %d", n, maxAgentKeys)
	}
}

// TestAgentKeysPrecomputeHotKeys: a key gets its table at its
// precomputeAfter'th verified signature (failed ones do not count), no
// more than maxKeyTables keys per filling of the cache get one, and a
// refilled cache has the whole budget again.
func TestAgentKeysPrecomputeHotKeys(t *testing.T) {
	var c agentKeys
	body := []byte(`{"v":1}`)
	sign := func(a *actor) string {
		return base64.RawURLEncoding.EncodeToString(a.signr.Sign(envelope.SigningInput(body)))
	}
	hot, other := newActor(t), newActor(t)
	k, err := c.get(hot.pub)
	must(t, err)
	for i := range precomputeAfter - 1 {
		must(t, c.verify(k, body, sign(hot)))
		if err := c.verify(k, body, sign(other)); !errors.Is(err, reason.BadSignature) {
			t.Fatalf("another agent's signature: %v; want bad_signature", err)
		}
		if k.Precomputed() {
			t.Fatalf("precomputed after %d verified signatures; want %d", i+1, precomputeAfter)
		}
	}
	must(t, c.verify(k, body, sign(hot)))
	if !k.Precomputed() || c.tables != 1 {
		t.Fatalf("after %d verified signatures: precomputed %v, tables %d; want true, 1", precomputeAfter, k.Precomputed(), c.tables)
	}
	must(t, c.verify(k, body, sign(hot))) // verifies with the table

	// The budget: the last table goes to the first key that earns it.
	c.tables = maxKeyTables - 1
	first, second := newActor(t), newActor(t)
	k1, err := c.get(first.pub)
	must(t, err)
	k2, err := c.get(second.pub)
	must(t, err)
	for range precomputeAfter {
		must(t, c.verify(k1, body, sign(first)))
		must(t, c.verify(k2, body, sign(second)))
	}
	if !k1.Precomputed() || k2.Precomputed() || c.tables != maxKeyTables {
		t.Fatalf("budget: first %v, second %v, tables %d; want true, false, %d", k1.Precomputed(), k2.Precomputed(), c.tables, maxKeyTables)
	}
	must(t, c.verify(k2, body, sign(second))) // without a table, as before

	// A refilled cache starts a new budget.
	for range maxAgentKeys {
		kp, err := identity.NewAgent()
		must(t, err)
		pub, _ := kp.PublicKey()
		_, err = c.get(pub)
		must(t, err)
	}
	if c.tables != 0 {
		t.Fatalf("tables = %d after the cache was refilled; want 0", c.tables)
	}
}

// TestIngressSubjectHeaderIsStoredForm: Agentgw-Ingress-Subject on a
// denied record is the subject as the ingress stream stored it, with its
// partition token, not the four-token subject the agent published to.
func TestIngressSubjectHeaderIsStoredForm(t *testing.T) {
	h := newHarness(t)
	h.start()
	seq := h.send(h.body(func(b *envelope.Builder) { b.Target = "no.such.target" }))
	got := h.outputFor(seq).Header.Get(header.IngressSubject)
	ref, err := subjects.ParseIngress(got)
	if err != nil || ref.Partition < 0 || ref.Tenant != "tenant_a" || ref.Agent != h.agent.pub {
		t.Fatalf("%s = %q (%+v, %v); want agentgw.in.<p>.tenant_a.%s", header.IngressSubject, got, ref, err, h.agent.pub)
	}
	if published := h.ingress(h.agent, "tenant_a"); got == published {
		t.Fatalf("%s = %q, the published form; want the stored form", header.IngressSubject, got)
	}
}

// TestDigestTexts: the digests written into audit events and decision
// tokens are the body's SHA-256, with and without the "sha256:" prefix,
// whether the verify gate took the digest or not, and stay so once
// remembered.
func TestDigestTexts(t *testing.T) {
	body := []byte(`{"v":1,"some":"envelope"}`)
	sum := sha256.Sum256(body)
	want := "sha256:" + hex.EncodeToString(sum[:])
	if got := hexDigest(sum); got != want {
		t.Fatalf("hexDigest = %s; want %s", got, want)
	}
	verified := &item{body: body, digest: sum}
	unverified := &item{body: body}
	for i := 0; i < 2; i++ {
		for name, it := range map[string]*item{"verified": verified, "unverified": unverified} {
			if got := envelopeDigestHex(it); got != want {
				t.Errorf("%s: envelopeDigestHex = %s; want %s", name, got, want)
			}
			if got := bodyDigest(it, body); got != decision.Digest(body) {
				t.Errorf("%s: bodyDigest = %s; want %s", name, got, decision.Digest(body))
			}
		}
	}
	if got := bodyDigest(verified, []byte("another body")); got != decision.Digest([]byte("another body")) {
		t.Errorf("bodyDigest(another body) = %s; want its own digest", got)
	}
}
