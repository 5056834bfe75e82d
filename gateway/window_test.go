package gateway

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/internal/invariant"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects/reason"
)

// windowCase is one configuration the freshness/ledger property is
// checked under.
type windowCase struct {
	maxTTL, skew, width time.Duration
}

// windowCases returns the configurations TestLedgerCoversFreshnessWindow
// checks: every pairing of some edge values of max_ttl and skew (skew
// across its whole allowed range [0, 5m]), each with the width the
// gateway would pick and two others (an existing ledger keeps the width
// it was created with, so any width must be safe), and random ones.
func windowCases(rng *rand.Rand) []windowCase {
	var cs []windowCase
	for _, maxTTL := range []time.Duration{time.Second, 30 * time.Second, 5 * time.Minute, time.Hour} {
		for _, skew := range []time.Duration{0, time.Second, 30 * time.Second, 31 * time.Second, 2 * time.Minute, 5 * time.Minute} {
			for _, width := range []time.Duration{maxTTL + skew, time.Second, 3*maxTTL + 7*skew + 13*time.Second} {
				cs = append(cs, windowCase{maxTTL, skew, max(width, time.Second)})
			}
		}
	}
	for range 24 {
		maxTTL := time.Duration(1+rng.Int64N(int64(2*time.Hour/time.Millisecond))) * time.Millisecond
		skew := time.Duration(rng.Int64N(int64(5*time.Minute) + 1))
		width := time.Second + time.Duration(rng.Int64N(int64(2*(maxTTL+2*skew))))
		cs = append(cs, windowCase{maxTTL, skew, width})
	}
	return cs
}

// TestLedgerCoversFreshnessWindow is the property that closes the replay
// window: under any valid (max_ttl, skew), any generation width and any
// prune schedule, a message's ledger entries are reported at every
// instant at which the freshness gate would still accept a copy of it.
// Every message is acknowledged as soon as it is recorded (the ack floor
// passed to Prune covers it), so nothing but liveness keeps its entries.
// Time is a fake clock; the ledger is a real Pebble store, closed and
// reopened at random points, opened with the options the gateway derives
// from the configuration. At such an instant the ledger's horizon must
// not refuse the message either (the gateway would deny a fresh message
// as expired), and a rebuild of a scaled-out partition must still read
// the record from the journal.
func TestLedgerCoversFreshnessWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(0x5eed, 0x1ed9e7))
	base := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	for i, c := range windowCases(rng) {
		name := fmt.Sprintf("%02d/ttl=%s,skew=%s,width=%s", i, c.maxTTL, c.skew, c.width)
		t.Run(name, func(t *testing.T) { checkWindow(t, rng, base, c) })
	}
}

// windowMsg is one message of a windowCase run.
type windowMsg struct {
	body   envelope.Body
	seq    uint64
	t0     time.Time // when it is recorded (a time freshness accepts it)
	replay store.ReplayKey
	idem   store.IdemKey
}

type windowEvent struct {
	at   time.Time
	kind int // evRecord, evPrune, evReopen, evProbe (the order at one instant)
	msg  int
}

const (
	evRecord = iota
	evPrune
	evReopen
	evProbe
)

