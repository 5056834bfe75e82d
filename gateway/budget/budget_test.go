package budget

import (
	"errors"
	"maps"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// step is one Take in a scripted sequence.
type step struct {
	tenant, agent, target string
	at                    time.Duration
	limit                 *Limit
	want                  bool
	wantState             State
}

func TestTake(t *testing.T) {
	agentOnly := Limits{Agent: Limit{Rate: 1, Burst: 3}}
	all := Limits{Tenant: Limit{Rate: 1, Burst: 5}, Agent: Limit{Rate: 1, Burst: 2}, Target: Limit{Rate: 1, Burst: 10}}
	st := func(tenant, agent, target int64, exhausted string) State {
		return State{Tenant: tenant, Agent: agent, Target: target, Exhausted: exhausted}
	}
	tests := []struct {
		name   string
		limits Limits
		steps  []step
	}{
		{"burst consumed then denied", agentOnly, []step{
			{"t", "a", "x", 0, nil, true, st(-1, 2, -1, "")},
			{"t", "a", "x", 0, nil, true, st(-1, 1, -1, "")},
			{"t", "a", "x", 0, nil, true, st(-1, 0, -1, "")},
			{"t", "a", "x", 0, nil, false, st(-1, 0, -1, LevelAgent)},
			{"t", "a", "x", 999 * time.Millisecond, nil, false, st(-1, 0, -1, LevelAgent)},
		}},
		{"refill over time", agentOnly, []step{
			{"t", "a", "x", 0, nil, true, st(-1, 2, -1, "")},
			{"t", "a", "x", 0, nil, true, st(-1, 1, -1, "")},
			{"t", "a", "x", 0, nil, true, st(-1, 0, -1, "")},
			{"t", "a", "x", time.Second, nil, true, st(-1, 0, -1, "")},
			{"t", "a", "x", time.Second, nil, false, st(-1, 0, -1, LevelAgent)},
			{"t", "a", "x", 1500 * time.Millisecond, nil, false, st(-1, 0, -1, LevelAgent)},
			{"t", "a", "x", 2 * time.Second, nil, true, st(-1, 0, -1, "")},
			// A long pause refills to the burst, never beyond.
			{"t", "a", "x", time.Hour, nil, true, st(-1, 2, -1, "")},
		}},
		{"clock going back adds nothing", agentOnly, []step{
			{"t", "a", "x", 10 * time.Second, nil, true, st(-1, 2, -1, "")},
			{"t", "a", "x", 10 * time.Second, nil, true, st(-1, 1, -1, "")},
			{"t", "a", "x", 10 * time.Second, nil, true, st(-1, 0, -1, "")},
			{"t", "a", "x", 0, nil, false, st(-1, 0, -1, LevelAgent)},
			{"t", "a", "x", 10 * time.Second, nil, false, st(-1, 0, -1, LevelAgent)},
			{"t", "a", "x", 11 * time.Second, nil, true, st(-1, 0, -1, "")},
		}},
		{"agents are separate, tenants are separate", agentOnly, []step{
			{"t", "a", "x", 0, nil, true, st(-1, 2, -1, "")},
			{"t", "b", "x", 0, nil, true, st(-1, 2, -1, "")},
			{"u", "a", "x", 0, nil, true, st(-1, 2, -1, "")},
		}},
		{"all or none across levels", all, []step{
			{"t", "a", "x", 0, nil, true, st(4, 1, 9, "")},
			{"t", "a", "y", 0, nil, true, st(3, 0, 9, "")},
			// Agent a is empty: nothing is taken from tenant or target.
			{"t", "a", "x", 0, nil, false, st(3, 0, 9, LevelAgent)},
			{"t", "a", "z", 0, nil, false, st(3, 0, 10, LevelAgent)},
			{"t", "b", "x", 0, nil, true, st(2, 1, 9, "")},
			{"t", "b", "x", 0, nil, true, st(1, 0, 8, "")},
			{"t", "c", "x", 0, nil, true, st(0, 1, 9, "")},
			// Tenant is empty: agent d keeps its tokens.
			{"t", "d", "x", 0, nil, false, st(0, 2, 10, LevelTenant)},
			{"t", "d", "x", time.Second, nil, true, st(0, 1, 9, "")},
		}},
		{"target override", Limits{Target: Limit{Rate: 1, Burst: 5}}, []step{
			{"t", "a", "x", 0, &Limit{Rate: 1, Burst: 1}, true, st(-1, -1, 0, "")},
			{"t", "a", "x", 0, &Limit{Rate: 1, Burst: 1}, false, st(-1, -1, 0, LevelTarget)},
			{"t", "a", "y", 0, nil, true, st(-1, -1, 4, "")},
			// An override of rate 0 makes this target unlimited.
			{"t", "a", "x", 0, &Limit{}, true, st(-1, -1, -1, "")},
		}},
		{"unlimited", Limits{}, []step{
			{"t", "a", "x", 0, nil, true, st(-1, -1, -1, "")},
			{"t", "a", "x", 0, nil, true, st(-1, -1, -1, "")},
		}},
		{"burst below one is one", Limits{Agent: Limit{Rate: 0.5}}, []step{
			{"t", "a", "x", 0, nil, true, st(-1, 0, -1, "")},
			{"t", "a", "x", time.Second, nil, false, st(-1, 0, -1, LevelAgent)},
			{"t", "a", "x", 2 * time.Second, nil, true, st(-1, 0, -1, "")},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.limits)
			for i, s := range tt.steps {
				got, ok := b.Take(s.tenant, s.agent, s.target, at(s.at), s.limit)
				if ok != s.want || got != s.wantState {
					t.Errorf("step %d: Take(%s, %s, %s, +%v) = %+v, %v; want %+v, %v", i, s.tenant, s.agent, s.target, s.at, got, ok, s.wantState, s.want)
				}
			}
		})
	}
}

