package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestReadRecords(t *testing.T) {
	w := newWorld(t)
	w.stream(jetstream.StreamConfig{Name: "RECORDS", Subjects: []string{"rec.>"}, AllowDirect: true})
	w.stream(jetstream.StreamConfig{Name: "NODIRECT", Subjects: []string{"nodirect.>"}})
	pub := func(subject, data string, hdr nats.Header) {
		t.Helper()
		w.publish(&nats.Msg{Subject: subject, Data: []byte(data), Header: hdr})
	}
	pub("rec.a", "1", nil)
	pub("rec.b", "2", nil)
	// A publisher's headers that mimic the server's must not change what
	// the reader reports.
	pub("rec.a", "3", nats.Header{"Nats-Sequence": {"999"}, "Nats-Subject": {"rec.b"}, "Agentgw-Reason": {"kept"}})
	ctx := ctxT(t)

	read := func(q RecordQuery, during func(*jetstream.RawStreamMsg)) ([]string, error) {
		var got []string
		err := ReadRecords(ctx, w.js, q, func(m *jetstream.RawStreamMsg) error {
			got = append(got, fmt.Sprintf("%d %s %s", m.Sequence, m.Subject, m.Data))
			if during != nil {
				during(m)
			}
			return nil
		})
		return got, err
	}
	cases := []struct {
		name string
		q    RecordQuery
		want []string
	}{
		{"all", RecordQuery{Stream: "RECORDS"}, []string{"1 rec.a 1", "2 rec.b 2", "3 rec.a 3"}},
		{"filter", RecordQuery{Stream: "RECORDS", Subject: "rec.a"}, []string{"1 rec.a 1", "3 rec.a 3"}},
		{"from", RecordQuery{Stream: "RECORDS", From: 2}, []string{"2 rec.b 2", "3 rec.a 3"}},
		{"small_batches", RecordQuery{Stream: "RECORDS", Batch: 1}, []string{"1 rec.a 1", "2 rec.b 2", "3 rec.a 3"}},
		{"since_before_all", RecordQuery{Stream: "RECORDS", Since: time.Now().Add(-time.Hour)}, []string{"1 rec.a 1", "2 rec.b 2", "3 rec.a 3"}},
		{"since_after_all", RecordQuery{Stream: "RECORDS", Since: time.Now().Add(time.Hour)}, nil},
		{"none_match", RecordQuery{Stream: "RECORDS", Subject: "rec.c"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := read(tc.q, nil)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("ReadRecords(%+v) = %q, %v; want %q", tc.q, got, err, tc.want)
			}
		})
	}

	t.Run("server_headers_removed_own_kept", func(t *testing.T) {
		var hdr nats.Header
		err := ReadRecords(ctx, w.js, RecordQuery{Stream: "RECORDS", From: 3}, func(m *jetstream.RawStreamMsg) error { hdr = m.Header; return nil })
		if err != nil || hdr.Get("Agentgw-Reason") != "kept" || hdr.Get("Nats-Stream") != "" || hdr.Get("Nats-Time-Stamp") != "" ||
			!slices.Equal(hdr.Values("Nats-Sequence"), []string{"999"}) {
			t.Fatalf("headers = %v, %v; want the message's own only", hdr, err)
		}
	})

	t.Run("stops_at_the_end_it_started_with", func(t *testing.T) {
		got, err := read(RecordQuery{Stream: "RECORDS", Batch: 1}, func(m *jetstream.RawStreamMsg) {
			if m.Sequence == 1 {
				pub("rec.a", "late", nil)
			}
		})
		if err != nil || len(got) != 3 {
			t.Fatalf("ReadRecords = %q, %v; want the three stored when it started", got, err)
		}
	})

	t.Run("follow", func(t *testing.T) {
		fctx, cancel := context.WithCancel(ctx)
		defer cancel()
		var got []uint64
		first := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- ReadRecords(fctx, w.js, RecordQuery{Stream: "RECORDS", Subject: "rec.b", Follow: true, Poll: 10 * time.Millisecond},
				func(m *jetstream.RawStreamMsg) error {
					got = append(got, m.Sequence)
					switch len(got) {
					case 1:
						close(first)
					case 2:
						cancel()
					}
					return nil
				})
		}()
		select {
		case <-first:
		case <-time.After(15 * time.Second):
			t.Fatal("follow never handed over the stored message")
		}
		pub("rec.b", "new", nil) // stored after the reader reached the end
		select {
		case err := <-done:
			if err != nil || len(got) != 2 || got[0] != 2 {
				t.Fatalf("ReadRecords(follow) = %v, %v; want sequence 2 and the one stored after", got, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("follow never handed over the new message")
		}
	})

	t.Run("fn_error_stops", func(t *testing.T) {
		stop := errors.New("stop")
		if err := ReadRecords(ctx, w.js, RecordQuery{Stream: "RECORDS"}, func(*jetstream.RawStreamMsg) error { return stop }); !errors.Is(err, stop) {
			t.Fatalf("ReadRecords = %v; want fn's error", err)
		}
	})

	t.Run("deny/no_direct_get", func(t *testing.T) {
		if err := ReadRecords(ctx, w.js, RecordQuery{Stream: "NODIRECT"}, func(*jetstream.RawStreamMsg) error { return nil }); !errors.Is(err, ErrNoDirectGet) {
			t.Fatalf("ReadRecords(no direct get) = %v; want %v", err, ErrNoDirectGet)
		}
	})
	t.Run("deny/no_stream", func(t *testing.T) {
		err := ReadRecords(ctx, w.js, RecordQuery{Stream: "MISSING"}, func(*jetstream.RawStreamMsg) error { return nil })
		if !errors.Is(err, ErrStream) || !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("ReadRecords(missing stream) = %v; want %v and %v", err, ErrStream, jetstream.ErrStreamNotFound)
		}
	})
}
