package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/subjects/reason"
)

// scrape reads the gateway's /metrics over HTTP and returns the samples
// of one counter or gauge family keyed by their labels.
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
		v := m.GetCounter().GetValue()
		if g := m.GetGauge(); g != nil {
			v = g.GetValue()
		}
		out[strings.Join(labels, ",")] = v
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
	for k, v := range got {
		if _, ok := want[k]; !ok && v != 0 {
			t.Errorf("agentgw_decisions_total{%s} = %v; want 0 (only %v counted)", k, v, want)
		}
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

// getStatus returns the status code and body of GET path on addr.
func getStatus(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	must(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetricsPresetSeries: every documented labelled series exists from
// the first scrape, at zero, before any message was decided; and the
// connection, partition and build series are there.
func TestMetricsPresetSeries(t *testing.T) {
	h := newHarness(t)
	h.cfg.Metrics.Listen = "127.0.0.1:0"
	h.start()
	<-h.gw.Ready()
	addr := h.gw.MetricsAddr()
	decisions := scrape(t, addr, "agentgw_decisions_total")
	for _, tenant := range []string{"tenant_a", "tenant_b", UnroutableTenant} {
		for _, k := range []string{
			"reason=,route=allow,tenant=" + tenant,
			"reason=,route=approval,tenant=" + tenant,
			"reason=" + string(reason.ReplayDetected) + ",route=deny,tenant=" + tenant,
			"reason=" + string(reason.BudgetExceeded) + ",route=deny,tenant=" + tenant,
		} {
			if v, ok := decisions[k]; !ok || v != 0 {
				t.Errorf("agentgw_decisions_total{%s} = %v (present %v); want a zero series from the start", k, v, ok)
			}
		}
	}
	for _, in := range reason.All {
		if in.Stage != reason.StageConsumer {
			continue
		}
		if _, ok := decisions["reason="+string(in.Code)+",route=deny,tenant=tenant_a"]; ok {
			t.Errorf("agentgw_decisions_total has consumer-side reason %s, which no gateway decision carries", in.Code)
		}
	}
	for family, keys := range map[string][]string{
		"agentgw_budget_denials_total":    {"tenant=tenant_a", "tenant=tenant_b"},
		"agentgw_approvals_total":         {"event=requested", "event=granted", "event=denied", "event=expired", "event=withdrawn"},
		"agentgw_reloads_total":           {"result=ok", "result=error"},
		"agentgw_ledger_prune_runs_total": {"result=ok", "result=error"},
		"agentgw_operator_requests_total": {"kind=dry_run,result=ok", "kind=replay,result=ok"},
		"agentgw_partition_events_total":  {"event=acquired", "event=lost", "event=restarted"},
		"agentgw_nats_reconnects_total":   {""},
	} {
		got := scrape(t, addr, family)
		for _, k := range keys {
			if _, ok := got[k]; !ok {
				t.Errorf("%s{%s} missing at start (have %v)", family, k, got)
			}
		}
	}
	if v := scrape(t, addr, "agentgw_ledger_disk_bytes")[""]; v <= 0 {
		t.Errorf("agentgw_ledger_disk_bytes = %v; want the ledger's disk usage (%d bytes now)", v, h.gw.ledger.Stats().DiskBytes)
	}
	if v, ok := scrape(t, addr, "agentgw_ledger_l0_sublevels")[""]; !ok || v != float64(h.gw.ledger.Stats().L0Sublevels) {
		t.Errorf("agentgw_ledger_l0_sublevels = %v (present %v); want the ledger's, %d", v, ok, h.gw.ledger.Stats().L0Sublevels)
	}
	_, text := getStatus(t, addr, "/metrics")
	for _, want := range []string{
		"agentgw_nats_connected 1", "agentgw_partitions_held 1", "agentgw_ready 1",
		`agentgw_gate_duration_seconds_count{gate="verify"} 0`, `agentgw_gate_duration_seconds_count{gate="publish"} 0`,
		"agentgw_build_info{go_version=",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	h.emitted = append(h.emitted, text)
	h.stop()
	h.scanSecrets()
}

// TestReadinessFollowsNATS: /readyz answers ready once the gateway
// serves, not ready while its NATS server is down, and ready again once
// the server is back; the connection series follow.
func TestReadinessFollowsNATS(t *testing.T) {
	h := newHarness(t)
	h.allowErrors = true // the outage makes fetches and prunes fail
	stopNATS, startNATS := h.serverOnDisk()
	h.cfg.Metrics.Listen = "127.0.0.1:0"
	h.start()
	<-h.gw.Ready()
	addr := h.gw.MetricsAddr()
	waitFor := func(what string, want int, series string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := getStatus(t, addr, "/readyz")
			_, text := getStatus(t, addr, "/metrics")
			if code == want && strings.Contains(text, series) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz = %d %q, /metrics has %q: %v; want %d", what, code, body, series, strings.Contains(text, series), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("serving", http.StatusOK, "agentgw_nats_connected 1")

	stopNATS()
	waitFor("NATS down", http.StatusServiceUnavailable, "agentgw_nats_connected 0")
	if code, body := getStatus(t, addr, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "NATS connection") {
		t.Errorf("/readyz with NATS down = %d %q; want 503 naming the connection", code, body)
	}
	if code, _ := getStatus(t, addr, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with NATS down = %d; want 200: the process is up", code)
	}

	startNATS()
	waitFor("NATS back", http.StatusOK, "agentgw_nats_reconnects_total 1")

	// And it decides again.
	h.outputFor(h.send(h.body(nil)))
	h.stop()
	if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
		resp.Body.Close()
		t.Errorf("/readyz after Run returned = %d; want the listener closed", resp.StatusCode)
	}
}