func checkWindow(t *testing.T, rng *rand.Rand, base time.Time, c windowCase) {
	cfg := DefaultConfig()
	cfg.Limits.MaxTTL, cfg.Limits.Skew = c.maxTTL, c.skew
	cfg.ScaleOut = &ScaleOutConfig{Instance: "i1"} // journal_max_age at its default, the minimum
	cfg.Consumer.AckWait = 5 * time.Minute         // how far before its clock a rebuilt partition may judge
	cfg.Streams.DuplicateWindow = max(cfg.Streams.DuplicateWindow, 2*c.maxTTL+2*c.skew)
	f := cfg.Limits.Freshness()
	opt := cfg.ledgerOptions()
	opt.GenWidth = c.width
	opt.SkipVerify = true
	dir := filepath.Join(t.TempDir(), "ledger")
	led, err := store.Open(dir, opt)
	must(t, err)
	defer func() { _ = led.Close() }()

	fresh := func(m *windowMsg, at time.Time) bool {
		return f.Check(&m.body, at) == nil
	}
	// rand in [0, d]
	within := func(d time.Duration) time.Duration {
		if d <= 0 {
			return 0
		}
		return time.Duration(rng.Int64N(int64(d) + 1))
	}
	span := c.maxTTL + 2*c.skew

	var msgs []*windowMsg
	var evs []windowEvent
	for i := range 6 {
		ttl := c.maxTTL
		if i%2 == 1 {
			ttl = 1 + within(c.maxTTL-1)
		}
		issued := base.Add(within(3 * span))
		m := &windowMsg{
			body: envelope.Body{IssuedAt: issued, ExpiresAt: issued.Add(ttl)},
			seq:  uint64(i + 1),
		}
		first, last := issued.Add(-c.skew), m.body.ExpiresAt.Add(c.skew)
		switch i % 3 {
		case 0:
			m.t0 = first // the earliest a copy is accepted
		case 1:
			m.t0 = first.Add(within(last.Sub(first)))
		default:
			m.t0 = last
		}
		if !fresh(m, m.t0) {
			t.Fatalf("setup: message %d is not fresh at %v", i, m.t0)
		}
		id := fmt.Sprintf("m%d", i)
		m.replay = store.ReplayKey{Tenant: "tenant_a", Agent: "UAGENT", MessageID: id}
		m.idem = store.IdemKey{Tenant: "tenant_a", Agent: "UAGENT", Key: "k-" + id}
		msgs = append(msgs, m)
		evs = append(evs, windowEvent{at: m.t0, kind: evRecord, msg: i})
		// Probes: the edges of acceptance and of the generation the
		// entry lies in, and random instants in between.
		genEnd := time.Unix(0, (m.body.ExpiresAt.UnixNano()/int64(c.width)+1)*int64(c.width))
		probes := []time.Time{m.t0, m.body.ExpiresAt, last.Add(-1), last, last.Add(1), genEnd, genEnd.Add(-1),
			m.body.ExpiresAt.Add(DefaultConfig().Limits.Skew + 1)}
		for range 24 {
			probes = append(probes, m.t0.Add(within(last.Sub(m.t0))))
		}
		for _, p := range probes {
			if !p.Before(m.t0) {
				evs = append(evs, windowEvent{at: p, kind: evProbe, msg: i})
			}
		}
	}
	// Prunes at arbitrary instants, and right at every probe of one
	// message; a few restarts.
	for range 40 {
		evs = append(evs, windowEvent{at: base.Add(-c.skew + within(5*span)), kind: evPrune})
	}
	for _, e := range evs {
		if e.kind == evProbe && e.msg == 2 {
			evs = append(evs, windowEvent{at: e.at, kind: evPrune})
		}
	}
	for range 3 {
		evs = append(evs, windowEvent{at: base.Add(within(4 * span)), kind: evReopen})
	}
	slices.SortStableFunc(evs, func(a, b windowEvent) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.kind, b.kind))
	})

	var recorded uint64 // every recorded message is acknowledged at once
	var pruned []time.Time
	for _, e := range evs {
		switch e.kind {
		case evRecord:
			m := msgs[e.msg]
			b := led.NewBatch()
			if _, seen, err := b.Replay(m.replay, e.at); err != nil || seen {
				t.Fatalf("Replay(%s) before it was recorded = %v, %v", m.replay.MessageID, seen, err)
			}
			must(t, b.PutReplay(m.replay, store.ReplayEntry{Seq: m.seq, Expires: m.body.ExpiresAt, Decision: store.Decision{Route: store.RouteAllow}}))
			must(t, b.PutIdem(m.idem, store.IdemEntry{MessageID: m.replay.MessageID, Expires: m.body.ExpiresAt, Decision: store.Decision{Route: store.RouteAllow}}))
			must(t, b.Commit())
			must(t, led.MarkAcked([]store.ReplayKey{m.replay}, e.at))
			recorded = max(recorded, m.seq)
		case evPrune:
			if _, err := led.Prune(e.at, recorded); err != nil {
				t.Fatalf("Prune(%v) = %v", e.at, err)
			}
			pruned = append(pruned, e.at)
		case evReopen:
			must(t, led.Close())
			led, err = store.Open(dir, opt)
			must(t, err)
		case evProbe:
			m := msgs[e.msg]
			if !fresh(m, e.at) {
				continue
			}
			why := func() string {
				return fmt.Sprintf("message %d (expires_at %v, recorded at expires_at%+v) at expires_at%+v, after prunes at %d instants",
					e.msg, m.body.ExpiresAt, m.t0.Sub(m.body.ExpiresAt), e.at.Sub(m.body.ExpiresAt), len(pruned))
			}
			if hz := led.Horizon(); m.body.ExpiresAt.Before(hz) {
				t.Fatalf("%s: freshness accepts a copy but its expiry is before the ledger's horizon %v", why(), hz)
			}
			if _, seen, err := led.Replay(m.replay, e.at); err != nil || !seen {
				t.Fatalf("%s: freshness accepts a copy but Replay = %v, %v; want its entry", why(), seen, err)
			}
			b := led.NewBatch()
			_, used, err := b.Idem(m.idem, e.at)
			b.Close()
			if err != nil || !used {
				t.Fatalf("%s: freshness accepts a copy but Idem = %v, %v; want its entry", why(), used, err)
			}
			// A partition rebuilt as late as ack_wait from now may
			// judge a copy in flight at a crash as of now (recoveredNow).
			if from := e.at.Add(cfg.Consumer.AckWait).Add(-cfg.journalMaxAge()); from.After(m.t0) {
				t.Fatalf("%s: a partition rebuilt up to ack_wait (%s) later reads the journal from %v, after the record (journal_max_age %s)",
					why(), cfg.Consumer.AckWait, from, cfg.journalMaxAge())
			}
		}
	}
}

