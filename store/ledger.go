package store

import (
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/rs/zerolog"
)

// Defaults for Options' zero values.
const (
	DefaultCacheBytes = 16 << 20
	DefaultGenWidth   = 330 * time.Second
)

// MaxGenWidth bounds Options.GenWidth: generation bounds are nanoseconds
// in a uint64 and must stay below maxTime plus one generation, so a width
// of decades would wrap and make Prune delete live entries. A generation
// groups entries of one freshness window; a week is far above any.
const MaxGenWidth = 7 * 24 * time.Hour

// Options configures a Ledger. The zero value is usable.
type Options struct {
	// FS is the filesystem; nil means vfs.Default, with the ledger's
	// directories made 0700 and its files 0600 (a ledger holds held
	// requests' bodies in clear), and an existing ledger open to its
	// group or others tightened at Open. Tests pass vfs.NewCrashableMem
	// or an errorfs wrapper.
	FS vfs.FS
	// CacheBytes is the block cache size in bytes; 0 means 16 MiB. The
	// gateway's lookups are mostly of absent keys and need the tables'
	// bloom filters and index blocks cached, a few MiB for 1M live
	// messages: 8, 16, 32 and 64 MiB gave the same write and lookup times
	// with 1M live messages (make ledger-mem). Pebble charges
	// its memtables to the block cache, so the cache the ledger creates is
	// CacheBytes plus room for the memtables (see pebbleCacheBytes).
	CacheBytes int64
	// MemTableBytes is the memtable size; 0 means Pebble's default (4 MiB).
	// Recorded outcomes live only until their ingress message is
	// acknowledged: a memtable that outlives them lets the flush drop
	// them (covered by the prune's range deletion) instead of writing and
	// compacting them.
	MemTableBytes uint64
	// GenWidth is the span of expiry times one generation holds; 0 means
	// 330 s (max TTL 5 m + skew 30 s), so a lookup probes 2–3 generations.
	// It is fixed when the ledger is created: an existing ledger keeps its
	// stored width (a different value here is logged and ignored). It
	// decides only how entries are grouped, never how long one is live.
	GenWidth time.Duration
	// Lookback is how long after its expires_at an entry stays live: it is
	// found by lookups and kept by Prune until expires_at + Lookback
	// inclusive. Zero means no lookback (live until expires_at); there is
	// no default, because the right value is the caller's: the gateway
	// passes the grace of its freshness rule (the skew), so an entry is
	// live at every instant a copy of its message is fresh. An entry whose
	// outputs are not yet acknowledged is found and kept for longer (see
	// Batch.Replay).
	Lookback time.Duration
	// Logger receives Pebble's messages (info at debug level). The zero
	// value logs nothing. Nothing secret reaches it: keys hold tenant,
	// agent and message ids only.
	Logger zerolog.Logger
	// SkipVerify skips the full checksum scan at Open. With it, damage
	// inside a table surfaces as ErrCorrupt on the first read that hits it
	// rather than at Open. The scan reads the whole store once.
	SkipVerify bool

	// noFilters turns the generation filters off (tests compare answers
	// with and without them).
	noFilters bool
}

