package faults

import (
	"testing"
	"time"
)

// TestNATSRestart restarts the single nats-server (file storage) under
// load: twice gracefully (SIGTERM) and once with SIGKILL. The gateway
// keeps running, reconnects by itself and continues; publishes and
// acknowledgements in flight when the server went away are retried or
// redelivered, and still every ingress message ends in exactly one place.
// The server runs with sync_interval: always, as production should
// (docs/security.md): with the default two-minute interval, writes the
// server has acknowledged may not survive a crash of the machine.
func TestNATSRestart(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rng := newRand(t)
	e := newEnv(t, envOptions{syncAlways: true, fair: true})
	e.startGateway()
	l := newLoad(t, e, 150)
	l.start()
	defer l.stop()
	l.waitSent(100, 30*time.Second)
	faults := map[string]int{}
	n := e.nodes[0]
	for i := range 3 {
		time.Sleep(jitter(rng, 500*time.Millisecond, 2*time.Second))
		if i == 1 {
			must(t, n.Kill())
			faults["kill9_nats"]++
		} else {
			must(t, n.Stop())
			faults["restart_nats"]++
		}
		time.Sleep(jitter(rng, 200*time.Millisecond, 1500*time.Millisecond))
		must(t, n.StartReady(60*time.Second))
	}
	time.Sleep(2 * time.Second)
	l.stop()
	settle(t, e, 120*time.Second)
	if !e.gw.Running() {
		t.Errorf("the gateway exited during the NATS restarts; its log:\n%s", tailLog(e.gw.LogPath()))
	}
	if e.gw.Starts() != 1 {
		t.Errorf("the gateway was started %d times; want 1 (it must ride out NATS restarts)", e.gw.Starts())
	}
	r := check(t, e, l)
	report(t, r, faults, start)
}
