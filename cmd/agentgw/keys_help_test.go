package main

import (
	"strings"
	"testing"
)

// TestKeysHelpSaysWhereSeedsGo: the keys group's help says what 'keys
// new' does with a seed: a new 0600 file, or stdout with --out -, which
// is where it is printed then; never that seeds go to files only.
func TestKeysHelpSaysWhereSeedsGo(t *testing.T) {
	help := mustRun(t, "", exitOK, "keys", "--help").stdout
	if strings.Contains(help, "files only") {
		t.Errorf("keys --help says seeds go to files only, but --out - prints one:\n%s", help)
	}
	for _, want := range []string{"new 0600 file", "--out -", "stdout"} {
		if !strings.Contains(help, want) {
			t.Errorf("keys --help lacks %q:\n%s", want, help)
		}
	}
	r := mustRun(t, "", exitOK, "keys", "new", "--type", "agent", "--out", "-")
	if !strings.HasPrefix(r.stdout, "SU") || !strings.Contains(r.stderr, "agent public key: U") {
		t.Errorf("keys new --out -: stdout starts %.2q, stderr %q; want the seed on stdout and the public key on stderr", r.stdout, r.stderr)
	}
}
