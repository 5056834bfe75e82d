package journal

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// lastLoss is LastLoss, failing the test on an error.
func lastLoss(t *testing.T, js jetstream.JetStream) time.Time {
	t.Helper()
	at, err := LastLoss(context.Background(), js)
	if err != nil {
		t.Fatalf("LastLoss = %v", err)
	}
	return at
}

func purge(t *testing.T, js jetstream.JetStream) time.Time {
	t.Helper()
	st, err := js.Stream(context.Background(), Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// TestPurgeMarkedByOwner: the journal is purged under a live owner. Its
// next append finds its claim gone within the age limit, fails as
// before (claim again), and leaves a loss marker stored after the purge.
func TestPurgeMarkedByOwner(t *testing.T) {
	js, _ := setup(t, Config{})
	w := newWriter(t, js, Config{})
	ctx := context.Background()
	if err := w.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	recs := ingressRecords(1, 10, at(time.Minute))
	if err := w.Append(ctx, 0, recs); err != nil {
		t.Fatal(err)
	}
	if got := lastLoss(t, js); !got.IsZero() {
		t.Fatalf("LastLoss before any loss = %s; want none", got)
	}
	purged := purge(t, js)
	if err := w.Append(ctx, 0, recs); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("Append after the purge = %v; want ErrNotClaimed", err)
	}
	if got := lastLoss(t, js); got.Before(purged.Add(-time.Second)) {
		t.Fatalf("LastLoss = %s; want a marker stored after the purge at %s", got, purged)
	}
	if err := w.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 0, recs); err != nil {
		t.Fatalf("Append after claiming again = %v", err)
	}
}

// TestPurgeMarkedByNextClaim: the journal is purged while no owner is
// left to notice; the next writer to claim any partition finds the
// stream emptied within the age limit and marks the loss before its
// fence.
func TestPurgeMarkedByNextClaim(t *testing.T) {
	js, _ := setup(t, Config{})
	ctx := context.Background()
	w := newWriter(t, js, Config{})
	if err := w.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Append(ctx, 0, ingressRecords(1, 10, at(time.Minute))); err != nil {
		t.Fatal(err)
	}
	purged := purge(t, js)
	next := newWriter(t, js, Config{})
	if err := next.Claim(ctx, 1, 2); err != nil {
		t.Fatal(err)
	}
	if got := lastLoss(t, js); got.Before(purged.Add(-time.Second)) {
		t.Fatalf("LastLoss = %s; want a marker stored after the purge at %s", got, purged)
	}
	// Further claims find the marker's stream not empty and add none.
	if err := next.Claim(ctx, 0, 2); err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, Stream)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(LossSubject))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[LossSubject]; n != 1 {
		t.Errorf("%d loss markers; want 1", n)
	}
}
