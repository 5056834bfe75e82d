package metrics

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestReadyz: /readyz answers 503 with the reason readiness gives, 200
// once it gives none; /healthz answers 200 throughout.
func TestReadyz(t *testing.T) {
	m := New()
	var why error = errors.New("gateway: NATS connection RECONNECTING")
	s, err := Listen("127.0.0.1:0", m, func() error { return why })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(t.Context())
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "RECONNECTING") {
		t.Errorf("/readyz while not ready = %d %q; want 503 and the reason", code, body)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d; want 200", code)
	}
	why = nil
	if code, body := get("/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz when ready = %d %q; want 200 ready", code, body)
	}
}

// TestPreset: series exist at zero before any event; the build info
// series is 1.
func TestPreset(t *testing.T) {
	m := New()
	m.Preset([]string{"tenant_a"})
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, f := range fams {
		got[f.GetName()] = len(f.GetMetric())
		if f.GetName() == "agentgw_build_info" && f.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Errorf("agentgw_build_info = %v; want 1", f.GetMetric()[0].GetGauge().GetValue())
		}
	}
	for name, min := range map[string]int{
		"agentgw_decisions_total": 20, "agentgw_budget_denials_total": 1, "agentgw_approvals_total": len(ApprovalEvents),
		"agentgw_gate_duration_seconds": len(Gates), "agentgw_partition_events_total": len(PartitionEvents), "agentgw_build_info": 1,
	} {
		if got[name] < min {
			t.Errorf("%s has %d series after Preset; want at least %d", name, got[name], min)
		}
	}
}
