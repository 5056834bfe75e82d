package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Pebble batch representation: a 12-byte header, and per record a kind
// byte and the key and value lengths as varints.
const (
	batchHeaderLen      = 12
	batchRecordOverhead = 1 + 2*binary.MaxVarintLen32
)

var errBatchDone = fmt.Errorf("store: batch already committed or closed: %w", ErrInvalid)

// Batch stages the ledger writes of one fetch batch and commits them with
// one fsync. Its lookups see the database, the writes staged in it and
// those of the batch whose commit is still in progress (Start).
//
// Only one Batch is open at a time: NewBatch waits until the previous one
// is started, committed or closed, so two batches can never both record
// the same nonce. Always `defer b.Close()`; a Batch is not safe for
// concurrent use. The goroutine holding an open Batch should not call
// other Ledger methods: after a failed write they wait for the ledger to
// reopen, which waits for the Batch to finish.
type Batch struct {
	l       *Ledger
	r       reader
	delta   map[uint64]genMeta // per touched generation: max seq, count
	touched []uint64           // keys of delta, in insertion order
	err     error              // from NewBatch
	held    bool               // holds l.batchMu
	reading bool               // holds l.mu (read)
	// maxOutcome is the highest sequence of an outcome staged here.
	maxOutcome uint64
	done       bool
	// started: Start handed the batch to its commit goroutine, which
	// alone touches it from then on.
	started bool
}

// inflight is a started batch whose commit has not finished: its writes
// are not visible in the database yet, so the batch opened after it reads
// them from here, and commits only if this one did.
type inflight struct {
	staged  map[string]staged // read-only once started
	touched []uint64
	done    chan struct{}
	err     error // set before done is closed
}

// Commit is a started batch's commit (Batch.Start).
type Commit struct{ f *inflight }

// Wait waits for the commit to be durable, or to fail (an error wrapping
// ErrIO: nothing of the batch may be acknowledged).
func (c *Commit) Wait() error {
	<-c.f.done
	return c.f.err
}

// Done is closed when the commit has finished.
func (c *Commit) Done() <-chan struct{} { return c.f.done }

// staged is a write staged in a Batch; del marks a deletion.
type staged struct {
	v   []byte
	del bool
}

// NewBatch starts a batch, waiting for the previous one to be started or
// finished. If the ledger is closed or cannot recover from a failed write,
// every method of the returned Batch reports that error.
func (l *Ledger) NewBatch() *Batch {
	l.batchMu.Lock()
	db, err := l.acquire()
	if err != nil {
		l.batchMu.Unlock()
		return &Batch{l: l, err: err, done: true}
	}
	b := &Batch{
		l:       l,
		r:       reader{l: l, db: db, staged: make(map[string]staged)},
		delta:   make(map[uint64]genMeta),
		held:    true,
		reading: true,
	}
	// A commit still in progress is read through; one that failed is
	// not (its writes are lost) and one that succeeded is in db.
	if f := l.inflight; f != nil {
		select {
		case <-f.done:
			l.inflight = nil
		default:
			b.r.after = f
		}
	}
	return b
}

// Err is the error every call on b returns: the batch failed, or is
// done. Nil while b can be read and written.
func (b *Batch) Err() error { return b.check() }

func (b *Batch) check() error {
	if b.err != nil {
		return b.err
	}
	if b.done {
		return errBatchDone
	}
	return nil
}

// Replay returns the recorded entry for k, looking at the database and at
// the writes staged in b. It reports a copy while it is live (now ≤
// Expires + Lookback) or while its outputs are unacknowledged (neither
// MarkAcked nor an ack floor passed to Prune covers its Seq), in whichever
// generation it lies. When several copies qualify (a message id re-signed
// with another expiry) it returns the one with the lowest Seq, the first
// sighting.
//
// Record a copy only when Replay reports none: a PutReplay for a key that
// has a copy in the same generation overwrites it.
func (b *Batch) Replay(k ReplayKey, now time.Time) (ReplayEntry, bool, error) {
	if err := b.check(); err != nil {
		return ReplayEntry{}, false, err
	}
	e, _, ok, err := b.r.replay(k, now, b.extraGens())
	return e, ok, err
}

// Horizon is Ledger.Horizon.
func (b *Batch) Horizon() time.Time { return b.l.Horizon() }

