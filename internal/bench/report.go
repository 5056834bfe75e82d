package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/agentgw/agentgw/gateway/metrics"
)

// Systems under test.
const (
	SystemRaw     = "raw"
	SystemCrypto  = "crypto"
	SystemGateway = "gateway"
)

// Report is one run: every scenario and the same-run ratios.
type Report struct {
	Started   time.Time `json:"started"`
	Host      Host      `json:"host"`
	Settings  Settings  `json:"settings"`
	Scenarios []Result  `json:"scenarios"`
	Ratios    []Ratio   `json:"ratios"`
	// MCP is the MCP tool call comparison, when measured.
	MCP *MCPResult `json:"mcp,omitempty"`
	// Flood is the flood-isolation scenario, when run.
	Flood *FloodResult `json:"flood,omitempty"`
	Notes []string     `json:"notes"`
}

// Host describes where the run happened.
type Host struct {
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	// NATS is "embedded" or the external URL without credentials.
	NATS       string `json:"nats"`
	SyncAlways bool   `json:"sync_always"`
}

// Settings are the run's knobs as used.
type Settings struct {
	// Instances > 0: scale-out mode with that many gateway instances.
	Instances   int     `json:"instances,omitempty"`
	Partitions  int     `json:"partitions"`
	Messages    int     `json:"messages"`
	Agents      int     `json:"agents"`
	Tenants     int     `json:"tenants"`
	Mixes       []Mix   `json:"mixes"`
	Rate        float64 `json:"rate"`
	Paced       float64 `json:"paced"`
	Repeat      int     `json:"repeat"`
	SealedBytes int     `json:"sealed_bytes"`
	Batch       int     `json:"batch"`
	Workers     int     `json:"workers"`
	// Notices: "sent" (a decision notice per authenticated message),
	// "not asked" (the agents ask for none, Agentgw-Notify: none) or
	// "off" (notify_senders off).
	Notices string `json:"notices"`
}

