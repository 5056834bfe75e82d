package eval_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/eval"
	"github.com/agentgw/agentgw/subjects/reason"
)

// TestExportedPayloadReadsBack: a plain payload copied by
// --include-payload comes back from the written file as the record sent
// it, or its record is skipped, saying why: a tab that would read back
// as null, a carriage return or .inf that would not load, a "<<" key. A
// payload YAML keeps is exported.
func TestExportedPayloadReadsBack(t *testing.T) {
	for p, exported := range map[string]bool{
		`{"memo":"kept"}`: true,
		`{"memo":"\t"}`:   false, `{"memo":"x\r"}`: false, `{"memo":".inf"}`: false, `{"<<":"x"}`: false,
	} {
		body, err := (&envelope.Builder{Tenant: "tenant_a", Audience: "aud", Capability: envelope.Read, Target: "kb.search",
			Payload: envelope.Payload{Plain: []byte(p)}}).Build(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		h := nats.Header{}
		h.Set(header.Reason, string(reason.PolicyDenied))
		f, skipped := eval.Export([]eval.Record{{Seq: 1, Header: h, Body: body, Event: &audit.Event{Tenant: "tenant_a"}}}, eval.ExportOptions{IncludePayload: true})
		if !exported {
			if len(f.Cases) != 0 || len(skipped) != 1 || !strings.Contains(skipped[0].Why, "YAML") {
				t.Errorf("%s: %d cases, skipped %+v; want it skipped for YAML", p, len(f.Cases), skipped)
			}
			continue
		}
		data, err := f.Marshal("x")
		if err != nil {
			t.Fatal(err)
		}
		g, err := eval.Parse(data)
		if err != nil || len(g.Cases) != 1 {
			t.Fatalf("%s: the exported file does not load: %v", p, err)
		}
		if got, _ := json.Marshal(g.Cases[0].Send.Plain); string(got) != p {
			t.Errorf("%s: the exported case sends %s", p, got)
		}
	}
}