func TestStateContext(t *testing.T) {
	tests := []struct {
		name string
		s    State
		want map[string]int64
	}{
		{"all levels", State{Tenant: 90, Agent: 3, Target: 0}, map[string]int64{KeyTenantRemaining: 90, KeyAgentRemaining: 3, KeyTargetRemaining: 0}},
		{"unlimited levels absent", State{Tenant: -1, Agent: 7, Target: -1}, map[string]int64{KeyAgentRemaining: 7}},
		{"none", State{Tenant: -1, Agent: -1, Target: -1}, map[string]int64{}},
	}
	for _, tt := range tests {
		if got := tt.s.Context(); !maps.Equal(got, tt.want) {
			t.Errorf("%s: Context() = %v; want %v", tt.name, got, tt.want)
		}
	}
}

// TestEvictionKeepsCorrectness runs the same script on Budgets that sweep
// all the time and on Budgets that never do: every answer must match, and
// the sweeping one must actually drop full buckets.
func TestEvictionKeepsCorrectness(t *testing.T) {
	limits := Limits{Tenant: Limit{Rate: 2, Burst: 4}, Agent: Limit{Rate: 1, Burst: 2}, Target: Limit{Rate: 0.5, Burst: 1}}
	eager := New(limits, WithSweepEvery(time.Nanosecond))
	lazy := New(limits, WithSweepEvery(1000*time.Hour))
	now := t0
	evicted := false
	for i := range 2000 {
		// A deterministic mix of agents, targets and pauses.
		agent := "a" + strconv.Itoa(i%3)
		target := "x" + strconv.Itoa(i%2)
		now = now.Add(time.Duration(i%7) * 150 * time.Millisecond)
		if i%97 == 0 {
			now = now.Add(10 * time.Second) // long enough for buckets to refill
		}
		s1, ok1 := eager.Take("t", agent, target, now, nil)
		s2, ok2 := lazy.Take("t", agent, target, now, nil)
		if s1 != s2 || ok1 != ok2 {
			t.Fatalf("step %d: eager %+v %v != lazy %+v %v", i, s1, ok1, s2, ok2)
		}
		evicted = evicted || eager.Len() < lazy.Len()
	}
	if !evicted {
		t.Error("the eager Budgets never evicted a bucket: the test proves nothing")
	}
	// After a quiet period every bucket is full and goes.
	now = now.Add(time.Minute)
	eager.Sweep(now)
	if n := eager.Len(); n != 0 {
		t.Errorf("after a quiet minute, Len() = %d; want 0", n)
	}
	if lazy.Len() == 0 {
		t.Error("lazy Budgets dropped buckets without a sweep")
	}
}