// Result is one scenario: one system, one mix, one publish rate.
type Result struct {
	// Name is "<system>/<mix>", with "@<rate>/s" for a paced scenario.
	Name   string `json:"name"`
	System string `json:"system"`
	Mix    string `json:"mix"`
	// TargetRate is the publish rate asked for (0: as fast as possible).
	TargetRate float64 `json:"target_rate"`
	// Messages is M; Published and Outputs count what happened. Every
	// ingress message has exactly one terminal output.
	Messages  int `json:"messages"`
	Published int `json:"published"`
	Outputs   int `json:"outputs"`
	// Seconds runs from the first measured publish to the last output.
	Seconds float64 `json:"seconds"`
	// MsgsPerSec is Outputs / Seconds.
	MsgsPerSec float64 `json:"msgs_per_sec"`
	// LongestGapSeconds is the longest stretch of the measured phase
	// without a new output, from the first measured publish: a stall
	// shows here rather than only as a slower run.
	LongestGapSeconds float64 `json:"longest_gap_seconds"`
	// PublishPerSec is how fast the publisher got its messages out; when
	// it is close to MsgsPerSec the producer, not the system, was the
	// limit.
	PublishPerSec float64 `json:"publish_per_sec"`
	Latency       Latency `json:"latency"`
	// CPUSecondsPerMsg is process CPU (user + system) per message; it
	// includes the embedded server, publisher and observer.
	CPUSecondsPerMsg float64 `json:"cpu_seconds_per_msg"`
	// CoresUsed is process CPU seconds / wall seconds.
	CoresUsed float64 `json:"cores_used"`
	// FaultsPerMsg is the process's minor page faults per message
	// (getrusage): pages touched for the first time since they were
	// mapped or given back to the kernel. Each costs a trap and a zeroed
	// page, which some virtual machines make expensive.
	FaultsPerMsg float64 `json:"faults_per_msg"`
	// Warmup is the number of messages of the mix decided before the
	// measured phase, after the primer (Config.Warmup).
	Warmup int `json:"warmup"`
	// AllocsPerMsg and AllocBytesPerMsg are Go heap allocations per
	// message, whole process (runtime.MemStats deltas).
	AllocsPerMsg     float64 `json:"allocs_per_msg"`
	AllocBytesPerMsg float64 `json:"alloc_bytes_per_msg"`
	// GCs is the process's garbage-collection cycles during the measured
	// phase; GCCPUSecondsPerMsg the runtime's estimate of the CPU its
	// collector used per message (/cpu/classes/gc/total:cpu-seconds,
	// which counts a pause as every processor's time: an estimate beside
	// CPUSecondsPerMsg, not a share of it).
	GCs                uint32  `json:"gcs"`
	GCCPUSecondsPerMsg float64 `json:"gc_cpu_seconds_per_msg"`
	// PeakRSSBytes is the resident set peak; PeakRSSSource says whether
	// it is this scenario's or the process's so far. It includes the
	// pre-signed corpus (CorpusBytes, and the warm-up's messages) and the
	// warm-up. StartRSSBytes is the resident set when the scenario began
	// (after returning freed memory, before the warm-up).
	PeakRSSBytes  int64  `json:"peak_rss_bytes"`
	StartRSSBytes int64  `json:"start_rss_bytes"`
	PeakRSSSource string `json:"peak_rss_source"`
	CorpusBytes   int64  `json:"corpus_bytes"`
	// Routes counts outputs by where they landed; Expected is what the
	// system should have done with this mix.
	Routes   Routes `json:"routes"`
	Expected Routes `json:"expected"`
	// Batches is the number of fetch batches the system processed in the
	// measured phase (warm-up excluded, so it may include a partial one);
	// MeanBatch is Outputs / Batches.
	Batches   uint64  `json:"batches"`
	MeanBatch float64 `json:"mean_batch"`
	// Reemitted counts outputs seen more than once (redeliveries).
	Reemitted int64 `json:"reemitted"`
	// Stages is the gateway's time per stage of its batch pipeline, per
	// batch (its agentgw_gate_duration_seconds histogram over the measured
	// phase; not for the relays or a crash scenario).
	Stages map[string]Stage `json:"stages,omitempty"`
	// Crash is the restart of a crash scenario (Config.Crash).
	Crash *CrashResult `json:"crash,omitempty"`
	// Runs summarises every repetition when Config.Repeat > 1, in run
	// order; the Result itself is the median one.
	Runs []RunSummary `json:"runs,omitempty"`
	// Profile, Trace and MemProfile are the CPU profile, execution trace
	// and allocation profile files written for this scenario.
	Profile    string `json:"profile,omitempty"`
	Trace      string `json:"trace,omitempty"`
	MemProfile string `json:"mem_profile,omitempty"`
}

// RunSummary is one repetition of a scenario.
type RunSummary struct {
	MsgsPerSec       float64 `json:"msgs_per_sec"`
	P50              int64   `json:"p50_us"`
	P99              int64   `json:"p99_us"`
	CPUSecondsPerMsg float64 `json:"cpu_seconds_per_msg"`
	// LongestGapSeconds is the run's Result.LongestGapSeconds.
	LongestGapSeconds float64 `json:"longest_gap_seconds"`
}

// Routes counts terminal outputs by destination.
type Routes struct {
	Allowed int `json:"allowed"`
	Denied  int `json:"denied"`
	Held    int `json:"held"`
}

// Latency is end-to-end latency in microseconds, from an HDR histogram
// (1 µs to 1 h, 3 significant digits: a recorded value is within 0.1%).
// Percentiles are the histogram's highest equivalent values, capped at
// Max, which is exact.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   int64   `json:"p50_us"`
	P90   int64   `json:"p90_us"`
	P99   int64   `json:"p99_us"`
	P999  int64   `json:"p999_us"`
	Max   int64   `json:"max_us"`
}

// Ratio compares the gateway with the baselines on one mix, from the
// measured rates of the same run.
type Ratio struct {
	Mix               string  `json:"mix"`
	GatewayOverRaw    float64 `json:"gateway_over_raw"`
	GatewayOverCrypto float64 `json:"gateway_over_crypto"`
}

const (
	histMin = 1
	histMax = int64(time.Hour / time.Microsecond)
	histSig = 3
)