func (o Options) withDefaults() Options {
	if o.FS == nil {
		o.FS = defaultFS
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.GenWidth == 0 {
		o.GenWidth = DefaultGenWidth
	}
	return o
}

// Pebble's defaults for the memtables, set explicitly so that the cache
// arithmetic below stays true.
const (
	pebbleMemTableBytes     = 4 << 20
	memTableStopWritesLimit = 2
)

// L0 compaction. Each memtable flush writes L0 tables of the entries of
// the generations being written, and every such table overlaps the whole
// of those generations in the level below, because message ids are
// random: an L0 compaction rewrites all of it. Flushes come often, since
// outcomes fill the memtable before their prune deletes them. Pebble
// compacts L0 once its sublevels reach half the threshold: 2 with its
// default of 4, 8 here, so that each rewrite carries four times the new
// entries. Most lookups never reach Pebble (the generations' filters,
// filter.go); those that do check each L0 table's bloom filter. Writes
// stall at three times the threshold, as with Pebble's defaults (4 and
// 12).
const (
	l0CompactionThreshold = 16
	l0StopWritesThreshold = 3 * l0CompactionThreshold
)

func (o Options) memTableBytes() uint64 {
	if o.MemTableBytes == 0 {
		return pebbleMemTableBytes
	}
	return o.MemTableBytes
}

// pebbleCacheBytes is the size of the cache handed to Pebble. Pebble
// reserves every live memtable's size in the block cache; with a cache no
// larger than the memtables (64 MiB against two 32 MiB memtables, the
// gateway's settings until this was measured) the cache's target size is
// zero and it keeps no block at all: every lookup read and checksummed
// each table's bloom filter from the file. Reserving room for the most
// memtables Pebble allows before it stalls writes leaves CacheBytes for
// blocks.
func (o Options) pebbleCacheBytes() int64 {
	return o.CacheBytes + int64(o.memTableBytes())*memTableStopWritesLimit
}

// Validate reports every problem with o at once.
func (o Options) Validate() error {
	var errs []error
	if o.CacheBytes < 0 {
		errs = append(errs, fmt.Errorf("store: CacheBytes %d < 0: %w", o.CacheBytes, ErrInvalid))
	}
	if o.GenWidth != 0 && (o.GenWidth < time.Second || o.GenWidth > MaxGenWidth) {
		errs = append(errs, fmt.Errorf("store: GenWidth %v outside [1s, %v]: %w", o.GenWidth, MaxGenWidth, ErrInvalid))
	}
	if o.Lookback < 0 {
		errs = append(errs, fmt.Errorf("store: Lookback %v < 0: %w", o.Lookback, ErrInvalid))
	}
	return errors.Join(errs...)
}

// Ledger is the replay and idempotency ledger. All methods are safe for
// concurrent use; at most one Batch is open at a time (NewBatch waits).
type Ledger struct {
	dir      string
	opt      Options
	width    uint64 // generation width in ns, as stored in the ledger
	lookback time.Duration
	log      zerolog.Logger
	cache    *pebble.Cache
	lock     *pebble.Lock // held from Open to Close, across reopens

	// batchMu is held by the open Batch from NewBatch to Start or Close,
	// so a lookup never misses a write staged by a concurrent batch.
	batchMu sync.Mutex
	// inflight is the last started batch (guarded by batchMu); while its
	// commit runs, the next batch reads its writes from it.
	inflight *inflight

	// mu guards db and closed. Every use of db holds it for reading; a
	// reopen after a failed write holds it for writing.
	mu     sync.RWMutex
	db     *pebble.DB
	closed bool
	broken atomic.Bool // a write failed: reopen before the next use

	corruptions atomic.Uint64 // corrupt blocks Pebble reported

	// wmu orders the read-modify-write paths: Batch.Commit (generation
	// metadata), MarkAcked and Prune.
	wmu sync.Mutex

	// filters are the generations' key filters (filter.go), replaced
	// with the database (guarded by mu like db).
	filters *genFilters
	// filtered and probed count the generation probes of replay and
	// idempotency lookups a filter answered and those Pebble did.
	filtered, probed atomic.Uint64

	// gmu guards the in-memory mirror of the generation metadata.
	gmu           sync.RWMutex
	gens          []genMeta // sorted by gen
	ackFloor      uint64    // highest ack floor passed to Prune
	horizon       uint64    // Horizon in ns since the epoch; 0: nothing pruned
	markerHorizon uint64    // markers: the latest pruned marker's message expiry + 1 ns; 0: none pruned
	isNew         bool      // New
	lost          uint64    // LostBefore in ns since the epoch; 0: nothing

	// maxOutcome bounds the sequences with a recorded outcome (read at
	// open, raised by every commit), so a first delivery needs no lookup.
	maxOutcome atomic.Uint64
	// committed counts the bytes of the batches committed since Open.
	committed atomic.Uint64
	// outcomeFloor is the highest ack floor PruneOutcomes was given since
	// Open: every sequence at or below it was acknowledged.
	outcomeFloor atomic.Uint64
}

// Committed returns the bytes batches have committed since Open: how fast
// the memtable fills. The gateway prunes outcomes when a fraction of a
// memtable has been written, so that they are deleted before the flush.
func (l *Ledger) Committed() uint64 { return l.committed.Load() }

// Open opens the ledger in dir, creating it when dir is missing or empty.
// A directory that holds anything else than a readable ledger yields an
// error wrapping ErrCorrupt: the ledger never starts empty over a damaged
// store. Unless opt.SkipVerify, every table's checksums are verified.
func Open(dir string, opt Options) (*Ledger, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	if err := opt.FS.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("store: create %s: %w: %v", dir, ErrIO, err)
	}
	if opt.FS == defaultFS {
		tighten(dir, opt.Logger)
	}
	// Lock first: a second Open of the same directory (this process or
	// another) is then a clear ErrLocked, not a confusing Pebble error.
	lock, err := pebble.LockDirectory(dir, opt.FS)
	if err != nil {
		return nil, fmt.Errorf("store: lock %s: %w: %v", dir, ErrLocked, err)
	}
	fresh, err := isFresh(opt.FS, dir)
	if err != nil {
		_ = lock.Close()
		return nil, err
	}
	l := &Ledger{
		dir:      dir,
		opt:      opt,
		width:    uint64(opt.GenWidth),
		lookback: opt.Lookback,
		log:      opt.Logger,
		cache:    pebble.NewCache(opt.pebbleCacheBytes()),
		lock:     lock,
	}
	if err := l.open(fresh, !opt.SkipVerify); err != nil {
		l.cache.Unref()
		_ = lock.Close()
		return nil, err
	}
	return l, nil
}

