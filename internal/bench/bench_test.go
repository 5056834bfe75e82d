package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/agentgw/agentgw/internal/natstest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, natstest.LeakOptions()...)
}

// TestRunEveryScenario runs every system on every preset mix, plus the
// paced gateway runs, with a tiny M and checks that the report is
// internally consistent. It never asserts on speed.
func TestRunEveryScenario(t *testing.T) {
	const m = 300
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Messages, cfg.Warmup = m, 120
	cfg.Agents = 4
	cfg.Mixes = []Mix{MixPlain, MixSealed, MixHostile, MixMixed}
	cfg.Paced = 0.5
	cfg.ProgressEvery = 50 * time.Millisecond
	cfg.CPUProfile = filepath.Join(dir, "cpu.prof")
	var progress bytes.Buffer
	rep, err := Run(context.Background(), cfg, WithProgress(&progress))
	if err != nil {
		t.Fatalf("Run = %v", err)
	}

	want := len(cfg.Mixes) * 4 // raw, crypto, gateway, paced gateway
	if len(rep.Scenarios) != want {
		t.Fatalf("%d scenarios; want %d", len(rep.Scenarios), want)
	}
	byName := map[string]Result{}
	for _, s := range rep.Scenarios {
		byName[s.Name] = s
		t.Run(s.Name, func(t *testing.T) {
			checkResult(t, s, m)
			checkStages(t, s, 2)
			if s.Warmup != cfg.Warmup {
				t.Errorf("warm-up %d; want %d", s.Warmup, cfg.Warmup)
			}
		})
	}
	for _, mix := range cfg.Mixes {
		raw, crypto, gw := byName["raw/"+mix.Name], byName["crypto/"+mix.Name], byName["gateway/"+mix.Name]
		var ratio *Ratio
		for i := range rep.Ratios {
			if rep.Ratios[i].Mix == mix.Name {
				ratio = &rep.Ratios[i]
			}
		}
		if ratio == nil {
			t.Errorf("no ratio for mix %s", mix.Name)
			continue
		}
		if got, want := ratio.GatewayOverRaw, gw.MsgsPerSec/raw.MsgsPerSec; got != want {
			t.Errorf("%s: gateway/raw = %v; want %v (from the measured rates)", mix.Name, got, want)
		}
		if got, want := ratio.GatewayOverCrypto, gw.MsgsPerSec/crypto.MsgsPerSec; got != want {
			t.Errorf("%s: gateway/crypto = %v; want %v (from the measured rates)", mix.Name, got, want)
		}
		if gw.Profile == "" {
			t.Errorf("%s: no CPU profile recorded", gw.Name)
		} else if fi, err := os.Stat(gw.Profile); err != nil || fi.Size() == 0 {
			t.Errorf("%s: profile %s: %v, %v bytes", gw.Name, gw.Profile, err, fi)
		}
		if raw.Profile != "" || crypto.Profile != "" {
			t.Errorf("%s: baselines were profiled; only gateway scenarios should be", mix.Name)
		}
	}
	if len(rep.Ratios) != len(cfg.Mixes) {
		t.Errorf("%d ratios; want %d", len(rep.Ratios), len(cfg.Mixes))
	}

	// What the mixes mean: the gateway allows the valid, denies the rest;
	// the crypto relay only catches bad signatures.
	if r := byName["gateway/hostile"].Routes; r != (Routes{Denied: m}) {
		t.Errorf("gateway/hostile routed %+v; want all %d denied", r, m)
	}
	if r := byName["crypto/hostile"].Routes; r != (Routes{Allowed: m / 2, Denied: m / 2}) {
		t.Errorf("crypto/hostile routed %+v; want half allowed (replays), half denied", r)
	}
	if r := byName["gateway/mixed"].Routes; r != (Routes{Allowed: m * 8 / 10, Denied: m * 2 / 10}) {
		t.Errorf("gateway/mixed routed %+v; want 80%% allowed", r)
	}

	// The table names every scenario; the JSON reads back the same.
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Scenarios {
		if !strings.Contains(table.String(), s.Name) {
			t.Errorf("table lacks %s:\n%s", s.Name, table.String())
		}
	}
	if !strings.Contains(table.String(), "gateway stages, ms per batch") {
		t.Errorf("table lacks the gateway's stages:\n%s", table.String())
	}
	path := filepath.Join(dir, "report.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("report JSON: %v", err)
	}
	if !reflect.DeepEqual(back.Scenarios, rep.Scenarios) || !reflect.DeepEqual(back.Ratios, rep.Ratios) {
		t.Errorf("report JSON does not read back the same")
	}
	if !strings.Contains(progress.String(), "bench: gateway/plain") {
		t.Errorf("no progress for gateway/plain in:\n%s", progress.String())
	}
}

