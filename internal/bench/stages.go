package bench

import (
	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/metrics"
)

// Stage is the time a gateway spent in one stage of its batch pipeline
// during the measured phase, from its own agentgw_gate_duration_seconds
// histogram: how many batches passed through the stage and their mean.
type Stage struct {
	Batches uint64  `json:"batches"`
	MeanMs  float64 `json:"mean_ms"`
}

// stageTotals are observations and seconds per gate, summed over the
// gateways of a system.
type stageTotals map[string]struct {
	n   uint64
	sec float64
}

const gateHistogram = "agentgw_gate_duration_seconds"

// gateTotals reads the gateways' stage histograms.
func gateTotals(gws ...*gateway.Gateway) stageTotals {
	t := stageTotals{}
	for _, gw := range gws {
		mfs, err := gw.Metrics().Registry.Gather()
		if err != nil {
			continue // a report without stages; the run itself is unaffected
		}
		for _, mf := range mfs {
			if mf.GetName() != gateHistogram {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() != "gate" {
						continue
					}
					v := t[l.GetValue()]
					v.n += m.GetHistogram().GetSampleCount()
					v.sec += m.GetHistogram().GetSampleSum()
					t[l.GetValue()] = v
				}
			}
		}
	}
	return t
}

// stagesBetween is what happened per stage between two readings, in
// the pipeline's order; a stage that ran no batch, or whose counters
// went back (a restarted gateway), is left out.
func stagesBetween(a, b stageTotals) map[string]Stage {
	out := map[string]Stage{}
	for _, g := range metrics.Gates {
		x, y := a[g], b[g]
		if y.n <= x.n {
			continue
		}
		n := y.n - x.n
		out[g] = Stage{Batches: n, MeanMs: (y.sec - x.sec) / float64(n) * 1e3}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
