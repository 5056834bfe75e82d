package gateway

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/approval"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestScaleOutHeldOnRedecisionTakesNoAnswer: scaled out, an instance
// allows a sealed refund, whose target takes responses, and dies once
// the request's response record is in the shared bucket, before its
// journal append: nothing was published. The target then needs an
// approver, and the next owner holds the request when it decides it
// again. The request was not delivered: an answer to it is refused
// no_such_request, whether it is still held or its hold expired, and
// once an approver releases it the answer to the real delivery is taken.
func TestScaleOutHeldOnRedecisionTakesNoAnswer(t *testing.T) {
	for _, then := range []string{"held", "expired", "granted"} {
		t.Run(then, func(t *testing.T) {
			h := scaledOutCrashHarness(t)
			h.cfg.Limits.ApprovalTTL = 30 * time.Second // within the target's 1m response_deadline
			a, env, seq := h.refundAllowedThenDied(t)
			raw, err := os.ReadFile(h.cfg.Catalog)
			must(t, err)
			must(t, os.WriteFile(h.cfg.Catalog, []byte(strings.Replace(string(raw), "    risk: medium\n", "    risk: critical\n", 1)), 0o600))
			b := h.startInstance("b")
			out := h.outputFor(seq)
			if !strings.HasPrefix(out.Subject, "agentgw.approval.") {
				t.Fatalf("the request decided again went to %s (%s); want the approval queue", out.Subject, out.Header.Get(header.Reason))
			}
			answer := func(id string) *reason.Code {
				got := h.outputFor(h.respond(h.consumer, env.MessageID, `{"refund_id":"`+id+`","status":"drafted"}`))
				r := reason.Code(got.Header.Get(header.Reason))
				return &r
			}
			switch then {
			case "expired":
				h.clock.Advance(h.cfg.Limits.ApprovalTTL + time.Second)
				h.waitIn(StreamDenied, seq, expiredOutput)
				fallthrough
			case "held":
				if r := answer("early"); *r != reason.NoSuchRequest {
					t.Errorf("an answer to the request %s: %q; want no_such_request", then, *r)
				}
				if n := len(h.replies()); n != 0 {
					t.Errorf("the requester got %d replies to a request never delivered", n)
				}
			case "granted":
				var req approval.Request
				must(t, json.Unmarshal(out.Data, &req))
				answer("early")
				ap := newActor(t)
				ap.token = h.credential(h.issuer, ap, "tenant_a", []string{"approve:refunds.*"}, time.Hour, "")
				if d := h.outputFor(h.grantBy(ap, req)); !strings.HasPrefix(d.Subject, "agentgw.cap.") {
					t.Fatalf("the grant went to %s (%s)", d.Subject, d.Header.Get(header.Reason))
				}
				if r := answer("real"); *r != "" {
					t.Errorf("the answer to the released request refused %q; want it delivered", *r)
				}
			}
			h.endScaleOut(t, b, a)
		})
	}
}
