package gateway

import (
	"strings"
	"testing"

	"github.com/agentgw/agentgw/gateway/decision"
)

// TestBatchSignsDecisionTokensOnce: messages decided in one batch carry
// decision tokens under one signature (a Merkle root), and each verifies
// on its own against the gateway key.
func TestBatchSignsDecisionTokensOnce(t *testing.T) {
	h := newHarness(t)
	h.start()
	<-h.gw.Ready()
	h.stop()
	var seqs []uint64
	for range 5 {
		seqs = append(seqs, h.send(h.body(nil)))
	}
	h.start()
	sigs := map[string]bool{}
	for _, seq := range seqs {
		out := h.outputFor(seq)
		doc := h.delivery(out)
		tok := doc.Decision
		parts := strings.Split(tok, ".")
		if len(parts) != 4 {
			t.Fatalf("decision token of %d has %d parts", seq, len(parts))
		}
		sigs[parts[3]] = true
		c, err := decision.Verify(tok, decision.VerifyOptions{TrustedGateways: []string{h.gwSigning}, Audience: "kb.search", Now: h.clock.Now()})
		if err != nil {
			t.Fatalf("decision token of %d: %v", seq, err)
		}
		if err := c.CheckBinding(doc.Envelope, []byte(`{"q":"refund policy"}`)); err != nil {
			t.Fatalf("binding of %d: %v", seq, err)
		}
	}
	if len(sigs) != 1 {
		t.Fatalf("%d signatures for one batch of %d; want 1", len(sigs), len(seqs))
	}
}