// TestReplayInsideSkewAfterExpiryDenied: with limits.skew 2m the
// freshness gate accepts a message until expires_at + 2m. A captured copy
// re-published after expires_at + 30 s (once the ledger's fixed lookback),
// with the first copy acknowledged and the ledger pruned at that instant,
// is denied replay_detected, up to the last instant freshness accepts
// it; then message_expired. The message is forwarded once.
func TestReplayInsideSkewAfterExpiryDenied(t *testing.T) {
	h := newHarness(t)
	h.cfg.Limits.Skew = 2 * time.Minute
	h.start()
	body := h.body(nil)
	expires := h.clock.Now().Add(envelope.DefaultTTL)
	first := h.send(body)
	if out := h.outputFor(first); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("first copy went to %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	c, err := h.js.Consumer(context.Background(), StreamIngress, h.cfg.Consumer.Durable)
	must(t, err)
	waitFor(t, func() bool {
		info, err := c.Info(context.Background())
		return err == nil && info.AckFloor.Stream >= first
	})
	for _, tt := range []struct {
		after time.Duration // since expires_at
		want  reason.Code
	}{
		{30*time.Second + time.Nanosecond, reason.ReplayDetected},
		{time.Minute, reason.ReplayDetected},
		{2 * time.Minute, reason.ReplayDetected},
		{2*time.Minute + time.Second, reason.MessageExpired},
	} {
		h.clock.Advance(expires.Add(tt.after).Sub(h.clock.Now()))
		// What the prune loop does, at this instant, with the first copy
		// acknowledged.
		if _, err := h.gw.ledger.Prune(h.clock.Now(), first); err != nil {
			t.Fatalf("Prune = %v", err)
		}
		seq := h.send(body)
		out := h.outputFor(seq)
		if got := reason.Code(out.Header.Get(header.Reason)); got != tt.want {
			t.Fatalf("copy at expires_at+%s went to %s, reason %q (%s); want %q",
				tt.after, out.Subject, got, out.Header.Get(header.Detail), tt.want)
		}
	}
	if n := len(h.all(StreamCap)); n != 1 {
		t.Errorf("capability outputs = %d; want 1", n)
	}
	r, err := invariant.Wait(context.Background(), h.js, 10*time.Second)
	must(t, err)
	if err := r.Err(); err != nil {
		t.Fatalf("invariant: %v", err)
	}
}

// validConfig returns a configuration Validate accepts.
func validConfig(t *testing.T) Config {
	t.Helper()
	iss, err := identity.NewIssuer()
	must(t, err)
	pub, err := iss.PublicKey()
	must(t, err)
	cfg := DefaultConfig()
	cfg.Audience, cfg.DataDir, cfg.Catalog = testAudience, "/var/lib/agentgw", "catalog.yaml"
	cfg.Keys = KeysConfig{Signing: "signing.nk", Curve: "curve.nk"}
	cfg.Tenants = map[string]TenantConfig{"tenant_a": {Issuers: []string{pub}}}
	return cfg
}

// TestValidateRefusesReplayWindow: Validate refuses every configuration
// under which some ledger record could be gone while freshness still
// accepts a copy of its message.
func TestValidateRefusesReplayWindow(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // "" means valid
	}{
		{"accept/defaults", func(*Config) {}, ""},
		{"accept/longest skew", func(c *Config) { c.Limits.Skew = 5 * time.Minute }, ""},
		{"accept/journal covering max_ttl + 2·skew + ack_wait", func(c *Config) {
			c.Limits.MaxTTL, c.Limits.Skew, c.Limits.ApprovalTTL = 30*time.Minute, 5*time.Minute, time.Minute
			c.Streams.DuplicateWindow = time.Hour
			c.ScaleOut = &ScaleOutConfig{Instance: "i1", JournalMaxAge: 41*time.Minute + 30*time.Second}
		}, ""},
		{"refuse/journal without ack_wait", func(c *Config) {
			// A partition rebuilt after a crash judges a copy in flight
			// then up to ack_wait before its clock: the record must
			// still be in the journal.
			c.Limits.MaxTTL, c.Limits.Skew, c.Limits.ApprovalTTL = 30*time.Minute, 5*time.Minute, time.Minute
			c.Streams.DuplicateWindow = time.Hour
			c.Consumer.AckWait = 5 * time.Minute
			c.ScaleOut = &ScaleOutConfig{Instance: "i1", JournalMaxAge: 41*time.Minute + 30*time.Second}
		}, "scale_out.journal_max_age"},
		{"refuse/journal shorter than max_ttl + 2·skew", func(c *Config) {
			// A message issued skew ahead of the clock is fresh until
			// max_ttl + 2·skew after it was decided; a partition rebuilt
			// later than journal_max_age after the decision misses it.
			c.Limits.MaxTTL, c.Limits.Skew, c.Limits.ApprovalTTL = 30*time.Minute, 5*time.Minute, time.Minute
			c.Streams.DuplicateWindow = time.Hour
			c.ScaleOut = &ScaleOutConfig{Instance: "i1", JournalMaxAge: 36 * time.Minute}
		}, "scale_out.journal_max_age"},
		{"refuse/skew beyond 5m", func(c *Config) { c.Limits.Skew = 5*time.Minute + time.Second }, "limits.skew"},
		{"refuse/negative skew", func(c *Config) { c.Limits.Skew = -time.Second }, "limits.skew"},
		{"refuse/max_ttl beyond 24h", func(c *Config) {
			c.Limits.MaxTTL = 24*time.Hour + time.Second
			c.Streams.DuplicateWindow = 48 * time.Hour
		}, "limits.max_ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig(t)
			tt.mod(&cfg)
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v; want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate() = %v; want an error about %s", err, tt.wantErr)
			}
		})
	}
}

