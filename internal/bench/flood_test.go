package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/subjects"
)

// TestFloodScenario runs the flood scenario small and checks that the
// report is consistent: every victim message measured in both phases,
// every flood message denied, the ratio from the figures. It never
// asserts on speed.
func TestFloodScenario(t *testing.T) {
	cfg, rep := runFlood(t, 400, 500, false)
	f := rep.Flood
	if len(rep.Scenarios) != 0 || rep.MCP != nil {
		t.Errorf("flood ran %d mix scenarios and MCP %v; want the flood alone", len(rep.Scenarios), rep.MCP != nil)
	}
	if f.Flooded.Count == 0 || f.Quiet.Count != max(f.Flooded.Count, 50) {
		t.Errorf("victim measured %d times flooded, %d alone; want some, and as many alone (at least 50)", f.Flooded.Count, f.Quiet.Count)
	}
	if f.FloodMessages != cfg.Messages || f.FloodPerSec <= 0 {
		t.Errorf("flood of %d at %v msgs/s; want %d decided", f.FloodMessages, f.FloodPerSec, cfg.Messages)
	}
	if want := float64(f.Flooded.P99) / float64(f.Quiet.P99); f.P99Ratio != want {
		t.Errorf("P99Ratio = %v; want %v", f.P99Ratio, want)
	}
	// Storing is part of the way: never later than the output.
	if s, l := f.FloodedStored, f.Flooded; s.Count != l.Count || s.P50 > l.P50 || s.P99 > l.P99 || s.Max > l.Max {
		t.Errorf("until stored %+v exceeds the whole latency %+v", s, l)
	}
	if f.FloodAheadMax < f.FloodAheadP99 || f.FloodAheadMax > cfg.Messages {
		t.Errorf("flood ahead max %d, p99 %d; want p99 ≤ max ≤ %d", f.FloodAheadMax, f.FloodAheadP99, cfg.Messages)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "victim p99 flooded/alone") || strings.Contains(out.String(), "allow/deny/held") {
		t.Errorf("table:\n%s\nwant the flood table alone", out.String())
	}
}

// TestFloodFloorScenario: with FloodFloor the flood goes to a stream no
// gateway reads, so the run reports the victim beside it with no flood
// message decided (the run fails on any denial), and the flood's rate is
// its storing's.
func TestFloodFloorScenario(t *testing.T) {
	_, rep := runFlood(t, 2000, 2000, true)
	f := rep.Flood
	if !f.Floor || f.FloodAheadMax != 0 || f.FloodPerSec <= 0 {
		t.Errorf("floor %v, flood ahead %d, flood stored at %v msgs/s; want a floor, nothing decided ahead, a rate", f.Floor, f.FloodAheadMax, f.FloodPerSec)
	}
	if f.Flooded.Count == 0 || f.Quiet.Count != max(f.Flooded.Count, 50) {
		t.Errorf("victim measured %d times flooded, %d alone; want some, and as many alone (at least 50)", f.Flooded.Count, f.Quiet.Count)
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "stored, not decided") || !strings.Contains(out.String(), "no flood message decided") {
		t.Errorf("table:\n%s\nwant the floor's rows", out.String())
	}
}

// runFlood runs the flood scenario small: messages flood messages, the
// victim at rate, the flood to a stream nothing reads when floor is set.
func runFlood(t *testing.T, messages int, rate float64, floor bool) (Config, *Report) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Messages, cfg.Warmup = messages, 0
	cfg.Agents = 4
	cfg.Flood, cfg.FloodFloor = true, floor
	cfg.FloodVictimRate = rate
	cfg.ProgressEvery = -1
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if rep.Flood == nil {
		t.Fatal("no flood result")
	}
	return cfg, rep
}

// TestStoredTimesFromTheServer: the flood's "until stored" is the ingress
// message's timestamp from nats-server, which lies between the publish
// and the publisher's PubAck; a timestamp outside that window (another
// clock) leaves the PubAck's time.
func TestStoredTimesFromTheServer(t *testing.T) {
	js := createStreams(t, startServer(t))
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	subj, err := subjects.Ingress("acme", pub)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	base := time.Now()
	log := newSendLog(2)
	for i := range 2 {
		log.at[i] = int64(time.Since(base))
		ack, err := js.Publish(ctx, subj, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		log.seq[i], log.stored[i] = ack.Sequence, int64(time.Since(base))
	}
	// The second message's PubAck is made to precede its storing, as if
	// the server's clock ran ahead of this process's.
	log.stored[1] = log.at[1]
	r := &runner{js: js}
	got, err := r.storedTimes(ctx, log, 2, base)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, gateway.StreamIngress)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, log.seq[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(m.Time.Sub(base)); got[0] != want {
		t.Errorf("stored time of the first message = %d; want the server's %d", got[0], want)
	}
	if got[0] < log.at[0] || got[0] > log.stored[0] {
		t.Errorf("stored time %d outside publish %d .. PubAck %d", got[0], log.at[0], log.stored[0])
	}
	if got[1] != log.stored[1] {
		t.Errorf("stored time of the second message = %d; want the PubAck's %d (the server's time is outside the window)", got[1], log.stored[1])
	}
}
