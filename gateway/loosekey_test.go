package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLooseKeyFileWarned: the gateway starts with a signing key file
// open to others, and logs a warning naming the key, the file and its
// mode, never the seed; the curve key, its owner's alone, gets none.
func TestLooseKeyFileWarned(t *testing.T) {
	h := newHarness(t)
	signing := filepath.Join(h.dir, "signing.nk")
	must(t, os.Chmod(signing, 0o644))
	h.start()
	<-h.gw.Ready()
	h.stop()
	logs := h.logs.String()
	var warned []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, "a secret key file is open to its group or others") {
			warned = append(warned, line)
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0], `"key":"keys.signing"`) || !strings.Contains(warned[0], `"mode":"0644"`) {
		t.Fatalf("warnings %q; want one, of keys.signing at 0644", warned)
	}
	seed, err := os.ReadFile(signing)
	must(t, err)
	if strings.Contains(logs, strings.TrimSpace(string(seed))) {
		t.Error("the log holds the seed")
	}
}