// CrashResult is what a gateway hard-stopped mid-run left in flight and
// how fast the restarted one decided it.
type CrashResult struct {
	// AfterOutputs is the number of measured outputs seen at the stop.
	AfterOutputs int64 `json:"after_outputs"`
	// InFlight counts the messages delivered to the stopped gateway,
	// unacknowledged and without an output at the stop.
	InFlight int `json:"in_flight"`
	// RecoverySeconds runs from the restart (the new gateway created)
	// to the first output of the last in-flight message.
	RecoverySeconds float64 `json:"recovery_seconds"`
	// StandIn says how the crash was made.
	StandIn string `json:"stand_in"`
}

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histSig) }

// histUS is the time from start to end (ns) in µs, within the
// histogram's bounds: what a latency histogram records.
func histUS(start, end int64) int64 {
	return min(max((end-start)/int64(time.Microsecond), histMin), histMax)
}

func latencyOf(h *hdrhistogram.Histogram, maxUS int64) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	p := func(q float64) int64 { return min(h.ValueAtQuantile(q), maxUS) }
	return Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean(),
		P50:   p(50),
		P90:   p(90),
		P99:   p(99),
		P999:  p(99.9),
		Max:   maxUS,
	}
}

// computeRatios pairs each mix's full-speed gateway result with its
// full-speed baselines.
func computeRatios(results []Result) []Ratio {
	type trio struct{ raw, crypto, gw *Result }
	byMix := map[string]*trio{}
	var order []string
	for i := range results {
		r := &results[i]
		if r.TargetRate != 0 && r.System == SystemGateway || r.Crash != nil {
			continue
		}
		t := byMix[r.Mix]
		if t == nil {
			t = &trio{}
			byMix[r.Mix] = t
			order = append(order, r.Mix)
		}
		switch r.System {
		case SystemRaw:
			t.raw = r
		case SystemCrypto:
			t.crypto = r
		case SystemGateway:
			t.gw = r
		}
	}
	var out []Ratio
	for _, mix := range order {
		t := byMix[mix]
		if t.gw == nil || (t.raw == nil && t.crypto == nil) {
			continue
		}
		r := Ratio{Mix: mix}
		if t.raw != nil && t.raw.MsgsPerSec > 0 {
			r.GatewayOverRaw = t.gw.MsgsPerSec / t.raw.MsgsPerSec
		}
		if t.crypto != nil && t.crypto.MsgsPerSec > 0 {
			r.GatewayOverCrypto = t.gw.MsgsPerSec / t.crypto.MsgsPerSec
		}
		out = append(out, r)
	}
	return out
}

// WriteTable prints the report for people.
func (r *Report) WriteTable(w io.Writer) error {
	ms := func(us int64) string { return fmt.Sprintf("%.2f", float64(us)/1000) }
	if len(r.Scenarios) > 0 {
		if err := r.writeScenarios(w, ms); err != nil {
			return err
		}
	}
	return r.writeRest(w, ms)
}

func (r *Report) writeScenarios(w io.Writer, ms func(int64) string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmsgs/s\tpub/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tCPU µs/msg\tGC µs/msg\tcores\tfaults/msg\tallocs/msg\tKiB/msg\tpeak RSS MiB\tbatch\tallow/deny/held\t")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%.1f\t%.1f\t%.2f\t%.2f\t%.0f\t%.1f\t%.0f\t%.0f\t%d/%d/%d\t\n",
			s.Name, s.MsgsPerSec, s.PublishPerSec,
			ms(s.Latency.P50), ms(s.Latency.P90), ms(s.Latency.P99), ms(s.Latency.P999), ms(s.Latency.Max),
			s.CPUSecondsPerMsg*1e6, s.GCCPUSecondsPerMsg*1e6, s.CoresUsed, s.FaultsPerMsg, s.AllocsPerMsg, s.AllocBytesPerMsg/1024,
			float64(s.PeakRSSBytes)/(1<<20), s.MeanBatch, s.Routes.Allowed, s.Routes.Denied, s.Routes.Held)
	}
	return tw.Flush()
}

