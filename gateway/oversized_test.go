package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestOversizedBodyEndsWithoutItsBody: a body over max_body_bytes is
// denied oversized with a record that names the body (its digest and
// size) and does not carry it, nor the credential sealed to it nor the
// signature over it. As large as the ingress stream takes, and sent
// with no credential at all, its record with the body and the decision
// headers would be larger than the server's max_payload: it could never
// be stored, and the message was redelivered for ever, holding the
// consumer's ack floor. A record without its body cannot be replayed.
func TestOversizedBodyEndsWithoutItsBody(t *testing.T) {
	h := newHarness(t)
	h.start()
	ctx := context.Background()
	huge := bytes.Repeat([]byte("x"), int(h.nc.MaxPayload())-64)
	hugeSeq := h.publish(h.ingress(h.agent, "tenant_a"), huge, nil)
	signed := []byte(`{"pad":"` + strings.Repeat("x", 70<<10) + `"}`)
	signedSeq := h.send(signed)
	for _, c := range []struct {
		seq  uint64
		body []byte
	}{{hugeSeq, huge}, {signedSeq, signed}} {
		out := h.outputFor(c.seq)
		if got := reason.Code(out.Header.Get(header.Reason)); got != reason.Oversized || out.Subject != "agentgw.denied.tenant_a.oversized" {
			t.Fatalf("ingress %d: %s, reason %q; want agentgw.denied.tenant_a.oversized", c.seq, out.Subject, got)
		}
		if len(out.Data) != 0 {
			t.Errorf("ingress %d: the denied record holds %d bytes of body; want none", c.seq, len(out.Data))
		}
		sum := sha256.Sum256(c.body)
		if got, want := out.Header.Get(header.BodyDigest), "sha256:"+hex.EncodeToString(sum[:]); got != want {
			t.Errorf("ingress %d: %s = %q; want %q", c.seq, header.BodyDigest, got, want)
		}
		if got, want := out.Header.Get(header.BodyBytes), strconv.Itoa(len(c.body)); got != want {
			t.Errorf("ingress %d: %s = %q; want %q", c.seq, header.BodyBytes, got, want)
		}
		for _, k := range []string{header.CredentialSealed, header.CredentialSealedTo, header.Signature} {
			if out.Header.Get(k) != "" {
				t.Errorf("ingress %d: the record without its body keeps %s", c.seq, k)
			}
		}
		if ev := h.auditFor(c.seq); ev.Route != "deny" || ev.Reason != string(reason.Oversized) || ev.BodyDigest != out.Header.Get(header.BodyDigest) {
			t.Errorf("ingress %d: audit event %s %q, body digest %q; want deny oversized, the record's digest", c.seq, ev.Route, ev.Reason, ev.BodyDigest)
		}
	}
	op := h.operator("operator:replay")
	for _, dry := range []bool{true, false} {
		if _, err := op.Replay(ctx, h.deniedSeq(signedSeq), dry); err == nil || !strings.Contains(err.Error(), string(reason.ReplayRefused)) {
			t.Errorf("replay (dry run %v) of a record without its body = %v; want %s", dry, err, reason.ReplayRefused)
		}
	}
	r, err := invariant.Wait(ctx, h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v (%s)", err, r)
	}
	h.stop()
	h.scanSecrets()
	h.validateAudit()
}
