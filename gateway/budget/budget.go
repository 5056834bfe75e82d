package budget

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Limit is one token bucket's shape.
type Limit struct {
	// Rate is the refill rate in tokens per second. Zero means unlimited.
	Rate float64 `yaml:"rate" json:"rate"`
	// Burst is the bucket size in tokens: how many messages may pass at
	// once after a quiet period. With Rate > 0, a Burst below 1 is
	// treated as 1.
	Burst int `yaml:"burst" json:"burst"`
}

// Unlimited reports whether the limit imposes nothing.
func (l Limit) Unlimited() bool { return l.Rate <= 0 }

func (l Limit) burst() float64 {
	if l.Burst < 1 {
		return 1
	}
	return float64(l.Burst)
}

// Limits are the default limits per level. The zero value limits nothing.
type Limits struct {
	Tenant Limit `yaml:"tenant" json:"tenant"`
	Agent  Limit `yaml:"agent" json:"agent"`
	// Target is the default per (tenant, agent, target); Take's
	// targetLimit overrides it for one target.
	Target Limit `yaml:"target" json:"target"`
}

// DefaultLimits returns conservative defaults: per tenant 100/s (burst
// 200), per agent 10/s (burst 20), per agent and target 5/s (burst 10).
func DefaultLimits() Limits {
	return Limits{
		Tenant: Limit{Rate: 100, Burst: 200},
		Agent:  Limit{Rate: 10, Burst: 20},
		Target: Limit{Rate: 5, Burst: 10},
	}
}

// Validate reports every malformed limit at once.
func (l Limits) Validate() error {
	var errs []error
	for _, c := range []struct {
		name string
		l    Limit
	}{{"tenant", l.Tenant}, {"agent", l.Agent}, {"target", l.Target}} {
		if err := c.l.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

// ErrBadLimit is wrapped by Limit.Validate's errors.
var ErrBadLimit = errors.New("budget: bad limit")

// Validate rejects a negative or non-finite rate, and a burst below 1 on
// a limited bucket.
func (l Limit) Validate() error {
	switch {
	case math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0) || l.Rate < 0:
		return fmt.Errorf("%w: rate %v must be a finite number >= 0", ErrBadLimit, l.Rate)
	case l.Rate > 0 && l.Burst < 1:
		return fmt.Errorf("%w: burst %d must be >= 1 when rate > 0", ErrBadLimit, l.Burst)
	case l.Burst > MaxBurst:
		return fmt.Errorf("%w: burst %d must be at most %d", ErrBadLimit, l.Burst, MaxBurst)
	}
	return nil
}

// MaxBurst bounds a Limit's Burst: tokens are counted in float64, exact
// for whole numbers up to 2^53.
const MaxBurst = 1 << 53

// Option configures Budgets.
type Option func(*Budgets)

// WithSweepEvery sets how much caller time passes between eviction
// sweeps (default one minute). A non-positive d keeps the default.
func WithSweepEvery(d time.Duration) Option {
	return func(b *Budgets) {
		if d > 0 {
			b.sweepEvery = d
		}
	}
}

// minSweepSize is the bucket count below which growth alone never
// triggers a sweep.
const minSweepSize = 1024

// Level names, as used in State.Exhausted and the context keys.
const (
	LevelTenant = "tenant"
	LevelAgent  = "agent"
	LevelTarget = "target"
)

// Context keys of State.Context.
const (
	KeyTenantRemaining = "tenant_remaining"
	KeyAgentRemaining  = "agent_remaining"
	KeyTargetRemaining = "target_remaining"
)

// State is what one Take left behind.
type State struct {
	// Remaining whole tokens per level after this Take; -1 when the level
	// is unlimited.
	Tenant, Agent, Target int64
	// Exhausted names the first level that refused (LevelTenant,
	// LevelAgent or LevelTarget); "" when the Take was granted.
	Exhausted string
}

// Context returns the remaining tokens per limited level for the policy
// context: keys KeyTenantRemaining, KeyAgentRemaining, KeyTargetRemaining;
// unlimited levels are absent.
func (s State) Context() map[string]int64 {
	if s.Tenant < 0 && s.Agent < 0 && s.Target < 0 {
		return nil // no budget applies
	}
	m := make(map[string]int64, 3)
	if s.Tenant >= 0 {
		m[KeyTenantRemaining] = s.Tenant
	}
	if s.Agent >= 0 {
		m[KeyAgentRemaining] = s.Agent
	}
	if s.Target >= 0 {
		m[KeyTargetRemaining] = s.Target
	}
	return m
}

type agentKey struct{ tenant, agent string }

type targetKey struct{ tenant, agent, target string }

// bucket is a token bucket as of time last. It remembers the limit it
// was last used with so that a sweep can tell whether it is full.
type bucket struct {
	tokens float64
	last   time.Time
	rate   float64
	burst  float64
}

// at returns the bucket refilled to now, then shaped by limit l. The
// refill runs at the rate the bucket was last used with, as full (and so
// the sweep) reckons it; a clock that went back adds nothing. A bucket
// full by now is a fresh one, full at l's burst whatever its old burst;
// one below it keeps its tokens, clamped to l's burst. A missing bucket
// is full.
func (b bucket) at(now time.Time, l Limit, ok bool) bucket {
	burst := l.burst()
	if !ok {
		return bucket{tokens: burst, last: now, rate: l.Rate, burst: burst}
	}
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens += dt.Seconds() * b.rate
		b.last = now
	}
	if b.tokens >= b.burst {
		b.tokens = burst
	}
	b.tokens = min(b.tokens, burst)
	b.rate, b.burst = l.Rate, burst
	return b
}