func checkResult(t *testing.T, s Result, m int) {
	t.Helper()
	if s.Published != m || s.Outputs != m || s.Latency.Count != int64(m) {
		t.Errorf("published %d, outputs %d, latencies %d; want %d each", s.Published, s.Outputs, s.Latency.Count, m)
	}
	if got := s.Routes.Allowed + s.Routes.Denied + s.Routes.Held; got != m {
		t.Errorf("routes %+v add up to %d; want %d", s.Routes, got, m)
	}
	if s.Routes != s.Expected {
		t.Errorf("routes %+v; want %+v", s.Routes, s.Expected)
	}
	l := s.Latency
	ps := []int64{l.P50, l.P90, l.P99, l.P999, l.Max}
	for i := 1; i < len(ps); i++ {
		if ps[i-1] > ps[i] {
			t.Errorf("latency percentiles not ordered: %+v", l)
		}
	}
	if l.P50 < 1 || l.Mean <= 0 || l.Mean > float64(l.Max) {
		t.Errorf("latency %+v: p50 below 1 µs or mean outside (0, max]", l)
	}
	if s.Seconds <= 0 || s.MsgsPerSec <= 0 {
		t.Fatalf("seconds %v, msgs/s %v; want both positive", s.Seconds, s.MsgsPerSec)
	}
	if got := float64(s.Outputs) / s.Seconds; got != s.MsgsPerSec {
		t.Errorf("msgs/s %v; want outputs/seconds = %v", s.MsgsPerSec, got)
	}
	if s.PublishPerSec <= 0 {
		t.Errorf("publish rate %v; want positive", s.PublishPerSec)
	}
	if s.CPUSecondsPerMsg <= 0 || s.AllocsPerMsg <= 0 || s.AllocBytesPerMsg <= 0 || s.PeakRSSBytes <= 0 {
		t.Errorf("cpu %v s/msg, %v allocs/msg, %v B/msg, peak RSS %d; want all positive",
			s.CPUSecondsPerMsg, s.AllocsPerMsg, s.AllocBytesPerMsg, s.PeakRSSBytes)
	}
	if s.StartRSSBytes < 0 || (s.StartRSSBytes > 0 && s.PeakRSSSource == rssScenario && s.PeakRSSBytes < s.StartRSSBytes) {
		t.Errorf("start RSS %d, peak %d (%s); want peak ≥ start", s.StartRSSBytes, s.PeakRSSBytes, s.PeakRSSSource)
	}
	if s.Batches == 0 || s.MeanBatch <= 0 {
		t.Errorf("%d batches, mean %v; want positive", s.Batches, s.MeanBatch)
	}
	if s.CorpusBytes <= 0 {
		t.Errorf("corpus %d bytes; want positive", s.CorpusBytes)
	}
	if paced := strings.Contains(s.Name, "@"); paced != (s.TargetRate > 0) {
		t.Errorf("name %q and target rate %v disagree", s.Name, s.TargetRate)
	}
}

