package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/store/lease"
)

// owners reads who holds each partition lease now ("" for none).
func (e *env) owners(ctx context.Context) ([]string, error) {
	kv, err := e.js.KeyValue(ctx, lease.DefaultBucket)
	if err != nil {
		return nil, err
	}
	out := make([]string, e.opts.partitions)
	for p := range out {
		en, err := kv.Get(ctx, fmt.Sprintf("p%d", p))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var v struct {
			Owner string `json:"owner"`
		}
		if json.Unmarshal(en.Value(), &v) == nil {
			out[p] = v.Owner
		}
	}
	return out, nil
}

// waitOwners waits until every partition is held and ok accepts the
// owners.
func (e *env) waitOwners(timeout time.Duration, what string, ok func([]string) bool) []string {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var last []string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		o, err := e.owners(ctx)
		cancel()
		if err == nil && !slices.Contains(o, "") && ok(o) {
			return o
		}
		last = o
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatalf("partition owners never became %s (last: %v)", what, last)
	return nil
}

// idlePartitions returns the partitions none of whose ingress consumers
// has delivered a message yet.
func idlePartitions(t testing.TB, e *env) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := e.js.Stream(ctx, "AGENTGW_IN")
	must(t, err)
	delivered := map[int]uint64{}
	lister := st.ListConsumers(ctx)
	for info := range lister.Info() {
		var p int
		if _, err := fmt.Sscanf(info.Name, "agentgw-p%d", &p); err == nil {
			delivered[p] += info.Delivered.Stream
		}
	}
	must(t, lister.Err())
	var idle []int
	for p := range e.opts.partitions {
		if delivered[p] == 0 {
			idle = append(idle, p)
		}
	}
	return idle
}

func countOwned(o []string, who string) int {
	n := 0
	for _, x := range o {
		if x == who {
			n++
		}
	}
	return n
}

// TestScaleOutKill9 runs three gateway processes on a 3-node cluster
// (streams, journal, leases and holds at R3, sync_interval: always),
// sharing six partitions. Under load from twelve agents it kills one
// instance with SIGKILL: its partitions move to the other two after the
// lease TTL, their ledgers are rebuilt from the journal, the messages
// in flight at the kill are decided before any new delivery (the time
// from the kill to the last of them is in the summary), and every
// message it accepted, replayed after the failover, is denied. The killed
// instance then rejoins and takes its share back. The invariant checker
// sees no message lost or duplicated and no replay let in.
func TestScaleOutKill9(t *testing.T) {
	t.Parallel()
	start := time.Now()
	rng := newRand(t)
	e := newEnv(t, envOptions{nodes: 3, syncAlways: true, instances: 3, fair: true})
	e.startGateway()
	balanced := func(o []string) bool {
		return countOwned(o, "gw0") == 2 && countOwned(o, "gw1") == 2 && countOwned(o, "gw2") == 2
	}
	e.waitOwners(60*time.Second, "two partitions each", balanced)
	l := newLoad(t, e, 80)
	l.start()
	defer l.stop()
	l.waitSent(150, 60*time.Second)

	// Every partition has been decided on: the load is spread. With
	// fair_tenants a partition's messages go to its tenant consumers
	// (agentgw-p<N>-t-<tenant>) and only the rest to agentgw-p<N>, so all
	// of them count; deliveries can lag the sends by a moment.
	deadline := time.Now().Add(20 * time.Second)
	for {
		idle := idlePartitions(t, e)
		if len(idle) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("partitions %v received nothing: the load is not spread", idle)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	faults := map[string]int{}
	victim := rng.IntN(3)
	name := fmt.Sprintf("gw%d", victim)
	time.Sleep(jitter(rng, 200*time.Millisecond, 1500*time.Millisecond))
	l.mu.Lock()
	before := append(slices.Clone(l.oldies), l.recent...)
	l.mu.Unlock()
	t.Logf("kill -9 %s", name)
	must(t, e.gws[victim].Kill())
	killed := time.Now()
	faults["kill9_gateway_instance"]++
	inFlight := e.inFlightAll(t)
	e.waitOwners(60*time.Second, "without "+name, func(o []string) bool { return countOwned(o, name) == 0 })

	// Replays of messages accepted before the kill (by every instance,
	// the dead one included), sent after the failover.
	pctx, pcancel := context.WithTimeout(context.Background(), 60*time.Second)
	for _, orig := range before {
		m := nats.NewMsg(orig.Subject)
		m.Data = orig.Data
		for k, v := range orig.Header {
			if k != header.MsgID {
				m.Header[k] = v
			}
		}
		seq, ok := l.publish(pctx, m, false)
		l.record(ok, sent{seq: seq, msgID: orig.Header.Get(header.MsgID), kind: kReplay})
	}
	pcancel()
	t.Logf("replayed %d messages accepted before the kill", len(before))
	took := e.awaitDecided(t, inFlight, killed, 90*time.Second)
	e.recoveries = append(e.recoveries, recovery{inFlight: len(inFlight), took: took, since: "the kill"})

	// The instance comes back and gets its share again.
	must(t, e.gws[victim].StartRetry(60*time.Second))
	e.waitOwners(60*time.Second, "balanced again", balanced)
	time.Sleep(2 * time.Second)
	l.stop()
	settle(t, e, 150*time.Second)
	r := check(t, e, l)
	report(t, r, faults, start)
}
