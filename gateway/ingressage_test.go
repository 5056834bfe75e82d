package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigIngressMaxAgeFloor: the ingress stream deletes a message at
// streams.ingress_max_age whether or not it ended. Any positive value
// was accepted, so a message held back by a full output stream for a
// few minutes was lost; below an hour (or the duplicate window, which
// nats-server refuses above the stream's max age) it is a
// configuration error.
func TestConfigIngressMaxAgeFloor(t *testing.T) {
	for _, tc := range []struct {
		streams string
		refused bool
	}{
		{"ingress_max_age: 3s", true},
		{"ingress_max_age: 59m", true},
		{"ingress_max_age: 1h", false},
		{"ingress_max_age: 24h", false},
		{"ingress_max_age: 1h\n  duplicate_window: 2h", true},
		{"ingress_max_age: 2h\n  duplicate_window: 2h", false},
	} {
		path := filepath.Join(t.TempDir(), "gateway.yaml")
		must(t, os.WriteFile(path, []byte("audience: gw\nstreams:\n  "+tc.streams+"\n"), 0o600))
		_, err := LoadConfig(path)
		if got := err != nil && strings.Contains(err.Error(), "streams.ingress_max_age"); got != tc.refused {
			t.Errorf("%q: refused = %v; want %v (%v)", tc.streams, got, tc.refused, err)
		}
	}
}

// TestIngressOldestUnackedGauge: a message held back by a full output
// stream shows in agentgw_ingress_oldest_unacked_seconds while it waits
// (the stream deletes it at ingress_max_age), and the gauge is back to
// 0 once it is acknowledged.
func TestIngressOldestUnackedGauge(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the full capability stream is logged
	h.cfg.NotifySenders = false
	h.cfg.Metrics.Listen = "127.0.0.1:0"
	h.cfg.Streams.MaxMsgsPerOutput = 3
	h.cfg.Consumer.AckWait = 2 * time.Second
	h.start()
	<-h.gw.Ready()
	addr := h.gw.MetricsAddr()
	const family = "agentgw_ingress_oldest_unacked_seconds"
	gauge := func() (float64, bool) {
		v, ok := scrape(t, addr, family)[""]
		return v, ok
	}
	if v, ok := gauge(); !ok || v != 0 {
		t.Fatalf("%s = %v (present %v) with nothing waiting; want 0", family, v, ok)
	}
	ctx := context.Background()
	for i := range 3 {
		_, err := h.js.Publish(ctx, fmt.Sprintf("agentgw.cap.tenant_a.filler.%d", i), []byte("x"))
		must(t, err)
	}
	h.send(h.body(nil)) // allowed; its delivery does not fit
	waitFor := func(what string, ok func(float64) bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			v, _ := gauge()
			if ok(v) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s = %v; want %s", family, v, what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitFor("the waiting message's age", func(v float64) bool { return v > 0 })
	cs, err := h.js.Stream(ctx, StreamCap)
	must(t, err)
	cfg := cs.CachedInfo().Config
	cfg.MaxMsgs = 1000
	_, err = h.js.UpdateStream(ctx, cfg)
	must(t, err)
	waitFor("0 once it is acknowledged", func(v float64) bool { return v == 0 })
	h.stop()
}