// isFresh reports whether dir holds nothing but Pebble's lock file.
func isFresh(fsys vfs.FS, dir string) (bool, error) {
	names, err := fsys.List(dir)
	if err != nil {
		return false, fmt.Errorf("store: list %s: %w: %v", dir, ErrIO, err)
	}
	for _, n := range names {
		if n != "LOCK" {
			return false, nil
		}
	}
	return true, nil
}

// open opens Pebble, checks or writes the format record and loads the
// generation metadata. On error the database is closed again.
func (l *Ledger) open(fresh, verify bool) error {
	po := &pebble.Options{
		FS:                          l.opt.FS,
		Cache:                       l.cache,
		Comparer:                    ledgerComparer,
		FormatMajorVersion:          pebble.FormatNewest,
		Logger:                      pebbleLogger{l.log},
		Lock:                        l.lock,
		ErrorIfExists:               fresh,
		ErrorIfNotExists:            !fresh,
		MemTableSize:                l.opt.memTableBytes(),
		MemTableStopWritesThreshold: memTableStopWritesLimit,
		L0CompactionThreshold:       l0CompactionThreshold,
		L0StopWritesThreshold:       l0StopWritesThreshold,
		EventListener: &pebble.EventListener{
			// Pebble's default exits the process on a corrupt block. The read
			// that hit it fails with a corruption error instead, which the
			// ledger reports as ErrCorrupt: the gateway fails closed for the
			// messages concerned and the operator is told here.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				l.corruptions.Add(1)
				l.log.Error().Str("path", info.Path).Bool("remote", info.IsRemote).
					Err(info.Details).Msg("store: corrupt data in the ledger")
			},
			BackgroundError: func(err error) {
				l.log.Error().Err(err).Msg("store: pebble background error")
			},
		},
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(l.dir, po)
	if err != nil {
		return openError(l.dir, fresh, err)
	}
	fail := func(err error) error {
		_ = db.Close()
		return err
	}
	if fresh {
		b := db.NewBatch()
		err := b.Set(formatKey, encodeUvarints(l.width), nil)
		if err == nil {
			err = b.Set(newKey, nil, nil)
		}
		if err == nil {
			err = b.Commit(pebble.Sync)
		}
		_ = b.Close()
		if err != nil {
			return fail(fmt.Errorf("store: create %s: %w: %v", l.dir, ErrIO, err))
		}
	} else {
		width, err := readFormat(db)
		if err != nil {
			return fail(fmt.Errorf("store: open %s: %w", l.dir, err))
		}
		if width != l.width && time.Duration(width) != time.Duration(l.opt.GenWidth) {
			l.log.Info().Dur("stored", time.Duration(width)).Dur("configured", l.opt.GenWidth).
				Msg("store: keeping the ledger's generation width")
		}
		l.width = width
	}
	if verify {
		if err := db.CheckLevels(nil); err != nil {
			return fail(fmt.Errorf("store: verify %s: %w: %v", l.dir, ErrCorrupt, err))
		}
	}
	gens, err := loadGens(db)
	if err != nil {
		return fail(fmt.Errorf("store: open %s: %w", l.dir, err))
	}
	horizon, err := readHorizon(db, horizonKey)
	if err != nil {
		return fail(fmt.Errorf("store: open %s: %w", l.dir, err))
	}
	markerHorizon, err := readHorizon(db, markerHorizonKey)
	if err != nil {
		return fail(fmt.Errorf("store: open %s: %w", l.dir, err))
	}
	last, err := lastOutcome(db)
	if err != nil {
		return fail(fmt.Errorf("store: open %s: %w", l.dir, err))
	}
	isNew, lost, err := readLost(db)
	if err != nil {
		return fail(fmt.Errorf("store: open %s: %w", l.dir, err))
	}
	l.maxOutcome.Store(last)
	l.db = db
	l.filters = newGenFilters(gens)
	l.filters.off = l.opt.noFilters
	l.gmu.Lock()
	l.gens = gens
	l.horizon, l.markerHorizon = horizon, markerHorizon
	l.isNew, l.lost = isNew, lost
	l.gmu.Unlock()
	return nil
}