// Idem returns the live entry for k (now ≤ Expires + Lookback), looking at
// the database and at the writes staged in b. With several live copies it
// returns the one in the earliest generation.
func (b *Batch) Idem(k IdemKey, now time.Time) (IdemEntry, bool, error) {
	if err := b.check(); err != nil {
		return IdemEntry{}, false, err
	}
	return b.r.idem(k, now, b.extraGens())
}

// PutReplay stages e under k, in the generation of e.Expires. e.Seq must
// be ≥ 1 and e.Expires between 1970 and 2200.
func (b *Batch) PutReplay(k ReplayKey, e ReplayEntry) error {
	if err := b.check(); err != nil {
		return err
	}
	if err := k.check(); err != nil {
		return err
	}
	if err := checkTime("expires", e.Expires); err != nil {
		return err
	}
	if e.Seq == 0 {
		return fmt.Errorf("store: replay entry without stream sequence: %w", ErrInvalid)
	}
	if err := e.Decision.check(); err != nil {
		return err
	}
	g := b.l.genOf(e.Expires)
	// The staged map keeps its own copy of the key: build it in the
	// reader's buffer.
	b.r.key = appendEntryKey(b.r.key[:0], kindReplay, g, k.Tenant, k.Agent, k.MessageID)
	b.l.filters.add(g, b.r.key)
	b.r.staged[string(b.r.key)] = staged{v: encodeReplay(e)}
	b.note(g, e.Seq)
	return nil
}

// PutIdem stages e under k, in the generation of e.Expires.
func (b *Batch) PutIdem(k IdemKey, e IdemEntry) error {
	if err := b.check(); err != nil {
		return err
	}
	if err := k.check(); err != nil {
		return err
	}
	if err := checkTime("expires", e.Expires); err != nil {
		return err
	}
	if len(e.MessageID) > maxFieldLen {
		return fmt.Errorf("store: idempotency entry message id is %d bytes: %w", len(e.MessageID), ErrInvalid)
	}
	if err := e.Decision.check(); err != nil {
		return err
	}
	g := b.l.genOf(e.Expires)
	b.r.key = appendEntryKey(b.r.key[:0], kindIdem, g, k.Tenant, k.Agent, k.Key)
	b.l.filters.add(g, b.r.key)
	b.r.staged[string(b.r.key)] = staged{v: encodeIdem(e)}
	b.note(g, 0)
	return nil
}

func (b *Batch) note(gen, seq uint64) {
	d, ok := b.delta[gen]
	if !ok {
		d.gen = gen
		b.touched = append(b.touched, gen)
	}
	d.maxSeq = max(d.maxSeq, seq)
	d.count++
	b.delta[gen] = d
}

// Commit is Start followed by Wait: it returns once the batch is durable.
func (b *Batch) Commit() error { return b.commit(false).Wait() }

// Start finishes the batch and commits its writes, with one fsync, in the
// background: the writes and the metadata of the generations they touch
// go in one Pebble batch. The next NewBatch may open at once and reads
// these writes until they are in the database; at most one commit is in
// progress (Start waits for the previous one), and a batch that read an
// unfinished commit's writes fails if that commit fails. On error
// (wrapping ErrIO) nothing of the batch may be acknowledged: the writes
// may or may not be durable, and the ledger reopens its database before
// its next use.
func (b *Batch) Start() *Commit { return b.commit(true) }

// commit is Start (background) or Commit (on the caller's goroutine,
// which keeps the batch lock until the commit ends).
func (b *Batch) commit(background bool) *Commit {
	f := &inflight{done: make(chan struct{})}
	finish := func(err error) *Commit {
		f.err = err
		close(f.done)
		return &Commit{f}
	}
	if err := b.check(); err != nil {
		return finish(err)
	}
	b.done = true
	b.r.close() // unpin memtables before writing
	if prev := b.r.after; prev != nil {
		// This batch was decided on prev's writes: it stands or falls
		// with them, and commits after them.
		<-prev.done
		if prev.err != nil {
			b.release()
			return finish(fmt.Errorf("store: a batch whose writes this one read failed: %w", prev.err))
		}
	}
	if len(b.r.staged) == 0 || !background {
		var err error
		if len(b.r.staged) > 0 {
			err = b.write()
		}
		b.release()
		return finish(err)
	}
	f.staged, f.touched = b.r.staged, b.touched
	l := b.l
	l.inflight = f // under batchMu
	// The next batch may open now; the database stays in use (l.mu read)
	// until the commit ends.
	b.held, b.started = false, true
	l.batchMu.Unlock()
	go func() {
		defer close(f.done)
		defer b.release()
		f.err = b.write()
	}()
	return &Commit{f}
}