// TestReplayAfterSkewRaisedDenied: the ledger prunes under one skew; the
// gateway restarts with a longer one, under which a pruned message is
// fresh again. A copy of it is refused (message_expired: its expiry is
// before the ledger's horizon, so the ledger cannot tell a replay), never
// forwarded a second time. A clock stepped back past a prune is the same
// case.
func TestReplayAfterSkewRaisedDenied(t *testing.T) {
	h := newHarness(t)
	h.cfg.Limits.MaxTTL, h.cfg.Limits.Skew = 10*time.Second, time.Second // generations of 11 s
	h.start()
	body := h.body(func(b *envelope.Builder) { b.TTL = 10 * time.Second })
	expires := h.clock.Now().Add(10 * time.Second)
	first := h.send(body)
	if out := h.outputFor(first); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("first copy went to %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	c, err := h.js.Consumer(context.Background(), StreamIngress, h.cfg.Consumer.Durable)
	must(t, err)
	waitFor(t, func() bool {
		info, err := c.Info(context.Background())
		return err == nil && info.AckFloor.Stream >= first
	})
	// Its generation ends at most 11 s after expires_at and is dead 1 s
	// later: the prune loop deletes it.
	h.clock.Advance(expires.Add(12 * time.Second).Sub(h.clock.Now()))
	st, err := h.gw.ledger.Prune(h.clock.Now(), first)
	if err != nil || st.Generations != 1 {
		t.Fatalf("Prune = %+v, %v; want the message's generation deleted", st, err)
	}
	h.stop()
	h.cfg.Limits.Skew = 30 * time.Second
	h.start()
	seq := h.send(body) // fresh again: expires_at + 12 s ≤ expires_at + 30 s
	out := h.outputFor(seq)
	if got := reason.Code(out.Header.Get(header.Reason)); got != reason.MessageExpired {
		t.Fatalf("copy after the skew was raised went to %s, reason %q (%s); want %q",
			out.Subject, got, out.Header.Get(header.Detail), reason.MessageExpired)
	}
	if n := len(h.all(StreamCap)); n != 1 {
		t.Errorf("capability outputs = %d; want 1", n)
	}
}

// TestIdempotencyKeyPrunedAtLaterClockRefused: a batch judged at an
// earlier instant than the ledger's last prune (a recovered batch, judged
// up to ack_wait before the clock; here a clock stepped back) may look up
// an idempotency key whose first request's entry the prune dropped though
// it was still live at the batch's instant. A retry of that request under
// the same key and a new message id is refused ledger_incomplete, not
// decided a second time.
func TestIdempotencyKeyPrunedAtLaterClockRefused(t *testing.T) {
	h := newHarness(t)
	h.start()
	order := func(b *envelope.Builder) { b.IdempotencyKey = "order-42" }
	// The first request expires 5 s before its generation ends, so a
	// retry judged 10 s after that expiry expires past the horizon the
	// prune below sets: only the idempotency entry can refuse it.
	width := h.cfg.ledgerOptions().GenWidth
	genEnd := time.Unix(0, (h.clock.Now().Add(envelope.DefaultTTL).UnixNano()/int64(width)+2)*int64(width))
	expires := genEnd.Add(-5 * time.Second)
	h.clock.Advance(expires.Add(-envelope.DefaultTTL).Sub(h.clock.Now()))
	first := h.send(h.body(order))
	if out := h.outputFor(first); !strings.HasPrefix(out.Subject, "agentgw.cap.") {
		t.Fatalf("first request went to %s (%s)", out.Subject, out.Header.Get(header.Reason))
	}
	c, err := h.js.Consumer(context.Background(), StreamIngress, h.cfg.Consumer.Durable)
	must(t, err)
	waitFor(t, func() bool {
		info, err := c.Info(context.Background())
		return err == nil && info.AckFloor.Stream >= first
	})
	// A prune once the first request's generation is dead...
	h.clock.Advance(genEnd.Add(h.cfg.Limits.Skew + time.Second).Sub(h.clock.Now()))
	if _, err := h.gw.ledger.Prune(h.clock.Now(), first); err != nil {
		t.Fatalf("Prune = %v", err)
	}
	// ...then a retry judged at an instant its entry was still live.
	h.clock.Advance(expires.Add(10 * time.Second).Sub(h.clock.Now()))
	out := h.outputFor(h.send(h.body(order)))
	if got := reason.Code(out.Header.Get(header.Reason)); got != reason.LedgerIncomplete && got != reason.DuplicateRequest {
		t.Fatalf("retry under the same idempotency key went to %s, reason %q (%s); want it refused", out.Subject, got, out.Header.Get(header.Detail))
	}
	if n := len(h.all(StreamCap)); n != 1 {
		t.Errorf("capability outputs = %d; want 1", n)
	}
}