// readHorizon reads a horizon record (key: the horizon's or the marker
// horizon's); a ledger never pruned has none.
func readHorizon(db *pebble.DB, key []byte) (uint64, error) {
	v, c, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, readError("horizon", err)
	}
	defer c.Close()
	vs, err := decodeUvarints("horizon", v, 1)
	if err != nil {
		return 0, err
	}
	return vs[0], nil
}

// Horizon is the earliest expiry the ledger still answers for: Prune has
// deleted only generations whose entries all expire before it, so a
// replay or idempotency entry expiring at or after Horizon is found
// while it is live, and one expiring before it may be gone — a lookup
// for such a message cannot tell a replay from a first sighting. It
// only rises, survives restarts, and is the zero time until Prune first
// deletes a generation.
//
// With an unchanged Lookback and a clock that does not step back,
// Horizon ≤ now − Lookback at every lookup: it only matters when the
// Lookback was raised since a prune (the ledger reopened with a longer
// one) or the clock stepped back past a prune. Safe for concurrent use.
func (l *Ledger) Horizon() time.Time {
	l.gmu.RLock()
	h := l.horizon
	l.gmu.RUnlock()
	return nsTime(h)
}

// nsTime is a time stored as nanoseconds since the epoch, in UTC; 0 is
// the zero time (none stored).
func nsTime(ns uint64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns)).UTC()
}

// openError translates a pebble.Open error. On an existing store anything
// but a permission problem means the store cannot be trusted.
func openError(dir string, fresh bool, err error) error {
	if fresh || errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("store: open %s: %w: %v", dir, ErrIO, err)
	}
	return fmt.Errorf("store: open %s: %w: %v", dir, ErrCorrupt, err)
}

func readFormat(db *pebble.DB) (uint64, error) {
	v, c, err := db.Get(formatKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, fmt.Errorf("no format record (not a ledger, or damaged): %w", ErrCorrupt)
	}
	if err != nil {
		return 0, readError("format record", err)
	}
	defer c.Close()
	vs, err := decodeUvarints("format record", v, 1)
	if err != nil {
		return 0, err
	}
	if vs[0] < uint64(time.Second) || vs[0] > uint64(MaxGenWidth) {
		return 0, fmt.Errorf("format record: generation width %d: %w", vs[0], ErrCorrupt)
	}
	return vs[0], nil
}

