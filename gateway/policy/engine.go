package policy

import (
	"context"
	"os"
	"sync/atomic"
	"time"
)

// Engine holds the current Set. Decide, Current and Swap are safe for
// concurrent use; Decide takes no lock.
type Engine struct {
	cur    atomic.Pointer[Set]
	reload chan struct{}
}

// NewEngine returns an Engine deciding with s. A nil s denies everything
// until a set is swapped in.
func NewEngine(s *Set) *Engine {
	e := &Engine{reload: make(chan struct{}, 1)}
	e.cur.Store(s)
	return e
}

// Current returns the set Decide uses now (nil if none).
func (e *Engine) Current() *Set { return e.cur.Load() }

// Swap atomically replaces the current set: each Decide uses either the
// old or the new one, entirely. Swapping in nil denies everything.
func (e *Engine) Swap(s *Set) { e.cur.Store(s) }

// Decide evaluates req with the current set; with none, it denies.
func (e *Engine) Decide(req Request) Decision {
	s := e.cur.Load()
	if s == nil {
		return Decision{Errors: []string{"policy: no policy set loaded"}}
	}
	return s.Decide(req)
}

// DecideContent decides req at stage content, given the authorize-stage
// decision of the same message. When the set that made authorized is
// still current and none of its policies can tell the stages apart (see
// stageBlind), the answer is authorized itself: evaluating again could
// only repeat it. Otherwise it is the current set's decision.
func (e *Engine) DecideContent(authorized Decision, req Request) Decision {
	s := e.cur.Load()
	if s == nil {
		return e.Decide(req)
	}
	return s.DecideContent(authorized, req)
}

// Reload asks a running Watch to re-read its files now, whether or not
// they look changed (the SIGHUP path); Watch then reports the outcome even
// if the version is unchanged. It never blocks; requests made while one is
// pending coalesce.
func (e *Engine) Reload() {
	select {
	case e.reload <- struct{}{}:
	default:
	}
}

// racyWindow is how long after a file's mtime a read of it is not trusted
// to have seen its final contents: file systems with coarse timestamps can
// hide a second same-size write inside one tick.
const racyWindow = 2 * time.Second

// Watch polls files every interval (stat: mtime and size; then content
// digest) and on Reload, and swaps in a new set when their digest differs
// from the current version; interval <= 0 disables polling, leaving
// Reload as the only trigger. onReload (may be nil) is called from Watch's
// goroutine with the new version, or with an error when a file is missing
// or broken, in which case the current set stays. A given error is
// reported once, not every tick. Watch checks once at start, so a change
// between Load and Watch is not lost. It returns nil when ctx is done.
// Run at most one Watch per Engine.
func (e *Engine) Watch(ctx context.Context, files []string, interval time.Duration, onReload func(version string, err error)) error {
	if len(files) == 0 {
		return ErrNoFiles
	}
	if onReload == nil {
		onReload = func(string, error) {}
	}
	w := &watcher{e: e, files: files, onReload: onReload, stats: make(map[string]fileStat, len(files))}
	w.check(false)
	var tick <-chan time.Time // nil: never fires
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			w.check(false)
		case <-e.reload:
			w.check(true)
		}
	}
}

type fileStat struct {
	exists bool
	size   int64
	mtime  int64 // UnixNano
}

type watcher struct {
	e        *Engine
	files    []string
	onReload func(string, error)
	stats    map[string]fileStat
	readAt   time.Time // wall time of the last read of the files
	lastErr  string    // last error reported, to report each once
}

// changed reports whether any file's stat differs from the last read, or
// was modified so close to that read that the read may have missed it.
func (w *watcher) changed() bool {
	if w.readAt.IsZero() {
		return true
	}
	for _, f := range w.files {
		st := statFile(f)
		if st != w.stats[f] {
			return true
		}
		if st.exists && st.mtime >= w.readAt.Add(-racyWindow).UnixNano() {
			return true
		}
	}
	return false
}

func (w *watcher) check(force bool) {
	if !force && !w.changed() {
		return
	}
	// Stat before reading: a write after the stat shows up as a changed
	// stat on the next tick.
	for _, f := range w.files {
		w.stats[f] = statFile(f)
	}
	w.readAt = time.Now()
	srcs, err := readFiles(w.files)
	if err == nil {
		v := digest(srcs)
		if cur := w.e.Current(); cur != nil && cur.Version() == v {
			if force || w.lastErr != "" {
				w.lastErr = ""
				w.onReload(v, nil)
			}
			return
		}
		var set *Set
		if set, err = compile(srcs); err == nil {
			w.e.Swap(set)
			w.lastErr = ""
			w.onReload(v, nil)
			return
		}
	}
	if msg := err.Error(); force || msg != w.lastErr {
		w.lastErr = msg
		w.onReload("", err)
	}
}

func statFile(path string) fileStat {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStat{}
	}
	return fileStat{exists: true, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}
