package gateway

import (
	"strings"
	"sync"
	"testing"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/notice"
)

// TestBatchSignsDecisionTokensOnce: messages decided in one batch carry
// decision tokens under one signature (a Merkle root), their decision
// notices' tokens included, and each verifies on its own against the
// gateway key.
func TestBatchSignsDecisionTokensOnce(t *testing.T) {
	h := newHarness(t)
	h.start()
	<-h.gw.Ready()
	h.stop()
	var seqs []uint64
	for range 20 {
		seqs = append(seqs, h.send(h.body(nil)))
	}
	// Which batch decided each message: a persistent pull may hand the
	// queued messages over in more than one batch.
	var mu sync.Mutex
	batchOf := map[uint64]int{}
	batches := 0
	h.opts = append(h.opts, func(g *Gateway) {
		g.hooks = &pipelineHooks{batchStart: func(b []uint64) {
			mu.Lock()
			defer mu.Unlock()
			for _, seq := range b {
				batchOf[seq] = batches
			}
			batches++
		}}
	})
	h.start()
	sigOf := map[int]string{} // batch → its tokens' signature
	sigs := map[string]bool{}
	largest := 0
	for _, seq := range seqs {
		out := h.outputFor(seq)
		doc := h.delivery(out)
		tok := doc.Decision
		parts := strings.Split(tok, ".")
		if len(parts) != 4 {
			t.Fatalf("decision token of %d has %d parts", seq, len(parts))
		}
		c, err := decision.Verify(tok, decision.VerifyOptions{TrustedGateways: []string{h.gwSigning}, Audience: "kb.search", Now: h.clock.Now()})
		if err != nil {
			t.Fatalf("decision token of %d: %v", seq, err)
		}
		if err := c.CheckBinding(doc.Envelope, []byte(`{"q":"refund policy"}`)); err != nil {
			t.Fatalf("binding of %d: %v", seq, err)
		}
		mu.Lock()
		b, ok := batchOf[seq]
		mu.Unlock()
		if !ok {
			t.Fatalf("ingress %d decided in no batch the hook saw", seq)
		}
		if prev, ok := sigOf[b]; ok && prev != parts[3] {
			t.Errorf("ingress %d: batch %d carries a second signature", seq, b)
		}
		sigOf[b] = parts[3]
		sigs[parts[3]] = true
	}
	// The batch's decision notices are signed with its deliveries: one
	// signature for every token of the batch.
	for _, seq := range seqs {
		id := h.ingressID(seq)
		h.noticeFor(h.agent, id) // verifies the notice's token
		token, _, err := notice.ParseDoc(h.noticesTo(h.agent, id)[0].Data)
		must(t, err)
		mu.Lock()
		want := sigOf[batchOf[seq]]
		mu.Unlock()
		if sig := token[strings.LastIndex(token, ".")+1:]; sig != want {
			t.Errorf("ingress %d: its notice is signed apart from its delivery", seq)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	size := map[int]int{}
	for _, seq := range seqs {
		size[batchOf[seq]]++
		largest = max(largest, size[batchOf[seq]])
	}
	if largest < 2 {
		t.Fatalf("every batch held one message; the test needs one of several")
	}
	if len(sigs) != len(sigOf) {
		t.Fatalf("%d signatures for %d batches; want one each", len(sigs), len(sigOf))
	}
}