func TestSweepKeepsPartialBuckets(t *testing.T) {
	b := New(Limits{Agent: Limit{Rate: 1, Burst: 2}})
	b.Take("t", "a", "x", t0, nil)
	b.Take("t", "a", "x", t0, nil)
	b.Sweep(at(time.Second)) // one token back: not full
	if b.Len() != 1 {
		t.Fatalf("Len() = %d after sweeping a partial bucket; want 1", b.Len())
	}
	if _, ok := b.Take("t", "a", "x", at(time.Second), nil); !ok {
		t.Error("refilled token not granted")
	}
	if _, ok := b.Take("t", "a", "x", at(time.Second), nil); ok {
		t.Error("sweep forgot a drained bucket: granted a token that was spent")
	}
}

func TestGrowthTriggersSweep(t *testing.T) {
	b := New(Limits{Agent: Limit{Rate: 1000, Burst: 1}}, WithSweepEvery(1000*time.Hour))
	b.Take("t", "warmup", "x", t0, nil) // the first Take sweeps; start the clock
	for i := range 10 * minSweepSize {
		// Each bucket is drained now and full 1ms later.
		b.Take("t", strconv.Itoa(i), "x", at(time.Duration(i)*time.Millisecond), nil)
	}
	if n := b.Len(); n > 2*minSweepSize {
		t.Errorf("Len() = %d with churn; want at most %d", n, 2*minSweepSize)
	}
}

func TestConcurrentTake(t *testing.T) {
	// A rate so low that nothing refills during the test: exactly Burst
	// grants whatever the interleaving.
	b := New(Limits{Tenant: Limit{Rate: 1e-9, Burst: 100}, Agent: Limit{Rate: 1e-9, Burst: 60}})
	var granted atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for range 50 {
				if _, ok := b.Take("t", "a"+strconv.Itoa(g%2), "x", t0, nil); ok {
					granted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := granted.Load(); got != 100 {
		t.Errorf("granted %d; want 100 (tenant burst)", got)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		l       Limits
		wantErr int
	}{
		{"zero is unlimited", Limits{}, 0},
		{"defaults", DefaultLimits(), 0},
		{"negative rate", Limits{Agent: Limit{Rate: -1, Burst: 1}}, 1},
		{"no burst", Limits{Tenant: Limit{Rate: 1}}, 1},
		{"all bad", Limits{Tenant: Limit{Rate: -1}, Agent: Limit{Rate: 1}, Target: Limit{Rate: 1, Burst: -3}}, 3},
		{"burst past 2^53", Limits{Agent: Limit{Rate: 1, Burst: MaxBurst + 1}}, 1},
		{"burst 2^53", Limits{Agent: Limit{Rate: 1, Burst: MaxBurst}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.l.Validate()
			n := 0
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				n = len(j.Unwrap())
			}
			if n != tt.wantErr || (err != nil && !errors.Is(err, ErrBadLimit)) {
				t.Errorf("Validate() = %v; want %d ErrBadLimit problem(s)", err, tt.wantErr)
			}
		})
	}
}

func BenchmarkTake(b *testing.B) {
	bs := New(DefaultLimits())
	now := t0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		now = now.Add(time.Millisecond)
		bs.Take("tenant_a", "agent"+strconv.Itoa(i%8), "refunds.draft_refund", now, nil)
		i++
	}
}

// TestPeekConsumesNothing: Peek reports what Take would see and changes
// no bucket.
func TestPeekConsumesNothing(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	b := New(Limits{Agent: Limit{Rate: 1, Burst: 2}})
	if st := b.Peek("t", "a", "x", t0, nil); st.Agent != 2 || st.Tenant != -1 || st.Target != -1 || st.Exhausted != "" {
		t.Fatalf("Peek on a fresh bucket = %+v; want agent 2", st)
	}
	b.Take("t", "a", "x", t0, nil)
	b.Take("t", "a", "x", t0, nil)
	for range 3 {
		if st := b.Peek("t", "a", "x", t0, nil); st.Agent != 0 || st.Exhausted != LevelAgent {
			t.Fatalf("Peek after two takes = %+v; want agent 0, exhausted", st)
		}
	}
	if st := b.Peek("t", "a", "x", t0.Add(time.Second), nil); st.Agent != 1 || st.Exhausted != "" {
		t.Errorf("Peek a second later = %+v; want agent 1", st)
	}
	if _, ok := b.Take("t", "a", "x", t0.Add(time.Second), nil); !ok {
		t.Error("Take after the Peeks refused; want the refilled token")
	}
}

