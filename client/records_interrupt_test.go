package client

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestReadRecordsInterrupted: a read without Follow whose ctx is done
// before it reached the end it started with returns an error wrapping
// ctx's, so a caller cannot take what it was handed for all of it; a read
// whose ctx is done only once it handed over its last message is
// complete and returns nil.
func TestReadRecordsInterrupted(t *testing.T) {
	w := newWorld(t)
	w.stream(jetstream.StreamConfig{Name: "RECORDS", Subjects: []string{"rec.>"}, AllowDirect: true})
	for i := range 4 {
		w.publish(&nats.Msg{Subject: "rec.a", Data: []byte(fmt.Sprint(i))})
	}
	read := func(cancelAt uint64) (int, error) {
		ctx, cancel := context.WithCancel(ctxT(t))
		defer cancel()
		n := 0
		err := ReadRecords(ctx, w.js, RecordQuery{Stream: "RECORDS", Batch: 1}, func(m *jetstream.RawStreamMsg) error {
			n++
			if m.Sequence == cancelAt {
				cancel() // an interrupt while reading
			}
			return nil
		})
		return n, err
	}
	n, err := read(2)
	if !errors.Is(err, context.Canceled) || n != 2 {
		t.Errorf("interrupted after 2 of 4: ReadRecords handed %d, returned %v; want 2 and an error wrapping %v", n, err, context.Canceled)
	}
	n, err = read(4)
	if err != nil || n != 4 {
		t.Errorf("interrupted after the last: ReadRecords handed %d, returned %v; want 4 and nil", n, err)
	}
}
