package gateway

import (
	"strings"
	"testing"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestEmptyReplayHeaderRefused: an Agentgw-Replay header present with an
// empty value is a present, invalid replay authorization, denied
// replay_refused, not taken for an absent one: only the gateway sets the
// header. The message is otherwise one the gateway allows.
func TestEmptyReplayHeaderRefused(t *testing.T) {
	h := newHarness(t)
	h.start()
	body := h.body(nil)
	hdr := h.signed(h.agent, h.agent.token, body)
	hdr[header.Replay] = []string{""}
	out := h.outputFor(h.publish(h.ingress(h.agent, "tenant_a"), body, hdr))
	if got, detail := reason.Code(out.Header.Get(header.Reason)), out.Header.Get(header.Detail); got != reason.ReplayRefused || !strings.Contains(detail, "invalid replay authorization") {
		t.Errorf("message with an empty %s went to %s (%q: %s); want replay_refused, invalid replay authorization", header.Replay, out.Subject, got, detail)
	}
	// The same message without the header is allowed: the empty header,
	// not the message, was refused.
	body = h.body(nil)
	if out := h.outputFor(h.send(body)); out.Header.Get(header.Route) != "allow" {
		t.Errorf("message without %s went to %s (%s); want allow", header.Replay, out.Subject, out.Header.Get(header.Reason))
	}
	h.stop()
}
