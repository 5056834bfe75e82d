package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/agentgw/agentgw/store"
)

// The gateway's defaults (gateway/config.go DefaultConfig): the ledger is
// opened with GenWidth = MaxTTL + Skew and Lookback = Skew
// (Config.ledgerOptions).
const (
	maxTTL = 5 * time.Minute
	skew   = 30 * time.Second
	// pruneInterval is gateway/maintain.go's: PruneOutcomes and Prune run
	// every 30 s with the consumers' ack floor.
	pruneInterval = 30 * time.Second
)

// config is one measurement.
type config struct {
	Dir          string // parent of the ledgers (a fresh temp dir inside, removed at the end)
	Messages     int    // ingress messages written to the measured ledger
	Batch        int    // messages per ledger Batch (one synced commit each)
	OutcomeBytes int    // size of each message's recorded outputs
	KeepOutcomes bool   // never PruneOutcomes (an ack floor that does not move)
	Lookups      int    // lookups of each kind (replay/idem × present/absent)
	PruneSmall   int    // messages in the second ledger, for the prune comparison
	CacheBytes   int64  // store.Options.CacheBytes; 0 is the store default
	MemTable     uint64 // store.Options.MemTableBytes; the gateway's by default
}

// phase is the timing of one part of the run.
type phase struct {
	Took time.Duration
	N    int // operations
}

func (p phase) per() time.Duration {
	if p.N == 0 {
		return 0
	}
	return p.Took / time.Duration(p.N)
}

// pruneRun is one Prune of a ledger whose every entry has expired.
type pruneRun struct {
	Messages int
	Stats    store.PruneStats
	Took     time.Duration // Prune
	Outcomes time.Duration // PruneOutcomes (kept-outcomes runs; one range deletion)
	// Gone: old entries were no longer found after Prune, with the lookup
	// made at a time they were live (so only deleted data can explain it).
	Gone bool
}

type result struct {
	Messages int
	Write    phase // per message: 3 lookups, 5 staged puts, 1/Batch synced commit
	Lookup   phase // replay/idem × present/absent, in read-only Batches

	ReplayHits, ReplayAbsentHits int
	IdemHits, IdemAbsentHits     int
	OutcomeHits, OutcomeChecked  int

	PeakRSS, RSS     uint64 // bytes, VmHWM and VmRSS after the lookups
	RSSAnon, RSSFile uint64 // RSS split: anonymous memory, mapped files (the binary)
	EndPeakRSS       uint64 // VmHWM at the end, including the prune phase and the second ledger
	Go               runtime.MemStats
	Mem              store.MemoryStats
	Ledger           store.Stats // after the lookups

	Prune []pruneRun // the measured ledger, then the small one
}

// t0 is the simulated start; any fixed time works.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

// window is the simulated time the messages arrive over: one max TTL, so
// with TTL = MaxTTL every entry written is still live at the end.
const window = maxTTL

func (c config) issued(i int) time.Time {
	return t0.Add(time.Duration(int64(window) * int64(i) / int64(c.Messages)))
}

// Keys look like the gateway's: tenant, the agent's public U key (56
// chars) and a 32-hex-char message id, which is also the idempotency key
// (envelope.Builder's default).
const agents = 64

func agentKey(i int) string {
	h := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("agent"), uint64(i%agents)))
	return "U" + strings.ToUpper(hex.EncodeToString(h[:]))[:55]
}

func msgID(domain string, i int) string {
	h := sha256.Sum256(binary.BigEndian.AppendUint64([]byte(domain), uint64(i)))
	return hex.EncodeToString(h[:16])
}

func replayKey(i int) store.ReplayKey {
	return store.ReplayKey{Tenant: "tenant_a", Agent: agentKey(i), MessageID: msgID("m", i)}
}

func idemKey(i int) store.IdemKey {
	return store.IdemKey{Tenant: "tenant_a", Agent: agentKey(i), Key: msgID("m", i)}
}