// TestWholeSaturates: a token count past int64 reads as the largest
// int64, not as the negative number a conversion gives, which would
// drop the level from the policy context.
func TestWholeSaturates(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want int64
	}{{0, 0}, {-1, 0}, {math.NaN(), 0}, {2.9, 2}, {1 << 53, 1 << 53}, {math.MaxInt64, math.MaxInt64}, {math.Inf(1), math.MaxInt64}} {
		if got := whole(tc.in); got != tc.want {
			t.Errorf("whole(%v) = %d; want %d", tc.in, got, tc.want)
		}
	}
}

// TestRefund: a refund gives one token back to each level the Take took
// from, capped at the burst, and creates no bucket.
func TestRefund(t *testing.T) {
	all := Limits{Tenant: Limit{Rate: 1e-9, Burst: 5}, Agent: Limit{Rate: 1e-9, Burst: 3}, Target: Limit{Rate: 1e-9, Burst: 2}}
	t.Run("each level", func(t *testing.T) {
		b := New(all)
		b.Take("t", "a", "x", t0, nil)
		b.Take("t", "a", "x", t0, nil)
		if st := b.Peek("t", "a", "x", t0, nil); st != (State{3, 1, 0, LevelTarget}) {
			t.Fatalf("after two takes: %+v", st)
		}
		b.Refund("t", "a", "x", t0, nil)
		if st := b.Peek("t", "a", "x", t0, nil); st != (State{4, 2, 1, ""}) {
			t.Errorf("after a refund: %+v; want one token back at each level", st)
		}
		b.Refund("t", "a", "x", t0, nil)
		if st := b.Peek("t", "a", "x", t0, nil); st != (State{5, 3, 2, ""}) {
			t.Errorf("after two refunds: %+v; want every level full", st)
		}
	})
	t.Run("capped at the burst", func(t *testing.T) {
		b := New(all)
		b.Take("t", "a", "x", t0, nil)
		for range 3 {
			b.Refund("t", "a", "x", t0, nil)
		}
		if st := b.Peek("t", "a", "x", t0, nil); st != (State{5, 3, 2, ""}) {
			t.Errorf("after extra refunds: %+v; want every level at its burst", st)
		}
		for i := range 2 {
			if _, ok := b.Take("t", "a", "x", t0, nil); !ok {
				t.Fatalf("take %d refused", i)
			}
		}
		if _, ok := b.Take("t", "a", "x", t0, nil); ok {
			t.Error("a third take granted: the target burst of 2 was exceeded")
		}
	})
	t.Run("refills first", func(t *testing.T) {
		b := New(Limits{Agent: Limit{Rate: 1, Burst: 3}})
		for range 3 {
			b.Take("t", "a", "x", t0, nil)
		}
		b.Refund("t", "a", "x", at(1500*time.Millisecond), nil)
		if st := b.Peek("t", "a", "x", at(1500*time.Millisecond), nil); st.Agent != 2 {
			t.Errorf("refund after 1.5s of refill: %+v; want 2 whole tokens", st)
		}
		b.Refund("t", "a", "x", at(2*time.Second), nil)
		if st := b.Peek("t", "a", "x", at(2*time.Second), nil); st.Agent != 3 {
			t.Errorf("%+v; want 3 (refill 2 + refunds 2, capped at 3)", st)
		}
	})
	t.Run("target limit of the take", func(t *testing.T) {
		b := New(Limits{Target: Limit{Rate: 1e-9, Burst: 10}})
		own := &Limit{Rate: 1e-9, Burst: 1}
		b.Take("t", "a", "x", t0, own)
		b.Refund("t", "a", "x", t0, own)
		if st := b.Peek("t", "a", "x", t0, own); st.Target != 1 {
			t.Errorf("%+v; want the target's own burst, 1", st)
		}
		// A target unlimited by its own limit took nothing: nothing back.
		b.Take("t", "a", "y", t0, nil)
		b.Refund("t", "a", "y", t0, &Limit{})
		if st := b.Peek("t", "a", "y", t0, nil); st.Target != 9 {
			t.Errorf("%+v; want 9 (a refund under an unlimited target limit gives nothing)", st)
		}
	})
	t.Run("unlimited levels and swept buckets", func(t *testing.T) {
		b := New(Limits{Agent: Limit{Rate: 1, Burst: 2}})
		b.Take("t", "a", "x", t0, nil)
		b.Sweep(at(time.Second)) // full again: dropped
		if n := b.Len(); n != 0 {
			t.Fatalf("Len() = %d after the sweep; want 0", n)
		}
		b.Refund("t", "a", "x", at(time.Second), nil)
		b.Refund("t", "b", "x", at(time.Second), nil) // never took
		if n := b.Len(); n != 0 {
			t.Errorf("Len() = %d after refunds to no bucket; want 0", n)
		}
		if st := b.Peek("t", "a", "x", at(time.Second), nil); st.Agent != 2 {
			t.Errorf("%+v; want a fresh bucket, 2", st)
		}
	})
}

