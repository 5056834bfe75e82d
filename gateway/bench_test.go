package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/internal/natstest"
)

// BenchmarkPublishBatch is the publish gate: a batch of 256 outputs the
// size of a plain delivery (small headers, a 2 KiB body) published
// asynchronously to the capability stream of an embedded server, then
// every PubAck awaited — what publishOutputs and the acker do (pubAcks). Per
// message (ns/op), server included.
func BenchmarkPublishBatch(b *testing.B) {
	srv := natstest.Start(b, natstest.Options{})
	nc := natstest.Connect(b, srv)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	must(b, err)
	must(b, EnsureStreams(context.Background(), js, DefaultConfig().Streams, 1))
	pub, err := newPubAcks(nc)
	must(b, err)
	defer pub.close()
	body := []byte(`{"v":1,"decision":"` + strings.Repeat("x", 1500) + `","envelope":{"v":1}}`)
	const batch = 256
	msgs := make([]*nats.Msg, batch)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	seq := 0
	for b.Loop() {
		i := seq % batch
		seq++
		m := &nats.Msg{Subject: "agentgw.cap.bench.kb.search", Data: body, Header: nats.Header{
			header.MsgID: {fmt.Sprintf("agw-%d", seq)}, header.Route: {"allow"}, header.IngressSeq: {fmt.Sprint(seq)},
		}}
		msgs[i] = m
		if i < batch-1 {
			continue
		}
		pg := newPubGroup(batch)
		for _, m := range msgs {
			must(b, pub.publish(pg, nil, m))
		}
		pub.seal(pg)
		<-pg.all
		for _, err := range pub.results(pg, errPubAckTimeout) {
			must(b, err)
		}
	}
}