func absentReplayKey(i int) store.ReplayKey {
	return store.ReplayKey{Tenant: "tenant_a", Agent: agentKey(i), MessageID: msgID("absent", i)}
}

func absentIdemKey(i int) store.IdemKey {
	return store.IdemKey{Tenant: "tenant_a", Agent: agentKey(i), Key: msgID("absent", i)}
}

// decision is an allow as gateway/batch.go finish records it.
func decision(i int) store.Decision {
	return store.Decision{
		Route: store.RouteAllow, Target: "kb.search", Capability: "read",
		PolicyIDs: []string{"policy.cedar/permit-kb-read"}, PolicyVersion: "7c4a8d09ca3762af",
		OutputMsgID: "agw-" + msgID("out", i),
	}
}

// outcome is a stand-in for gateway/outputs.go encodeOutputs: hex text
// that varies per message, so compression does not flatter the ledger
// (headers and JSON compress about as well).
func outcome(seq uint64, size int) []byte {
	const digits = "0123456789abcdef"
	b := make([]byte, size)
	x := seq*0x9e3779b97f4a7c15 + 1
	for i := range b {
		if i%16 == 0 { // splitmix64
			x += 0x9e3779b97f4a7c15
			z := x
			z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
			z = (z ^ z>>27) * 0x94d049bb133111eb
			x = z ^ z>>31
		}
		b[i] = digits[(x>>(4*(i%16)))&15]
	}
	return b
}

func digest(domain string, i int) [32]byte {
	return sha256.Sum256(binary.BigEndian.AppendUint64([]byte(domain), uint64(i)))
}

// open opens a ledger with the gateway's options (gateway/partition.go
// Config.ledgerOptions).
func (c config) open(dir string) (*store.Ledger, error) {
	return store.Open(dir, store.Options{GenWidth: maxTTL + skew, Lookback: skew, CacheBytes: c.CacheBytes, MemTableBytes: c.MemTable})
}

// fill writes c.Messages messages the way the gateway does per fetch
// batch: ledgerGate (Outcome, Replay, provisional PutReplay, Idem,
// provisional PutIdem), then finish (PutOutcome, PutReplay, PutIdem), then
// one synced Commit. Every pruneInterval of simulated time it runs the
// gateway's maintenance with an ack floor at the last committed sequence.
// It returns the simulated time of the last batch.
func (c config) fill(l *store.Ledger, n int, keep bool) (time.Time, error) {
	var now time.Time
	lastMaint := t0
	for start := 0; start < n; start += c.Batch {
		now = c.issued(start)
		b := l.NewBatch()
		for i := start; i < min(start+c.Batch, n); i++ {
			seq := uint64(i + 1)
			exp := c.issued(i).Add(maxTTL)
			rk, ik := replayKey(i), idemKey(i)
			if _, ok, err := b.Outcome(seq); err != nil || ok {
				b.Close()
				return now, fmt.Errorf("outcome of new seq %d: found=%v err=%v", seq, ok, err)
			}
			if _, ok, err := b.Replay(rk, now); err != nil || ok {
				b.Close()
				return now, fmt.Errorf("replay of new message %d: found=%v err=%v", i, ok, err)
			}
			if err := b.PutReplay(rk, store.ReplayEntry{Seq: seq, Expires: exp, BodyDigest: digest("body", i)}); err != nil {
				b.Close()
				return now, err
			}
			if _, ok, err := b.Idem(ik, now); err != nil || ok {
				b.Close()
				return now, fmt.Errorf("idem of new message %d: found=%v err=%v", i, ok, err)
			}
			if err := b.PutIdem(ik, store.IdemEntry{PayloadDigest: digest("payload", i), MessageID: rk.MessageID, Expires: exp}); err != nil {
				b.Close()
				return now, err
			}
			d := decision(i)
			if err := b.PutOutcome(seq, outcome(seq, c.OutcomeBytes)); err != nil {
				b.Close()
				return now, err
			}
			if err := b.PutReplay(rk, store.ReplayEntry{Seq: seq, Expires: exp, BodyDigest: digest("body", i), Decision: d}); err != nil {
				b.Close()
				return now, err
			}
			if err := b.PutIdem(ik, store.IdemEntry{PayloadDigest: digest("payload", i), MessageID: rk.MessageID, Expires: exp, Decision: d}); err != nil {
				b.Close()
				return now, err
			}
		}
		if err := b.Commit(); err != nil {
			return now, err
		}
		if now.Sub(lastMaint) >= pruneInterval {
			lastMaint = now
			floor := uint64(min(start+c.Batch, n))
			if !keep {
				if err := l.PruneOutcomes(floor); err != nil {
					return now, err
				}
			}
			if _, err := l.Prune(now, floor); err != nil {
				return now, err
			}
		}
	}
	return now, nil
}

