package main

import (
	"os"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/internal/devenv"
)

// The development server gives its gateway no rights on the journal,
// lease and holds buckets: `agentgw run` refuses a scaled-out config at
// once rather than run a gateway that would stop at its first append.
func TestRunRefusesScaleOut(t *testing.T) {
	dir := t.TempDir()
	m, _, err := devenv.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(m.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString("\nscale_out:\n  instance: a\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, dir, 1, "run", "--dir", dir, "--port", "-1")
	if !strings.Contains(r.stderr, "does not scale out") || !strings.Contains(r.stderr, "remove scale_out") {
		t.Errorf("agentgw run with scale_out: %s; want a refusal naming scale_out", r)
	}
}
