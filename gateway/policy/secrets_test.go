package policy

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

// TestProblemsHideSeeds: cedar-go quotes the token it stopped at, and a
// seed file listed under policies is one identifier token to it. The
// problem keeps the file, line and column; the seed is not in it. Nor is
// a seed pasted where a policy file's path belongs.
func TestProblemsHideSeeds(t *testing.T) {
	kp, err := nkeys.CreateServer()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	dir := t.TempDir()
	for _, src := range []string{string(seed), string(seed) + "\n", "# key\n" + string(seed) + "\n"} {
		f := writeFile(t, dir, "signing.nk", src)
		err := Check(f)
		if err == nil {
			t.Fatalf("a seed file loaded as policies")
		}
		var p *Problem
		if !errors.As(err, &p) || p.File != "signing.nk" || p.Line == 0 || p.Column == 0 || !strings.HasPrefix(p.Msg, "parse error: ") {
			t.Errorf("problem = %#v; want signing.nk, its line and column, and a parse error", p)
		}
		if strings.Contains(err.Error(), string(seed[:20])) {
			t.Errorf("the problem quotes the seed: %v", err)
		}
	}

	// The message cedar-go writes without a position (m == nil) is
	// redacted as well.
	if p := parseProblem("x.cedar", errors.New("some error near "+string(seed))); strings.Contains(p.Error(), string(seed[:20])) {
		t.Errorf("problem without a position quotes the seed: %v", p)
	}

	err = Check(filepath.Join(dir, string(seed)))
	if err == nil || strings.Contains(err.Error(), string(seed[:20])) {
		t.Errorf("a missing file named by a seed: %v", err)
	}
}
