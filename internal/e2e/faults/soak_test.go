package faults

import (
	"fmt"
	"testing"
	"time"
)

// ciSoak is how long TestSoak injects faults without -soak.
const ciSoak = 20 * time.Second

// TestSoak runs load with random faults — SIGKILL of the gateway,
// SIGTERM and SIGKILL restarts of nats-server, SIGSTOP of the gateway past
// its AckWait — for -soak (default 20 s), then drains and runs the
// checker. `make soak DURATION=10m` runs a long one. The summary line
// (messages, faults injected, lost, duplicated, replays let in) is logged
// and printed.
func TestSoak(t *testing.T) {
	t.Parallel()
	start := time.Now()
	d := *soakFlag
	if d <= 0 {
		d = ciSoak
	}
	rng := newRand(t)
	e := newEnv(t, envOptions{syncAlways: true, fair: true})
	e.startGateway()
	l := newLoad(t, e, 100)
	l.start()
	defer l.stop()
	l.waitSent(50, 30*time.Second)
	faults := map[string]int{}
	n := e.nodes[0]
	deadline := time.Now().Add(d)
	lastReport := time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(jitter(rng, time.Second, 5*time.Second))
		if !e.gw.Running() {
			t.Errorf("the gateway exited by itself:\n%s", tailLog(e.gw.LogPath()))
			e.startGateway()
		}
		switch x := rng.IntN(100); {
		case x < 45:
			must(t, e.gw.Kill())
			faults["kill9_gateway"]++
			time.Sleep(jitter(rng, 0, time.Second))
			e.startGateway()
		case x < 65:
			must(t, n.Stop())
			faults["restart_nats"]++
			time.Sleep(jitter(rng, 100*time.Millisecond, 2*time.Second))
			must(t, n.StartReady(60*time.Second))
		case x < 75:
			must(t, n.Kill())
			faults["kill9_nats"]++
			time.Sleep(jitter(rng, 100*time.Millisecond, 2*time.Second))
			must(t, n.StartReady(60*time.Second))
		default:
			pauseHolding(t, e, rng)
			faults["pause_gateway"]++
			time.Sleep(jitter(rng, e.opts.ackWait+500*time.Millisecond, 3*e.opts.ackWait))
			probeRedeliveries(t, e)
			must(t, e.gw.Resume())
		}
		if time.Since(lastReport) > time.Minute {
			lastReport = time.Now()
			msg := fmt.Sprintf("soak: %s of %s, %d messages published, faults %v", time.Since(start).Round(time.Second), d, l.total(), faults)
			t.Log(msg)
			fmt.Println(msg)
		}
	}
	time.Sleep(2 * time.Second)
	l.stop()
	settle(t, e, 3*time.Minute)
	r := check(t, e, l)
	line := r.summary("soak", faults, time.Since(start))
	t.Log(line)
	fmt.Println(line)
	fmt.Printf("SOAK SUMMARY: messages %d, faults injected %d, lost %d, duplicated %d, replays let in %d\n",
		r.Ingress, sum(faults), r.Lost, r.Duplicated, r.ReplaysLetIn)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