// TestLimitChange: a bucket full under its old limit is a fresh one under
// the new, as a swept one is; one below it keeps its tokens.
func TestLimitChange(t *testing.T) {
	small, big := &Limit{Rate: 1, Burst: 2}, &Limit{Rate: 1, Burst: 5}
	b := New(Limits{}, WithSweepEvery(1000*time.Hour))
	b.Take("t", "a", "full", t0, nil)   // starts the sweep clock
	b.Take("t", "a", "full", t0, small) // 1 left
	b.Take("t", "a", "part", t0, small)
	b.Take("t", "a", "part", t0, small) // 0 left
	now := at(1500 * time.Millisecond)  // full: 2 (capped); part: 1.5
	if st := b.Peek("t", "a", "full", now, big); st.Target != 5 {
		t.Errorf("full bucket under a larger burst: %+v; want 5", st)
	}
	if st := b.Peek("t", "a", "part", now, big); st.Target != 1 {
		t.Errorf("partial bucket under a larger burst: %+v; want 1", st)
	}
	if st := b.Peek("t", "a", "part", now, &Limit{Rate: 1, Burst: 1}); st.Target != 1 {
		t.Errorf("partial bucket under a smaller burst: %+v; want 1", st)
	}
	// Up to the Take the bucket refills at the rate it was used with, as
	// the sweep reckons it: drained at rate 2, it is full a second later,
	// a lower rate now or not.
	b.Take("t", "a", "slow", t0, &Limit{Rate: 2, Burst: 2})
	b.Take("t", "a", "slow", t0, &Limit{Rate: 2, Burst: 2})
	if st := b.Peek("t", "a", "slow", at(time.Second), &Limit{Rate: 0.5, Burst: 2}); st.Target != 2 {
		t.Errorf("bucket drained at rate 2, a second later at rate 0.5: %+v; want 2", st)
	}
}

// TestEvictionKeepsCorrectnessAcrossLimitChanges: as
// TestEvictionKeepsCorrectness, with the target limit changing (rate and
// burst, up and down) as a catalog reload changes it.
func TestEvictionKeepsCorrectnessAcrossLimitChanges(t *testing.T) {
	limits := Limits{Agent: Limit{Rate: 1, Burst: 3}}
	shapes := []*Limit{{Rate: 0.5, Burst: 1}, {Rate: 2, Burst: 6}, nil, {Rate: 1, Burst: 3}, {Rate: 4, Burst: 2}}
	eager := New(limits, WithSweepEvery(time.Nanosecond))
	lazy := New(limits, WithSweepEvery(1000*time.Hour))
	now := t0
	evicted := false
	for i := range 3000 {
		agent := "a" + strconv.Itoa(i%3)
		target := "x" + strconv.Itoa(i%2)
		tl := shapes[(i/37)%len(shapes)]
		now = now.Add(time.Duration(i%7) * 150 * time.Millisecond)
		if i%89 == 0 {
			now = now.Add(10 * time.Second)
		}
		s1, ok1 := eager.Take("t", agent, target, now, tl)
		s2, ok2 := lazy.Take("t", agent, target, now, tl)
		if s1 != s2 || ok1 != ok2 {
			t.Fatalf("step %d (limit %+v): eager %+v %v != lazy %+v %v", i, tl, s1, ok1, s2, ok2)
		}
		evicted = evicted || eager.Len() < lazy.Len()
	}
	if !evicted {
		t.Error("the eager Budgets never evicted a bucket: the test proves nothing")
	}
}