func (r *Report) writeRest(w io.Writer, ms func(int64) string) error {
	var tw *tabwriter.Writer
	if len(r.Ratios) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "mix\tgateway/raw\tgateway/crypto\t")
		for _, x := range r.Ratios {
			fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t\n", x.Mix, x.GatewayOverRaw, x.GatewayOverCrypto)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if err := r.writeStages(w); err != nil {
		return err
	}
	var crashes []Result
	for _, s := range r.Scenarios {
		if s.Crash != nil {
			crashes = append(crashes, s)
		}
	}
	if len(crashes) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "crash scenario\tstopped after outputs\tin flight\trestart → last in-flight decided, s\t")
		for _, s := range crashes {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\t\n", s.Name, s.Crash.AfterOutputs, s.Crash.InFlight, s.Crash.RecoverySeconds)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "crash: %s\n", crashes[0].Crash.StandIn)
	}
	if m := r.MCP; m != nil {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "MCP tool call, %d in flight\tcalls\tcalls/s\tCPU µs/call\tp50 ms\tp90 ms\tp99 ms\tmax ms\t\n", m.Concurrency)
		for _, x := range []struct {
			name     string
			l        Latency
			rate, us float64
		}{{"direct to upstream", m.Direct, m.DirectRate, m.DirectCPUus}, {"through agentgw", m.Gateway, m.GatewayRate, m.GatewayCPUus}} {
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t\n", x.name, x.l.Count, x.rate, x.us, ms(x.l.P50), ms(x.l.P90), ms(x.l.P99), ms(x.l.Max))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if f := r.Flood; f != nil {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "victim at %.0f msgs/s\tmessages\tp50 ms\tp90 ms\tp99 ms\tmax ms\t\n", f.VictimRate)
		beside := fmt.Sprintf("beside a flood of %d (%.0f msgs/s)", f.FloodMessages, f.FloodPerSec)
		if f.Floor {
			beside = fmt.Sprintf("beside a flood of %d stored, not decided (%.0f msgs/s)", f.FloodMessages, f.FloodPerSec)
		}
		for _, x := range []struct {
			name string
			l    Latency
		}{{"alone", f.Quiet}, {beside, f.Flooded},
			{"  of which until stored in ingress", f.FloodedStored}} {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t\n", x.name, x.l.Count, ms(x.l.P50), ms(x.l.P90), ms(x.l.P99), ms(x.l.Max))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if f.Floor {
			fmt.Fprintf(w, "victim p99 flooded/alone %.2f, with no flood message decided: the floor the machine sets for any gateway\n", f.P99Ratio)
		} else {
			fmt.Fprintf(w, "victim p99 flooded/alone %.2f; flood outputs between a victim message's storing in ingress and its output: max %d, p99 %d (batch %d)\n",
				f.P99Ratio, f.FloodAheadMax, f.FloodAheadP99, f.Batch)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

// WriteJSON writes the report as indented JSON to path, creating its
// directory if needed.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("bench: report: %w", err)
		}
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: report: %w", err)
	}
	return nil
}

// writeStages prints where the gateway's batches spent their time, mean
// milliseconds per batch and stage.
func (r *Report) writeStages(w io.Writer) error {
	var rows []Result
	for _, s := range r.Scenarios {
		if len(s.Stages) > 0 {
			rows = append(rows, s)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "gateway stages, ms per batch	batch	")
	for _, g := range metrics.Gates {
		fmt.Fprintf(tw, "%s\t", g)
	}
	fmt.Fprintln(tw)
	for _, s := range rows {
		fmt.Fprintf(tw, "%s\t%.0f\t", s.Name, s.MeanBatch)
		for _, g := range metrics.Gates {
			if st, ok := s.Stages[g]; ok {
				fmt.Fprintf(tw, "%.3f\t", st.MeanMs)
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "note: stages are the gateway's agentgw_gate_duration_seconds, per batch: verify (the stateless gates of messages a batch took in, beside the decider), "+
		"ledger, decide (policy, opening, outputs, ledger entries), sign (one signature for the batch's tokens), commit (outcomes recorded and the synced ledger commit), "+
		"publish (the acker: the outputs' PubAcks, then the ingress acks); the decider runs ledger to commit in turn.")
	return err
}