// readError translates an error from a Pebble read.
func readError(what string, err error) error {
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("store: read %s: %w: %v", what, ErrCorrupt, err)
	}
	return fmt.Errorf("store: read %s: %w: %v", what, ErrIO, err)
}

// Close closes the ledger, waiting for an open Batch to finish. It returns
// ErrClosed when called twice.
func (l *Ledger) Close() error {
	l.batchMu.Lock()
	defer l.batchMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	l.closed = true
	var err error
	if l.db != nil && !l.broken.Load() {
		if cerr := l.db.Close(); cerr != nil {
			err = fmt.Errorf("store: close: %w: %v", ErrIO, cerr)
		}
	} else if l.db != nil {
		_ = l.db.Close() // reports the write failure already returned
	}
	l.db = nil
	l.cache.Unref()
	if lerr := l.lock.Close(); lerr != nil && err == nil {
		err = fmt.Errorf("store: unlock: %w: %v", ErrIO, lerr)
	}
	return err
}

// Closed reports whether Close was called.
func (l *Ledger) Closed() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.closed
}

// acquire returns the database with l.mu held for reading; the caller
// must call l.mu.RUnlock. After a failed write it first reopens the
// database, so that state applied in memory but never made durable is
// dropped.
func (l *Ledger) acquire() (*pebble.DB, error) {
	for {
		l.mu.RLock()
		if l.closed {
			l.mu.RUnlock()
			return nil, ErrClosed
		}
		if !l.broken.Load() {
			return l.db, nil
		}
		l.mu.RUnlock()
		if err := l.reopen(); err != nil {
			return nil, err
		}
	}
}

func (l *Ledger) reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if !l.broken.Load() {
		return nil
	}
	if l.db != nil {
		_ = l.db.Close() // fails with the write error we already reported
		l.db = nil
	}
	if err := l.open(false, false); err != nil {
		l.log.Error().Err(err).Msg("store: reopen after write failure")
		return fmt.Errorf("store: reopen after write failure: %w", err)
	}
	l.broken.Store(false)
	l.log.Info().Msg("store: reopened after write failure")
	return nil
}

// fatalError is the panic value of pebbleLogger.Fatalf.
type fatalError struct{ msg string }

// apply commits pb. Pebble treats a failed WAL write or sync as fatal
// (Logger.Fatalf) and leaves the commit pipeline unusable; pebbleLogger
// panics instead of exiting, apply turns that panic into an error and
// marks the ledger for a reopen. pb must not be used after a failure.
func (l *Ledger) apply(pb *pebble.Batch, sync bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = errors.New(f.msg)
		}
		if err != nil {
			l.broken.Store(true)
			err = fmt.Errorf("store: commit: %w: %v", ErrIO, err)
			return
		}
		_ = pb.Close()
	}()
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	return pb.Commit(wo)
}

// pebbleLogger adapts zerolog to pebble.Logger.
type pebbleLogger struct{ log zerolog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.log.Debug().Msgf("pebble: "+format, args...)
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.log.Error().Msgf("pebble: "+format, args...)
}

// Fatalf panics. In a commit, apply recovers and returns an error; in a
// Pebble background goroutine the panic ends the process, as Pebble's
// default logger would (os.Exit).
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf("pebble: "+format, args...)
	p.log.Error().Msg(msg)
	panic(fatalError{msg})
}

// Stats returns a cheap summary: generation metadata is in memory and
// Pebble's metrics are counters.
func (l *Ledger) Stats() Stats {
	var s Stats
	l.gmu.RLock()
	s.Generations = len(l.gens)
	for _, g := range l.gens {
		s.ApproxEntries += g.count
	}
	s.AckFloor = l.ackFloor
	l.gmu.RUnlock()
	s.Corruptions = l.corruptions.Load()
	s.FilteredProbes, s.PebbleProbes = l.filtered.Load(), l.probed.Load()
	if db, err := l.acquire(); err == nil {
		m := db.Metrics()
		s.DiskBytes = m.DiskSpaceUsage()
		s.L0Sublevels = int(m.Levels[0].Sublevels)
		s.FilterBytes = l.filters.bytes()
		l.mu.RUnlock()
	}
	return s
}
