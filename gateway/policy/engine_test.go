package policy

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestEngineNilSetDenies(t *testing.T) {
	e := NewEngine(nil)
	got := e.Decide(Request{Principal: principal(), Action: "read", Resource: target("x", "read", "low")})
	if got.Allow || len(got.Errors) != 1 {
		t.Errorf("Decide with no set = %+v; want deny with an error", got)
	}
}

// TestEngineSwapAtomic checks under -race that every decision is made
// wholly by one set: the version and the deciding id always agree.
func TestEngineSwapAtomic(t *testing.T) {
	a := mustParse(t, `@id("a") permit (principal, action, resource);`)
	b := mustParse(t, `@id("b") permit (principal, action, resource) when { true };`)
	want := map[string]string{a.Version(): "a", b.Version(): "b"}
	e := NewEngine(a)
	req := Request{Principal: principal(), Action: "read", Resource: target("x", "read", "low"), Time: t0}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	seen := [2]atomic.Int64{}
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				d := e.Decide(req)
				id, ok := want[d.Version]
				if !ok || !d.Allow || !slices.Equal(d.PolicyIDs, []string{id}) {
					bad.Add(1)
				}
				if id == "a" {
					seen[0].Add(1)
				} else {
					seen[1].Add(1)
				}
			}
		})
	}
	for i := range 2000 {
		if i%2 == 0 {
			e.Swap(b)
		} else {
			e.Swap(a)
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d decisions mixed two sets", bad.Load())
	}
	if cur := e.Current(); cur != a {
		t.Errorf("Current() after swaps = %s; want a", cur.Version())
	}
}

type reload struct {
	version string
	err     error
}

// startWatch runs Watch until the test ends and returns its reports.
func startWatch(t *testing.T, e *Engine, files []string) <-chan reload {
	t.Helper()
	ch := make(chan reload, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- e.Watch(ctx, files, 5*time.Millisecond, func(v string, err error) { ch <- reload{v, err} })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v; want nil on cancel", err)
		}
	})
	return ch
}

func next(t *testing.T, ch <-chan reload) reload {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no reload reported")
		return reload{}
	}
}

// quiet asserts that nothing is reported for a few poll intervals.
func quiet(t *testing.T, ch <-chan reload) {
	t.Helper()
	select {
	case r := <-ch:
		t.Errorf("unexpected report %+v", r)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	base := writeFile(t, dir, "base.cedar", `@id("read") permit (principal, action == Action::"read", resource);`)
	extra := writeFile(t, dir, "extra.cedar", `@id("never") forbid (principal, action, resource) when { false };`)
	files := []string{base, extra}
	set, err := Load(files...)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(set)
	ch := startWatch(t, e, files)
	req := Request{Principal: principal(), Action: "tool_call", Resource: target("t", "tool_call", "low"), Time: t0}

	// Unchanged files: no report, same set.
	quiet(t, ch)
	if e.Current() != set {
		t.Fatal("Watch replaced an unchanged set")
	}

	// A change is loaded and used.
	writeFile(t, dir, "base.cedar", `@id("tool") permit (principal, action == Action::"tool_call", resource);`)
	r := next(t, ch)
	want, _ := Digest(files...)
	if r.err != nil || r.version != want || e.Current().Version() != want {
		t.Fatalf("after edit: report %+v, current %s; want version %s", r, e.Current().Version(), want)
	}
	if d := e.Decide(req); !d.Allow || d.Version != want {
		t.Errorf("Decide after reload = %+v; want allow by the new set", d)
	}
	good := e.Current()

	// A broken file keeps the old set and is reported once.
	writeFile(t, dir, "extra.cedar", `forbid (principal, action, resource) when { 1 + };`)
	r = next(t, ch)
	if r.err == nil || !errors.Is(r.err, ErrInvalid) || !strings.Contains(r.err.Error(), "extra.cedar:1:") {
		t.Fatalf("after breaking: report %+v; want an error naming extra.cedar:1", r)
	}
	if e.Current() != good {
		t.Fatal("a broken file replaced the set")
	}
	quiet(t, ch)

	// A missing file is an error too, and the old set stays.
	if err := os.Remove(extra); err != nil {
		t.Fatal(err)
	}
	if r = next(t, ch); r.err == nil || e.Current() != good {
		t.Fatalf("after removing: report %+v; want an error and the old set", r)
	}

	// Fixing it reloads.
	writeFile(t, dir, "extra.cedar", `@id("no_tools") forbid (principal, action == Action::"tool_call", resource);`)
	r = next(t, ch)
	if r.err != nil || e.Current() == good {
		t.Fatalf("after fixing: report %+v; want a new set", r)
	}
	if d := e.Decide(req); d.Allow || !slices.Equal(d.PolicyIDs, []string{"no_tools"}) {
		t.Errorf("Decide after fix = %+v; want deny by no_tools", d)
	}

	// Reload (SIGHUP) re-reads and reports even when nothing changed.
	cur := e.Current()
	e.Reload()
	if r = next(t, ch); r.err != nil || r.version != cur.Version() || e.Current() != cur {
		t.Errorf("Reload of unchanged files: report %+v; want version %s, same set", r, cur.Version())
	}
}

// TestWatchSameSizeEdit covers an edit that keeps size (and, on coarse
// file systems, mtime): the digest, not the stat, decides.
func TestWatchSameSizeEdit(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "p.cedar", `@id("aaaa") permit (principal, action, resource);`)
	set, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(set)
	fi, _ := os.Stat(p)
	ch := startWatch(t, e, []string{p})
	writeFile(t, dir, "p.cedar", `@id("bbbb") permit (principal, action, resource);`)
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if r := next(t, ch); r.err != nil || !slices.Equal(e.Current().IDs(), []string{"bbbb"}) {
		t.Errorf("same-size edit: report %+v, ids %q; want bbbb", r, e.Current().IDs())
	}
}