// retainBatch is the largest Pebble batch buffer kept for reuse once its
// batch is closed (Pebble keeps 1 MiB by default): a gateway batch of
// outcomes is about a MiB or more, and allocating it anew for every batch
// was a tenth of the gateway's allocation.
const retainBatch = 8 << 20

// write builds and applies the Pebble batch (Start).
func (b *Batch) write() error {
	l := b.l
	l.wmu.Lock()
	defer l.wmu.Unlock()

	// Sized up front: a batch of outcomes is about a MiB, and growing
	// one by doubling allocated and copied it twice over.
	size := batchHeaderLen
	for k, s := range b.r.staged {
		size += len(k) + len(s.v) + batchRecordOverhead
	}
	size += len(b.delta) * (9 + 2*binary.MaxVarintLen64 + batchRecordOverhead)
	pb := b.r.db.NewBatchWithSize(size, pebble.WithMaxRetainedSizeBytes(retainBatch))
	var err error
	set := func(k, v []byte) {
		if err == nil {
			err = pb.Set(k, v, nil)
		}
	}
	for k, s := range b.r.staged {
		if s.del {
			if err == nil {
				err = pb.Delete([]byte(k), nil)
			}
			continue
		}
		set([]byte(k), s.v)
	}
	l.gmu.RLock()
	all, touched := mergeGens(l.gens, b.delta)
	l.gmu.RUnlock()
	for _, g := range touched {
		set(genKey(g.gen), encodeUvarints(g.maxSeq, g.count))
	}
	if err != nil {
		_ = pb.Close()
		return fmt.Errorf("store: stage batch: %w: %v", ErrIO, err)
	}
	if err := l.apply(pb, true); err != nil {
		return err
	}
	if b.maxOutcome > l.maxOutcome.Load() {
		l.maxOutcome.Store(b.maxOutcome) // under wmu: no lost update
	}
	l.committed.Add(uint64(size))
	l.gmu.Lock()
	l.gens = all
	l.gmu.Unlock()
	return nil
}

// Close discards an uncommitted batch and lets the next NewBatch proceed.
// It is a no-op after Start, Commit or a second Close.
func (b *Batch) Close() {
	if !b.started {
		b.release()
	}
}

func (b *Batch) release() {
	b.done = true
	if b.reading {
		b.reading = false
		b.r.close()
		b.l.mu.RUnlock()
	}
	if b.held {
		b.held = false
		b.l.batchMu.Unlock()
	}
}

// extraGens are the generations the batch's lookups probe beyond the
// ledger's: those its own writes and the unfinished commit's touch.
func (b *Batch) extraGens() []uint64 {
	if b.r.after == nil {
		return b.touched
	}
	return append(slices.Clip(b.touched), b.r.after.touched...)
}

// reader performs lookups: first in staged (nil outside a Batch), then
// through one iterator reused across lookups. The iterator is a
// consistent view from its creation; writes other than the Batch's own
// (MarkAcked, Prune) may be missed, which at worst re-emits a deduplicated
// output or finds an entry Prune was about to delete.
type reader struct {
	l      *Ledger
	db     *pebble.DB
	it     *pebble.Iterator
	staged map[string]staged
	after  *inflight // a commit in progress when the batch opened, or nil
	key    []byte
}

func (r *reader) close() {
	if r.it != nil {
		_ = r.it.Close()
		r.it = nil
	}
}

// get returns the value stored under key. The value is valid until the
// next call.
func (r *reader) get(key []byte) ([]byte, bool, error) {
	if v, ok, found := r.getStaged(key); found {
		return v, ok, nil
	}
	return r.seek(key)
}

// getEntry is get for a replay or idempotency key of generation gen:
// Pebble is not asked for a key the generation's filter has not seen.
func (r *reader) getEntry(gen uint64, key []byte) ([]byte, bool, error) {
	if v, ok, found := r.getStaged(key); found {
		return v, ok, nil
	}
	if !r.l.filters.mayHold(gen, key) {
		r.l.filtered.Add(1)
		return nil, false, nil
	}
	r.l.probed.Add(1)
	return r.seek(key)
}

