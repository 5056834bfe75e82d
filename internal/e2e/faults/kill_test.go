package faults

import (
	"fmt"
	mrand "math/rand/v2"
	"testing"
	"time"
)

// newRand returns a generator whose seed is logged, so a failing run's
// fault schedule can be read back from the test output and run again
// with -seed. The schedule is the faults' choice and timing; the
// gateway's own timing under load is not replayed.
func newRand(t testing.TB) *mrand.Rand {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("fault schedule seed %d", seed)
	return mrand.New(mrand.NewPCG(seed, seed>>7))
}

func jitter(rng *mrand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// report logs the summary line and fails the test on any problem (check
// already reported each one).
func report(t *testing.T, r *result, faults map[string]int, start time.Time) {
	t.Helper()
	line := r.summary(t.Name(), faults, time.Since(start))
	t.Log(line)
	t.Log("invariant: " + r.InvariantLine)
	if testing.Verbose() {
		fmt.Println(line)
	}
}

// TestGatewayKill9 kills the gateway with SIGKILL at random moments under
// load and restarts it, several times. Whatever the gateway was doing —
// deciding, committing the ledger, publishing, acknowledging — every
// ingress message ends in exactly one place, replays stay denied across
// restarts (the ledger is on disk), and held requests expire or are
// released exactly once.
func TestGatewayKill9(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rng := newRand(t)
	e := newEnv(t, envOptions{})
	e.startGateway()
	l := newLoad(t, e, 150)
	l.start()
	defer l.stop()
	l.waitSent(100, 30*time.Second)
	faults := map[string]int{}
	for range 4 {
		time.Sleep(jitter(rng, 300*time.Millisecond, 2500*time.Millisecond))
		must(t, e.gw.Kill())
		faults["kill9_gateway"]++
		time.Sleep(jitter(rng, 0, 700*time.Millisecond))
		e.startGateway()
	}
	time.Sleep(time.Second)
	l.stop()
	settle(t, e, 90*time.Second)
	r := check(t, e, l)
	if r.Ingress < 300 {
		t.Errorf("only %d ingress messages: the load did not run", r.Ingress)
	}
	report(t, r, faults, start)
}
