package journal

import (
	"context"
	"errors"
	"sync"
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

// claimed returns a writer that has claimed partition 0 and appended
// recs to it.
func claimed(t *testing.T, js jetstream.JetStream) (*Writer, []Record) {
	t.Helper()
	w := newWriter(t, js, Config{})
	if err := w.Claim(context.Background(), 0, 1); err != nil {
		t.Fatal(err)
	}
	recs := ingressRecords(1, 10, at(time.Minute))
	if err := w.Append(context.Background(), 0, recs); err != nil {
		t.Fatal(err)
	}
	return w, recs
}

// TestPurgeMarkedByOwner: the journal is purged under a live owner. Its
// next append finds its claim gone within the age limit, fails as
// before (claim again), and leaves a loss marker stored after the purge.
func TestPurgeMarkedByOwner(t *testing.T) {
	js, _ := setup(t, Config{})
	ctx := context.Background()
	w, recs := claimed(t, js)
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
	claimed(t, js)
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

// purgeAfterInfo is a JetStream handle whose journal stream purges
// itself once, right after the first Info a writer asks of it: a purge
// landing between a claim's look at the stream and its fence.
type purgeAfterInfo struct {
	jetstream.JetStream
	once *sync.Once
}

func (j purgeAfterInfo) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	st, err := j.JetStream.Stream(ctx, name)
	return purgingStream{st, j.once}, err
}

type purgingStream struct {
	jetstream.Stream
	once *sync.Once
}

func (s purgingStream) Info(ctx context.Context, opts ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	info, err := s.Stream.Info(ctx, opts...)
	s.once.Do(func() { _ = s.Stream.Purge(ctx) })
	return info, err
}

// TestPurgeDuringClaimMarked: the journal is purged while a new owner
// claims a partition, after it looked at the stream and before its
// fence. On a partition with records the fence fails its check and the
// next attempt finds them gone; on an empty one the fence passes, and
// the stream read after it has lost what it held. Either way the loss is
// marked before Claim returns.
func TestPurgeDuringClaimMarked(t *testing.T) {
	for _, p := range []int{0, 1} {
		t.Run(map[int]string{0: "records", 1: "empty"}[p], func(t *testing.T) {
			js, _ := setup(t, Config{})
			ctx := context.Background()
			claimed(t, js)
			next := newWriter(t, purgeAfterInfo{js, &sync.Once{}}, Config{})
			if err := next.Claim(ctx, p, 2); err != nil {
				t.Fatal(err)
			}
			if got := lastLoss(t, js); got.IsZero() {
				t.Fatal("LastLoss = none; want the purge during the claim marked")
			}
		})
	}
}

// TestShorterMaxAgeIsNoLoss: another instance shortens the stream's age
// limit (a rolling change of the limits); messages it then removes are
// older than the stream keeps them, so the writer whose claim went with
// them marks no loss, though they were younger than its own MaxAge.
func TestShorterMaxAgeIsNoLoss(t *testing.T) {
	long := Config{MaxAge: time.Hour}
	js, _ := setup(t, long)
	ctx := context.Background()
	w := newWriter(t, js, long)
	if err := w.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	recs := []Record{{Op: OpMarker, MarkerKind: "k", ID: "old", Expires: at(500 * time.Millisecond)}}
	if err := w.Append(ctx, 0, recs); err != nil {
		t.Fatal(err)
	}
	if err := EnsureStream(ctx, js, Config{MaxAge: time.Second}); err != nil {
		t.Fatal(err)
	}
	st, _ := js.Stream(ctx, Stream)
	waitFor(t, 15*time.Second, "the stream to expire the old messages", func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	if err := w.Append(ctx, 0, recs); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("Append after the claim aged out = %v; want ErrNotClaimed", err)
	}
	if err := w.Claim(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	if got := lastLoss(t, js); !got.IsZero() {
		t.Errorf("LastLoss after a shorter age limit removed the claim = %s; want none", got)
	}
}

// TestPurgeMarkedWithoutStreamAgeLimit: the stream's age limit is
// removed (nats stream edit --max-age 0): its messages are kept at least
// as long as the writer's MaxAge, so a purge is still a loss.
func TestPurgeMarkedWithoutStreamAgeLimit(t *testing.T) {
	js, _ := setup(t, Config{})
	ctx := context.Background()
	sc := StreamConfig(Config{})
	sc.MaxAge = 0
	if _, err := js.UpdateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	w, recs := claimed(t, js)
	purge(t, js)
	if err := w.Append(ctx, 0, recs); !errors.Is(err, ErrNotClaimed) {
		t.Fatalf("Append after the purge = %v; want ErrNotClaimed", err)
	}
	if got := lastLoss(t, js); got.IsZero() {
		t.Fatal("LastLoss = none; want the purge marked")
	}
}
