package gateway

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/internal/natstest"
)

// BenchmarkDuplicateWindowMemory measures what nats-server keeps in
// memory for each Nats-Msg-Id inside a stream's duplicate window: b.N
// messages with ids shaped like the gateway's output ids (agw- and 32
// hex digits and a suffix, 43 characters) or an agent's message id of
// the maximum length (128), published into a stream with the default
// streams.duplicate_window and into one with a 100 ms window, the live
// heap compared after both. Reported as B/id; the server runs in this
// process, so the heap is its own. Run with -benchtime 100000x.
func BenchmarkDuplicateWindowMemory(b *testing.B) {
	for _, idLen := range []int{43, 128} {
		b.Run(fmt.Sprintf("id=%d", idLen), func(b *testing.B) {
			srv := natstest.Start(b, natstest.Options{})
			js, err := jetstream.New(natstest.Connect(b, srv))
			if err != nil {
				b.Fatal(err)
			}
			grew := func(name string, window time.Duration) float64 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"},
					Storage: jetstream.FileStorage, Duplicates: window}); err != nil {
					b.Fatal(err)
				}
				before := liveHeap()
				for i := range b.N {
					m := nats.NewMsg(name + ".out")
					id := fmt.Sprintf("agw-%032x.notice", i)
					for len(id) < idLen {
						id += "x"
					}
					m.Header.Set("Nats-Msg-Id", id[:idLen])
					m.Data = []byte("{}")
					if _, err := js.PublishMsgAsync(m); err != nil {
						b.Fatal(err)
					}
				}
				select {
				case <-js.PublishAsyncComplete():
				case <-ctx.Done():
					b.Fatal("publish acknowledgements did not arrive")
				}
				time.Sleep(time.Second) // past the short window: its ids purged
				grown := float64(int64(liveHeap())-int64(before)) / float64(b.N)
				if err := js.DeleteStream(ctx, name); err != nil {
					b.Fatal(err)
				}
				return grown
			}
			b.ResetTimer()
			kept := grew("KEPT", DefaultConfig().Streams.DuplicateWindow)
			purged := grew("PURGED", 100*time.Millisecond)
			b.ReportMetric(kept-purged, "B/id")
		})
	}
}

// liveHeap is the heap left after two collections.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
