package bench

import (
	"context"
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// TestLatenciesFile: every measured message of every run is one line,
// its times in order, its latency the output time less the publish
// time, and a run's lines give the latencies its report summarises.
func TestLatenciesFile(t *testing.T) {
	const m = 150
	path := filepath.Join(t.TempDir(), "lat.csv")
	cfg := DefaultConfig()
	cfg.Messages, cfg.Warmup, cfg.Agents, cfg.Repeat = m, 0, 2, 2
	cfg.Mixes, cfg.Baselines, cfg.ProgressEvery = []Mix{MixPlain}, false, -1
	cfg.Latencies = path
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run = %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("latencies CSV: %v", err)
	}
	if got := rows[0]; !slices.Equal(got, []string{"scenario", "run", "ingress_seq", "published_us", "stored_us", "output_us", "latency_us"}) {
		t.Fatalf("header %v", got)
	}
	num := func(s string) int64 {
		t.Helper()
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		return v
	}
	byRun := map[string][]int64{}
	seqs := map[string]map[string]bool{}
	for _, r := range rows[1:] {
		if r[0] != "gateway/plain" {
			t.Fatalf("scenario %q; want gateway/plain", r[0])
		}
		pub, stored, out, lat := num(r[3]), num(r[4]), num(r[5]), num(r[6])
		if stored < pub || out < pub {
			t.Errorf("run %s seq %s: published %d, stored %d, output %d µs: out of order", r[1], r[2], pub, stored, out)
		}
		if want := max(out-pub, histMin); lat < want-1 || lat > want+1 {
			t.Errorf("run %s seq %s: latency %d µs; want output - published = %d", r[1], r[2], lat, want)
		}
		if seqs[r[1]] == nil {
			seqs[r[1]] = map[string]bool{}
		}
		if seqs[r[1]][r[2]] {
			t.Errorf("run %s: sequence %s twice", r[1], r[2])
		}
		seqs[r[1]][r[2]] = true
		byRun[r[1]] = append(byRun[r[1]], lat)
	}
	if len(byRun) != cfg.Repeat {
		t.Fatalf("%d runs in the file; want %d", len(byRun), cfg.Repeat)
	}
	s := rep.Scenarios[0]
	matched := false
	for run, lats := range byRun {
		if len(lats) != m {
			t.Errorf("run %s: %d lines; want %d", run, len(lats), m)
		}
		if slices.Max(lats) == s.Latency.Max {
			matched = true
		}
	}
	if !matched {
		t.Errorf("no run's slowest message is the report's max (%d µs)", s.Latency.Max)
	}
}
