package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/subjects/reason"
)

// scrape reads the gateway's /metrics over HTTP and returns the samples
// of one counter family keyed by their labels.
func scrape(t *testing.T, addr, family string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	must(t, err)
	out := map[string]float64{}
	f, ok := families[family]
	if !ok {
		return out
	}
	for _, m := range f.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		out[strings.Join(labels, ",")] = m.GetCounter().GetValue()
	}
	return out
}

func TestMetricsMatchDecisions(t *testing.T) {
	h := newHarness(t)
	h.cfg.Metrics.Listen = "127.0.0.1:0"
	h.start()
	<-h.gw.Ready()
	var seqs []uint64
	for range 3 {
		seqs = append(seqs, h.send(h.body(nil))) // allowed
	}
	body := h.body(nil)
	h.send(body)
	seqs = append(seqs, h.send(body)) // replay
	seqs = append(seqs, h.send(h.body(func(b *envelope.Builder) { b.Target = "no.such.target" })))
	sealed, _ := h.sealedRefund(h.agent, 500000, nil)
	seqs = append(seqs, h.send(sealed)) // content denied after one open
	for _, s := range seqs {
		h.outputFor(s)
	}
	got := scrape(t, h.gw.MetricsAddr(), "agentgw_decisions_total")
	want := map[string]float64{
		"reason=,route=allow,tenant=tenant_a":                                     4,
		"reason=replay_detected,route=deny,tenant=tenant_a":                       1,
		"reason=unknown_target,route=deny,tenant=tenant_a":                        1,
		fmt.Sprintf("reason=%s,route=deny,tenant=tenant_a", reason.ContentDenied): 1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("agentgw_decisions_total{%s} = %v; want %v (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("decision series = %v; want exactly %v", got, want)
	}
	if opens := scrape(t, h.gw.MetricsAddr(), "agentgw_payload_opens_total")[""]; opens != 1 {
		t.Errorf("agentgw_payload_opens_total = %v; want 1", opens)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + h.gw.MetricsAddr() + path)
		must(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d %s", path, resp.StatusCode, b)
		}
	}
	resp, err := http.Get("http://" + h.gw.MetricsAddr() + "/metrics")
	must(t, err)
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h.emitted = append(h.emitted, string(text))
	h.stop()
	h.scanSecrets()
}