// lookups runs c.Lookups lookups of each kind at now, c.Batch per
// read-only Batch as the ledger gate does, and checks what they return.
func (c config) lookups(l *store.Ledger, now time.Time, r *result) error {
	n := c.Messages
	pick := func(k int) int { return int((uint64(k)*2654435761 + 12345) % uint64(n)) }
	start := time.Now()
	ops := 0
	for k0 := 0; k0 < c.Lookups; k0 += c.Batch {
		b := l.NewBatch()
		for k := k0; k < min(k0+c.Batch, c.Lookups); k++ {
			i := pick(k)
			e, ok, err := b.Replay(replayKey(i), now)
			if err != nil {
				b.Close()
				return err
			}
			if ok && e.Seq == uint64(i+1) && e.Decision.OutputMsgID == decision(i).OutputMsgID {
				r.ReplayHits++
			}
			if _, ok, err := b.Replay(absentReplayKey(k), now); err != nil {
				b.Close()
				return err
			} else if ok {
				r.ReplayAbsentHits++
			}
			ie, ok, err := b.Idem(idemKey(i), now)
			if err != nil {
				b.Close()
				return err
			}
			if ok && ie.MessageID == msgID("m", i) && ie.PayloadDigest == digest("payload", i) {
				r.IdemHits++
			}
			if _, ok, err := b.Idem(absentIdemKey(k), now); err != nil {
				b.Close()
				return err
			} else if ok {
				r.IdemAbsentHits++
			}
			ops += 4
		}
		b.Close()
	}
	r.Lookup = phase{Took: time.Since(start), N: ops}
	// Outcomes: every outcome is either pruned (at or below the last ack
	// floor) or intact.
	b := l.NewBatch()
	defer b.Close()
	for k := 0; k < min(c.Lookups, 1000); k++ {
		seq := uint64(pick(k) + 1)
		v, ok, err := b.Outcome(seq)
		if err != nil {
			return err
		}
		r.OutcomeChecked++
		if ok && bytes.Equal(v, outcome(seq, c.OutcomeBytes)) {
			r.OutcomeHits++
		}
	}
	return nil
}