func TestParseMix(t *testing.T) {
	tests := []struct {
		name, in string
		want     Mix
		wantErr  bool
	}{
		{"preset/plain", "plain", MixPlain, false},
		{"preset/hostile", "hostile", MixHostile, false},
		{"custom", "dirty=plain:8+badsig:1+replay:1", Mix{Name: "dirty", Plain: 8, BadSig: 1, Replay: 1}, false},
		{"custom/round-trip", MixMixed.String(), MixMixed, false},
		{"bad/unknown-preset", "salty", Mix{}, true},
		{"bad/unknown-kind", "x=plain:1+forged:1", Mix{}, true},
		{"bad/all-zero", "x=plain:0", Mix{}, true},
		{"bad/negative", "x=plain:-1", Mix{}, true},
		{"bad/name", "a/b=plain:1", Mix{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMix(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseMix(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestMixKindsAreExact(t *testing.T) {
	var counts [numKinds]int
	for i := range 1000 {
		counts[MixMixed.kind(i)]++
	}
	if want := [numKinds]int{400, 400, 100, 100}; counts != want {
		t.Errorf("kinds of 1000 mixed messages = %v; want %v", counts, want)
	}
}

func TestComputeRatios(t *testing.T) {
	rs := []Result{
		{System: SystemRaw, Mix: "plain", MsgsPerSec: 40000},
		{System: SystemCrypto, Mix: "plain", MsgsPerSec: 20000},
		{System: SystemGateway, Mix: "plain", MsgsPerSec: 10000},
		{System: SystemGateway, Mix: "plain", MsgsPerSec: 5000, TargetRate: 5000}, // paced: not a ratio
		{System: SystemGateway, Mix: "solo", MsgsPerSec: 10000},                   // no baseline
	}
	got := computeRatios(rs)
	want := []Ratio{{Mix: "plain", GatewayOverRaw: 0.25, GatewayOverCrypto: 0.5}}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("computeRatios = %+v; want %+v", got, want)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Messages, cfg.Agents, cfg.Paced, cfg.Mixes, cfg.Crash, cfg.Instances = 0, 0, 2, nil, true, 2
	cfg.Warmup, cfg.MCPConcurrency, cfg.FloodFloor = -1, 65, true
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate() = nil; want errors")
	}
	for _, frag := range []string{"messages", "warmup", "agents", "paced", "mix", "crash", "mcp concurrency", "flood floor"} {
		if !strings.Contains(err.Error(), frag) {
			t.Errorf("Validate() = %v; want a problem about %s", err, frag)
		}
	}
}

func TestRepeatReportsTheMedianRun(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Messages, cfg.Warmup, cfg.Agents, cfg.Repeat, cfg.Paced = 100, 0, 2, 3, 0.5
	cfg.Mixes, cfg.Baselines, cfg.ProgressEvery = []Mix{MixPlain}, false, -1
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if len(rep.Scenarios) != 2 {
		t.Fatalf("%d scenarios; want gateway and paced gateway", len(rep.Scenarios))
	}
	for i, key := range []func(RunSummary) float64{
		func(x RunSummary) float64 { return x.MsgsPerSec },
		func(x RunSummary) float64 { return float64(x.P99) },
	} {
		s := rep.Scenarios[i]
		if len(s.Runs) != 3 {
			t.Fatalf("%s: %d runs; want 3", s.Name, len(s.Runs))
		}
		var keys []float64
		for _, r := range s.Runs {
			keys = append(keys, key(r))
		}
		slices.Sort(keys)
		got := key(RunSummary{MsgsPerSec: s.MsgsPerSec, P99: s.Latency.P99})
		if got != keys[1] {
			t.Errorf("%s reports %v; want the median of %v", s.Name, got, keys)
		}
	}
}

func TestRefusesExistingStreamsOnExternalServer(t *testing.T) {
	// A first run on an embedded server we keep, pointed at as external.
	cfg := DefaultConfig()
	cfg.Messages, cfg.Warmup, cfg.Agents, cfg.Tenants = 20, 0, 2, 1
	cfg.Mixes, cfg.Baselines, cfg.ProgressEvery = []Mix{MixPlain}, false, -1
	srv := startServer(t)
	cfg.NATSURL = srv
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("first Run = %v", err)
	}
	// The first run cleaned up after itself: create the streams again by
	// hand, as a live deployment would have them.
	createStreams(t, srv)
	if _, err := Run(context.Background(), cfg); !errors.Is(err, ErrStreamsExist) {
		t.Errorf("Run on a server with agentgw streams = %v; want ErrStreamsExist", err)
	}
	cfg.Force = true
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Errorf("Run with Force = %v", err)
	}
}

// TestRunScaledOut runs the gateway as two scaled-out instances sharing
// six partitions: every message is decided once, the hostile mix's
// replays are still denied although they are spread over the instances,
// and the report says how it ran.
func TestRunScaledOut(t *testing.T) {
	const m = 300
	cfg := DefaultConfig()
	cfg.Messages, cfg.Warmup = m, 0
	cfg.Agents = 6
	cfg.Mixes = []Mix{MixMixed}
	cfg.Baselines = false
	cfg.Instances = 2
	cfg.ProgressEvery = -1
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if len(rep.Scenarios) != 1 {
		t.Fatalf("%d scenarios; want 1", len(rep.Scenarios))
	}
	s := rep.Scenarios[0]
	checkResult(t, s, m)
	checkStages(t, s, 2*rep.Settings.Partitions)
	if r := s.Routes; r != (Routes{Allowed: m * 8 / 10, Denied: m * 2 / 10}) {
		t.Errorf("scaled-out gateway/mixed routed %+v; want 80%% allowed", r)
	}
	if rep.Settings.Instances != 2 || rep.Settings.Partitions != 6 {
		t.Errorf("settings say %d instances, %d partitions; want 2, 6", rep.Settings.Instances, rep.Settings.Partitions)
	}
}

// TestRunCrash: with Crash the gateway of a mix runs a second time and is
// stopped hard half way and restarted on its ledger; every message still
// has exactly one output with the expected route, and the report says
// what the stop left in flight.
func TestRunCrash(t *testing.T) {
	const m = 2000
	cfg := DefaultConfig()
	cfg.Messages, cfg.Agents, cfg.Mixes, cfg.Baselines, cfg.MCPCalls, cfg.Crash = m, 4, []Mix{MixPlain}, false, 0, true
	cfg.Warmup = 500 // the stop comes half way through the measured messages
	cfg.ProgressEvery = -1
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	if len(rep.Scenarios) != 2 {
		t.Fatalf("%d scenarios; want 2 (gateway, gateway+crash)", len(rep.Scenarios))
	}
	s := rep.Scenarios[1]
	if s.Name != "gateway/plain+crash" || s.Crash == nil {
		t.Fatalf("second scenario %q, crash %+v; want gateway/plain+crash with a crash result", s.Name, s.Crash)
	}
	checkResult(t, s, m)
	checkStages(t, s, 0)
	checkStages(t, rep.Scenarios[0], 2)
	if c := s.Crash; c.AfterOutputs < m/2 || c.InFlight < 0 || c.RecoverySeconds < 0 || c.StandIn == "" {
		t.Errorf("crash %+v: want the stop after half the outputs, a non-negative count and time, and the stand-in named", c)
	}
	if rep.Scenarios[0].Crash != nil {
		t.Errorf("the plain gateway scenario has a crash result")
	}
	if len(rep.Ratios) != 0 {
		t.Errorf("ratios %+v without baselines; want none (a crash run is never paired)", rep.Ratios)
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil || !strings.Contains(table.String(), "gateway/plain+crash") || !strings.Contains(table.String(), "in flight") {
		t.Errorf("WriteTable = %v; the table lacks the crash lines:\n%s", err, table.String())
	}
}

// checkStages: a gateway scenario reports the time per stage of its batch
// pipeline, each stage of the decider once per batch it decided (within
// slack: the measured phase may cut a batch of each partition on either
// side); the relays and a crash scenario report none.
func checkStages(t *testing.T, s Result, slack int) {
	t.Helper()
	if s.System != SystemGateway || s.Crash != nil {
		// A crash scenario's stages would mix two gateways' counters.
		if s.Stages != nil {
			t.Errorf("%s reports gateway stages %v", s.Name, s.Stages)
		}
		return
	}
	// Publish (the acker) may finish after the last output was seen, so
	// a tiny run can end before it reports.
	for _, g := range []string{"verify", "ledger", "decide", "sign", "commit"} {
		st, ok := s.Stages[g]
		if !ok || st.Batches == 0 || st.MeanMs <= 0 {
			t.Errorf("%s: stage %s = %+v, %v; want batches and a positive mean", s.Name, g, st, ok)
		}
	}
	for _, g := range []string{"ledger", "decide", "sign"} {
		if n := s.Stages[g].Batches; n+uint64(slack) < s.Batches || n > s.Batches+uint64(slack) {
			t.Errorf("%s: stage %s ran %d times for %d batches", s.Name, g, n, s.Batches)
		}
	}
}