// full reports whether the bucket has refilled to its burst by now.
func (b bucket) full(now time.Time) bool {
	t := b.tokens
	if dt := now.Sub(b.last); dt > 0 {
		t += dt.Seconds() * b.rate
	}
	return t >= b.burst
}

// Budgets holds the buckets. Safe for concurrent use.
type Budgets struct {
	limits     Limits
	sweepEvery time.Duration

	mu        sync.Mutex
	tenants   map[string]bucket
	agents    map[agentKey]bucket
	targets   map[targetKey]bucket
	lastSweep time.Time
	swept     int // bucket count after the last sweep
}

// New returns Budgets with default limits l. Limits are used as given;
// check them with Limits.Validate first.
func New(l Limits, opts ...Option) *Budgets {
	b := &Budgets{
		limits:     l,
		sweepEvery: time.Minute,
		tenants:    map[string]bucket{},
		agents:     map[agentKey]bucket{},
		targets:    map[targetKey]bucket{},
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Take consumes one token from each limited level — tenant, (tenant,
// agent), (tenant, agent, target) — at time now, or from none if any level
// is empty. targetLimit, when non-nil, replaces the default target limit
// for this target. It reports the state after the attempt and whether it
// was granted.
func (b *Budgets) Take(tenant, agent, target string, now time.Time, targetLimit *Limit) (State, bool) {
	tl := b.limits.Target
	if targetLimit != nil {
		tl = *targetLimit
	}
	ak := agentKey{tenant, agent}
	tk := targetKey{tenant, agent, target}

	b.mu.Lock()
	defer b.mu.Unlock()
	b.maybeSweep(now)

	st := State{Tenant: -1, Agent: -1, Target: -1}
	var tb, ab, xb bucket
	if !b.limits.Tenant.Unlimited() {
		old, ok := b.tenants[tenant]
		tb = old.at(now, b.limits.Tenant, ok)
		st.Tenant = whole(tb.tokens)
		if tb.tokens < 1 {
			st.Exhausted = LevelTenant
		}
	}
	if !b.limits.Agent.Unlimited() {
		old, ok := b.agents[ak]
		ab = old.at(now, b.limits.Agent, ok)
		st.Agent = whole(ab.tokens)
		if ab.tokens < 1 && st.Exhausted == "" {
			st.Exhausted = LevelAgent
		}
	}
	if !tl.Unlimited() {
		old, ok := b.targets[tk]
		xb = old.at(now, tl, ok)
		st.Target = whole(xb.tokens)
		if xb.tokens < 1 && st.Exhausted == "" {
			st.Exhausted = LevelTarget
		}
	}
	if st.Exhausted != "" {
		// Refill is a pure function of the stored state and now, so not
		// storing the refilled buckets loses nothing.
		return st, false
	}
	if !b.limits.Tenant.Unlimited() {
		tb.tokens--
		b.tenants[tenant] = tb
		st.Tenant = whole(tb.tokens)
	}
	if !b.limits.Agent.Unlimited() {
		ab.tokens--
		b.agents[ak] = ab
		st.Agent = whole(ab.tokens)
	}
	if !tl.Unlimited() {
		xb.tokens--
		b.targets[tk] = xb
		st.Target = whole(xb.tokens)
	}
	return st, true
}

// Refund gives back the token a granted Take(tenant, agent, target, …,
// targetLimit) consumed, at time now: one token to each level limited
// under the same limits, capped at the level's burst. A bucket that is no
// longer held was full when a sweep dropped it, so it gets nothing back
// and no bucket is created. The caller refunds only a Take that was
// granted, passing the targetLimit it was granted under, once.
func (b *Budgets) Refund(tenant, agent, target string, now time.Time, targetLimit *Limit) {
	tl := b.limits.Target
	if targetLimit != nil {
		tl = *targetLimit
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if l := b.limits.Tenant; !l.Unlimited() {
		refund(b.tenants, tenant, now, l)
	}
	if l := b.limits.Agent; !l.Unlimited() {
		refund(b.agents, agentKey{tenant, agent}, now, l)
	}
	if !tl.Unlimited() {
		refund(b.targets, targetKey{tenant, agent, target}, now, tl)
	}
}

// refund adds one token to m[k], refilled to now under l, capped at its
// burst; a missing bucket stays missing.
func refund[K comparable](m map[K]bucket, k K, now time.Time, l Limit) {
	old, ok := m[k]
	if !ok {
		return
	}
	bk := old.at(now, l, true)
	bk.tokens = min(bk.tokens+1, bk.burst)
	m[k] = bk
}

// Peek reports the whole tokens there are per limited level at now, and
// the first level where Take would refuse, consuming nothing and
// changing no bucket. (Take reports what is left after it spends one;
// an approval release reads Peek, since the request spent its own token
// when it was held.)
func (b *Budgets) Peek(tenant, agent, target string, now time.Time, targetLimit *Limit) State {
	tl := b.limits.Target
	if targetLimit != nil {
		tl = *targetLimit
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	st := State{Tenant: -1, Agent: -1, Target: -1}
	level := func(name string, l Limit, old bucket, ok bool) int64 {
		bk := old.at(now, l, ok)
		if bk.tokens < 1 && st.Exhausted == "" {
			st.Exhausted = name
		}
		return whole(bk.tokens)
	}
	if !b.limits.Tenant.Unlimited() {
		old, ok := b.tenants[tenant]
		st.Tenant = level(LevelTenant, b.limits.Tenant, old, ok)
	}
	if !b.limits.Agent.Unlimited() {
		old, ok := b.agents[agentKey{tenant, agent}]
		st.Agent = level(LevelAgent, b.limits.Agent, old, ok)
	}
	if !tl.Unlimited() {
		old, ok := b.targets[targetKey{tenant, agent, target}]
		st.Target = level(LevelTarget, tl, old, ok)
	}
	return st
}

// Len returns the number of buckets held (for metrics and tests).
func (b *Budgets) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.len()
}

func (b *Budgets) len() int { return len(b.tenants) + len(b.agents) + len(b.targets) }

// Sweep drops every bucket that is full at now. Take calls it as needed;
// it is exported for callers that want memory back sooner.
func (b *Budgets) Sweep(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweep(now)
}

func (b *Budgets) maybeSweep(now time.Time) {
	n := b.len()
	if now.Sub(b.lastSweep) >= b.sweepEvery || (n >= minSweepSize && n >= 2*b.swept) {
		b.sweep(now)
	}
}

func (b *Budgets) sweep(now time.Time) {
	for k, v := range b.tenants {
		if v.full(now) {
			delete(b.tenants, k)
		}
	}
	for k, v := range b.agents {
		if v.full(now) {
			delete(b.agents, k)
		}
	}
	for k, v := range b.targets {
		if v.full(now) {
			delete(b.targets, k)
		}
	}
	b.lastSweep = now
	b.swept = b.len()
}

// whole returns the whole tokens in t, never negative.
func whole(t float64) int64 {
	switch {
	case !(t > 0):
		return 0
	case t >= math.MaxInt64:
		return math.MaxInt64
	}
	return int64(t)
}