// pruneAll prunes l at a time when every entry is dead, with an ack floor
// covering every message, and checks the entries are gone.
func (c config) pruneAll(l *store.Ledger, n int, keep bool) (pruneRun, error) {
	pr := pruneRun{Messages: n}
	later := c.issued(n).Add(maxTTL + 2*(maxTTL+skew) + skew)
	if keep {
		start := time.Now()
		if err := l.PruneOutcomes(uint64(n)); err != nil {
			return pr, err
		}
		pr.Outcomes = time.Since(start)
	}
	// Warm up: a Prune with nothing to delete (the gateway's usual one).
	if _, err := l.Prune(c.issued(n), 0); err != nil {
		return pr, err
	}
	start := time.Now()
	st, err := l.Prune(later, uint64(n))
	pr.Took = time.Since(start)
	if err != nil {
		return pr, err
	}
	pr.Stats = st
	// A lookup at a time the old entries were live only probes generations
	// the ledger knows, so write one new entry into each old generation
	// (the first and the last message's expiry) and look the old ones up:
	// only a deleted range explains a miss.
	b := l.NewBatch()
	for j, i := range []int{0, n - 1} {
		exp := c.issued(i).Add(maxTTL)
		if err := b.PutReplay(absentReplayKey(-1-j), store.ReplayEntry{Seq: uint64(n + 1 + j), Expires: exp}); err != nil {
			b.Close()
			return pr, err
		}
	}
	if err := b.Commit(); err != nil {
		return pr, err
	}
	pr.Gone = true
	for _, i := range []int{0, n / 2, n - 1} {
		_, ok, err := l.Replay(replayKey(i), c.issued(i))
		if err != nil {
			return pr, err
		}
		if ok {
			pr.Gone = false
		}
	}
	if _, ok, err := l.Replay(absentReplayKey(-1), c.issued(0)); err != nil || !ok {
		return pr, fmt.Errorf("entry written after Prune not found: %v", err)
	}
	return pr, nil
}

// run performs the measurement; logf reports progress.
func run(c config, logf func(string, ...any)) (*result, error) {
	if c.Messages < 1 || c.Batch < 1 || c.OutcomeBytes < 1 {
		return nil, errors.New("messages, batch and outcome bytes must be ≥ 1")
	}
	dir, err := os.MkdirTemp(c.Dir, "ledgermem-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	r := &result{Messages: c.Messages}

	l, err := c.open(filepath.Join(dir, "big"))
	if err != nil {
		return nil, err
	}
	defer l.Close()
	logf("writing %d messages (batches of %d, synced commits)", c.Messages, c.Batch)
	start := time.Now()
	last, err := c.fill(l, c.Messages, c.KeepOutcomes)
	if err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	r.Write = phase{Took: time.Since(start), N: c.Messages}
	now := last.Add(time.Second) // every entry still live: expiry ≥ issue + MaxTTL
	logf("lookups at %s", now.Sub(t0))
	if err := c.lookups(l, now, r); err != nil {
		return nil, fmt.Errorf("lookups: %w", err)
	}
	r.Ledger = l.Stats()
	if r.Mem, err = l.Memory(); err != nil {
		return nil, err
	}
	runtime.ReadMemStats(&r.Go)
	r.PeakRSS, r.RSS = procStatus("VmHWM"), procStatus("VmRSS")
	r.RSSAnon, r.RSSFile = procStatus("RssAnon"), procStatus("RssFile")

	// Pruning: everything written expires; compare with a small ledger.
	logf("pruning %d messages", c.Messages)
	pr, err := c.pruneAll(l, c.Messages, c.KeepOutcomes)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	r.Prune = append(r.Prune, pr)
	if c.PruneSmall > 0 {
		small := c
		small.Messages = c.PruneSmall
		ls, err := small.open(filepath.Join(dir, "small"))
		if err != nil {
			return nil, err
		}
		defer ls.Close()
		logf("writing and pruning %d messages", small.Messages)
		if _, err := small.fill(ls, small.Messages, c.KeepOutcomes); err != nil {
			return nil, fmt.Errorf("write small: %w", err)
		}
		pr, err := small.pruneAll(ls, small.Messages, c.KeepOutcomes)
		if err != nil {
			return nil, fmt.Errorf("prune small: %w", err)
		}
		r.Prune = append(r.Prune, pr)
	}
	r.EndPeakRSS = procStatus("VmHWM")
	return r, nil
}

// procStatus returns a kB field of /proc/self/status in bytes (0 where
// there is no /proc).
func procStatus(field string) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, rest, ok := strings.Cut(s.Text(), ":")
		if !ok || name != field {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}