// getStaged looks key up in the batch's writes and the unfinished
// commit's; found is false when neither has it.
func (r *reader) getStaged(key []byte) (v []byte, ok, found bool) {
	if s, ok := r.staged[string(key)]; ok {
		return s.v, !s.del, true
	}
	if r.after != nil {
		if s, ok := r.after.staged[string(key)]; ok {
			return s.v, !s.del, true
		}
	}
	return nil, false, false
}

// seek looks key up in the database.
func (r *reader) seek(key []byte) ([]byte, bool, error) {
	if r.it == nil {
		// UseL6Filters: db.Get and plain iterators skip the bloom filters of
		// the bottom level, where a compacted ledger lives.
		it, err := r.db.NewIter(&pebble.IterOptions{UseL6Filters: true})
		if err != nil {
			return nil, false, readError("ledger", err)
		}
		r.it = it
	}
	if !r.it.SeekPrefixGE(key) {
		if err := r.it.Error(); err != nil {
			return nil, false, readError("ledger", err)
		}
		return nil, false, nil
	}
	if !bytes.Equal(r.it.Key(), key) {
		return nil, false, nil
	}
	v, err := r.it.ValueAndErr()
	if err != nil {
		return nil, false, readError("ledger", err)
	}
	return v, true, nil
}

// gensFor returns the generations to probe at now, in ascending order,
// including extra (generations staged in the batch), and the ack floor.
func (r *reader) gensFor(now time.Time, extra []uint64, buf []uint64) ([]uint64, uint64) {
	gens, floor := r.l.searchGens(now, buf)
	n := len(gens)
	for _, g := range extra {
		if !slices.Contains(gens[:n], g) && !slices.Contains(gens[n:], g) {
			gens = append(gens, g)
		}
	}
	if len(gens) > n {
		slices.Sort(gens)
	}
	return gens, floor
}

func (l *Ledger) live(expires, now time.Time) bool {
	return !now.After(expires.Add(l.lookback))
}

// replay implements Batch.Replay and also returns the copy's generation.
func (r *reader) replay(k ReplayKey, now time.Time, extra []uint64) (ReplayEntry, uint64, bool, error) {
	if err := k.check(); err != nil {
		return ReplayEntry{}, 0, false, err
	}
	var buf [8]uint64
	gens, floor := r.gensFor(now, extra, buf[:0])
	var best ReplayEntry
	var bestGen uint64
	found := false
	for _, g := range gens {
		r.key = appendEntryKey(r.key[:0], kindReplay, g, k.Tenant, k.Agent, k.MessageID)
		v, ok, err := r.getEntry(g, r.key)
		if err != nil {
			return ReplayEntry{}, 0, false, err
		}
		if !ok {
			continue
		}
		e, err := decodeReplay(v)
		if err != nil {
			return ReplayEntry{}, 0, false, err
		}
		if !r.l.live(e.Expires, now) && (e.Acked || e.Seq <= floor) {
			continue // dead and acknowledged: as good as pruned
		}
		if !found || e.Seq < best.Seq {
			best, bestGen, found = e, g, true
		}
	}
	return best, bestGen, found, nil
}

func (r *reader) idem(k IdemKey, now time.Time, extra []uint64) (IdemEntry, bool, error) {
	if err := k.check(); err != nil {
		return IdemEntry{}, false, err
	}
	var buf [8]uint64
	gens, _ := r.gensFor(now, extra, buf[:0])
	for _, g := range gens {
		r.key = appendEntryKey(r.key[:0], kindIdem, g, k.Tenant, k.Agent, k.Key)
		v, ok, err := r.getEntry(g, r.key)
		if err != nil {
			return IdemEntry{}, false, err
		}
		if !ok {
			continue
		}
		e, err := decodeIdem(v)
		if err != nil {
			return IdemEntry{}, false, err
		}
		if r.l.live(e.Expires, now) {
			return e, true, nil
		}
	}
	return IdemEntry{}, false, nil
}

// Replay is Batch.Replay without a batch: a read-only lookup, safe to call
// concurrently with everything else.
func (l *Ledger) Replay(k ReplayKey, now time.Time) (ReplayEntry, bool, error) {
	db, err := l.acquire()
	if err != nil {
		return ReplayEntry{}, false, err
	}
	defer l.mu.RUnlock()
	r := reader{l: l, db: db}
	defer r.close()
	e, _, ok, err := r.replay(k, now, nil)
	return e, ok, err
}