func TestWatchStartsWithCurrentFiles(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "p.cedar", `@id("old") permit (principal, action, resource);`)
	set, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "p.cedar", `@id("new") permit (principal, action, resource);`)
	e := NewEngine(set)
	ch := startWatch(t, e, []string{p})
	if r := next(t, ch); r.err != nil || !slices.Equal(e.Current().IDs(), []string{"new"}) {
		t.Errorf("edit between Load and Watch: report %+v; want the new set", r)
	}
}

func TestWatchArgs(t *testing.T) {
	e := NewEngine(nil)
	if err := e.Watch(context.Background(), nil, time.Second, nil); !errors.Is(err, ErrNoFiles) {
		t.Errorf("Watch(no files) = %v; want ErrNoFiles", err)
	}
}

// TestWatchReloadOnly: with polling off, edits wait for Reload.
func TestWatchReloadOnly(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "p.cedar", `@id("old") permit (principal, action, resource);`)
	set, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	e := NewEngine(set)
	ch := make(chan reload, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx, []string{p}, 0, func(v string, err error) { ch <- reload{v, err} }) }()
	defer func() { cancel(); <-done }()
	e.Reload() // a forced reload always reports: Watch has started
	if r := next(t, ch); r.err != nil || r.version != set.Version() {
		t.Fatalf("first Reload: report %+v; want version %s", r, set.Version())
	}

	writeFile(t, dir, "p.cedar", `@id("new") permit (principal, action, resource);`)
	quiet(t, ch)
	if e.Current() != set {
		t.Fatal("polling is off, yet the set changed")
	}
	e.Reload()
	if r := next(t, ch); r.err != nil || !slices.Equal(e.Current().IDs(), []string{"new"}) {
		t.Errorf("after Reload: report %+v, ids %q; want the new set", r, e.Current().IDs())
	}
}

// TestDecideContentReusesOnlyWhenStagesAgree: the content stage reuses the
// authorize decision only for a set no policy of which can tell the stages
// apart; a policy reading stage, payload or context whole is evaluated
// again, and then decides differently.
func TestDecideContentReusesOnlyWhenStagesAgree(t *testing.T) {
	req := Request{Principal: principal(), Action: "read", Resource: target("x", "read", "low"), Time: t0}
	content := req
	content.Payload = map[string]any{"amount": int64(5)}
	tests := []struct {
		name  string
		src   string
		blind bool
	}{
		{"no conditions", `permit (principal, action, resource);`, true},
		{"time and hour", `permit (principal, action, resource) when { context.hour >= 0 && context.time > 0 };`, true},
		{"has budget", `permit (principal, action, resource) when { context has budget };`, true},
		{"reads stage", `permit (principal, action, resource) when { context.stage == "authorize" };`, false},
		{"reads payload", `permit (principal, action, resource) unless { context has payload && context.payload.amount > 1 };`, false},
		{"context whole", `permit (principal, action, resource) when { context == context };`, false},
		{"has payload", `permit (principal, action, resource) unless { context has payload };`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustParse(t, tt.src)
			if s.stageBlind != tt.blind {
				t.Fatalf("stageBlind = %v; want %v", s.stageBlind, tt.blind)
			}
			e := NewEngine(s)
			auth := e.Decide(req)
			if !auth.Allow {
				t.Fatalf("authorize = %+v; want allow", auth)
			}
			got, fresh := e.DecideContent(auth, content), e.Decide(content)
			if got.Allow != fresh.Allow {
				t.Errorf("DecideContent = %v; evaluating the content stage says %v", got.Allow, fresh.Allow)
			}
			if tt.blind {
				return
			}
			// Not blind: a reused authorize decision would have been wrong
			// for one of these (they deny at stage content).
			if tt.name != "context whole" && fresh.Allow {
				t.Errorf("%s: content stage allowed; the case is meant to deny there", tt.name)
			}
		})
	}
	// A reload between the stages: the new set decides.
	a := mustParse(t, `permit (principal, action, resource);`)
	b := mustParse(t, `forbid (principal, action, resource);`)
	e := NewEngine(a)
	auth := e.Decide(req)
	e.Swap(b)
	if got := e.DecideContent(auth, content); got.Allow || got.Version != b.Version() {
		t.Errorf("after a swap DecideContent = %+v; want the new set's deny", got)
	}
}
