package eval

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/client"
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/subjects"
)

// DeniedQuery chooses denied records. Empty fields match everything.
type DeniedQuery struct {
	Seqs   []uint64  // denied stream sequences
	Tenant string    // the tenant token of the denied subject
	Reason string    // a reason code
	Agent  string    // the agent's public key
	Since  time.Time // stored at or after
}

// ReadDenied reads the denied records q chooses and, from the audit
// stream, the decision event of each one's ingress sequence, by direct
// get only (client.ReadRecords), as an operator may.
func ReadDenied(ctx context.Context, js jetstream.JetStream, q DeniedQuery) ([]Record, error) {
	tenant, code := "*", "*"
	if q.Tenant != "" {
		tenant = q.Tenant
	}
	if q.Reason != "" {
		code = q.Reason
	}
	var recs []Record
	first := time.Time{}
	err := client.ReadRecords(ctx, js, client.RecordQuery{Stream: gateway.StreamDenied, Subject: subjects.Root + ".denied." + tenant + "." + code, Since: q.Since}, func(m *jetstream.RawStreamMsg) error {
		if len(q.Seqs) > 0 && !slices.Contains(q.Seqs, m.Sequence) {
			return nil
		}
		if q.Agent != "" && m.Header.Get(header.Agent) != q.Agent {
			return nil
		}
		if first.IsZero() || m.Time.Before(first) {
			first = m.Time
		}
		recs = append(recs, Record{Seq: m.Sequence, Header: m.Header, Body: m.Data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eval: read %s: %w", gateway.StreamDenied, err)
	}
	if len(recs) == 0 {
		return nil, nil
	}
	want := map[uint64]int{}
	for i, r := range recs {
		if s := IngressSeqOf(r.Header); s != 0 {
			want[s] = i
		}
	}
	// Audit events are written after the decision they record, so none
	// is older than the oldest record chosen (a minute's margin for
	// clocks).
	err = client.ReadRecords(ctx, js, client.RecordQuery{Stream: gateway.StreamAudit, Since: first.Add(-time.Minute)}, func(m *jetstream.RawStreamMsg) error {
		evs, _ := audit.Decode(m.Data) // what is not an event is skipped
		for _, ev := range evs {
			if i, ok := want[ev.IngressSeq]; ok && ev.Kind == audit.KindDecision && recs[i].Event == nil {
				e := ev
				recs[i].Event = &e
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eval: read %s: %w", gateway.StreamAudit, err)
	}
	return recs, nil
}
