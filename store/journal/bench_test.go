package journal

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects/reason"
)

// The rebuild benchmarks replay 100,000 records of one partition from an
// embedded single-node server (file storage, fsync by the server's
// default policy) on this machine:
//
//	go test ./journal -run '^$' -bench . -benchtime 3x
//
// entries: replay and idempotency entries only (~250 B each);
// outcomes: per ingress message its outcome (1.5 KiB of outputs), replay
// and idempotency entry, as the gateway journals them;
// ledger: outcomes, applied to a Pebble ledger (package store) with one
// synced commit per 4096 records: the whole rebuild.
const benchRecords = 100_000

func BenchmarkReplay(b *testing.B) {
	for _, bc := range []struct {
		name   string
		output int
		ledger bool
	}{{"entries", 0, false}, {"outcomes", 1536, false}, {"ledger", 1536, true}} {
		b.Run(bc.name, func(b *testing.B) {
			js, _ := setup(b, Config{})
			bytes := fill(b, js, bc.output)
			b.SetBytes(bytes)
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				var n int
				var err error
				if bc.ledger {
					n, err = rebuild(b, js)
				} else {
					err = Replay(context.Background(), js, 0, time.Time{}, func(Record) error { n++; return nil })
				}
				if err != nil || n != benchRecords {
					b.Fatalf("replayed %d records, %v; want %d", n, err, benchRecords)
				}
			}
			b.ReportMetric(float64(b.N*benchRecords)/time.Since(start).Seconds(), "records/s")
		})
	}
}

// fill journals benchRecords records to partition 0 in batches of 256
// ingress messages and returns the bytes stored.
func fill(b *testing.B, js jetstream.JetStream, output int) int64 {
	w := newWriter(b, js, Config{})
	ctx := context.Background()
	if err := w.Claim(ctx, 0, 1); err != nil {
		b.Fatal(err)
	}
	exp := at(5 * time.Minute)
	var batch []Record
	n := 0
	for i := 0; n < benchRecords; i++ {
		for _, r := range ingressRecords(i, output, exp) {
			if n < benchRecords {
				batch, n = append(batch, r), n+1
			}
		}
		if len(batch) >= 768 || n == benchRecords {
			if err := w.Append(ctx, 0, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	st, _ := js.Stream(ctx, Stream)
	info, err := st.Info(ctx)
	if err != nil {
		b.Fatal(err)
	}
	return int64(info.State.Bytes)
}

// rebuild replays partition 0 into a fresh ledger, as a new owner would.
func rebuild(b *testing.B, js jetstream.JetStream) (int, error) {
	l, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		return 0, err
	}
	defer l.Close()
	n := 0
	batch := l.NewBatch()
	defer func() { batch.Close() }()
	dec := func(d Decision) store.Decision {
		return store.Decision{Route: store.Route(d.Route), Reason: reason.Code(d.Reason), Target: d.Target, Capability: d.Capability,
			PolicyIDs: d.PolicyIDs, PolicyVersion: d.PolicyVersion, OutputMsgID: d.OutputMsgID}
	}
	err = Replay(context.Background(), js, 0, time.Time{}, func(r Record) error {
		var err error
		switch r.Op {
		case OpReplay:
			err = batch.PutReplay(store.ReplayKey{Tenant: r.Tenant, Agent: r.Agent, MessageID: r.ID},
				store.ReplayEntry{Seq: r.Seq, Expires: r.Expires, BodyDigest: r.Digest, Decision: dec(r.Decision)})
		case OpIdem:
			err = batch.PutIdem(store.IdemKey{Tenant: r.Tenant, Agent: r.Agent, Key: r.ID},
				store.IdemEntry{PayloadDigest: r.Digest, MessageID: r.FirstMessageID, Expires: r.Expires, Decision: dec(r.Decision)})
		case OpOutcome:
			err = batch.PutOutcome(r.Seq, r.Value)
		default:
			err = fmt.Errorf("unexpected %s", r.Op)
		}
		if err != nil {
			return err
		}
		if n++; n%4096 == 0 {
			if err := batch.Commit(); err != nil {
				return err
			}
			batch.Close()
			batch = l.NewBatch()
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, batch.Commit()
}
