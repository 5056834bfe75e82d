package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// logDigest summarises the gateway logs under dir (every instance and
// incarnation: logs-*/gateway-*.log) for a failed test, whose directory
// is gone after it: warnings and errors counted by message and error,
// and the longest stretches without a decision while the gateway was
// deciding. It quotes no field but message, error and time, and the
// suite scans these logs for leaked plaintext (check).
func logDigest(dir string) string {
	paths, _ := filepath.Glob(filepath.Join(dir, "logs-*", "gateway-*.log"))
	var b strings.Builder
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		counts := map[string]int{}
		first := map[string]string{}
		var decided []time.Time
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			var l struct {
				Level, Message, Error, Event string
				Time                         time.Time
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			if l.Event == "decision" {
				decided = append(decided, l.Time)
				continue
			}
			if l.Level != "warn" && l.Level != "error" {
				continue
			}
			k := l.Level + ": " + l.Message
			if l.Error != "" {
				k += ": " + trim(l.Error, 100)
			}
			if counts[k] == 0 {
				first[k] = l.Time.Format("15:04:05")
			}
			counts[k]++
		}
		_ = f.Close()
		fmt.Fprintf(&b, "%s: %d decisions\n", filepath.Join(filepath.Base(filepath.Dir(p)), filepath.Base(p)), len(decided))
		keys := make([]string, 0, len(counts))
		for k := range counts {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(x, y string) int { return counts[y] - counts[x] })
		for _, k := range keys[:min(len(keys), 15)] {
			fmt.Fprintf(&b, "  %5d × %s (first at %s)\n", counts[k], k, first[k])
		}
		for _, g := range longestGaps(decided, 3) {
			fmt.Fprintf(&b, "  no decision for %s after %s\n", g.d, g.at.Format("15:04:05"))
		}
	}
	return b.String()
}

type gap struct {
	at time.Time
	d  time.Duration
}

// longestGaps returns the n longest intervals between consecutive
// decision times (the log's times are to the second), longest first.
func longestGaps(ts []time.Time, n int) []gap {
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	var gs []gap
	for i := 1; i < len(ts); i++ {
		if d := ts[i].Sub(ts[i-1]); d > time.Second {
			gs = append(gs, gap{ts[i-1], d})
		}
	}
	slices.SortFunc(gs, func(a, b gap) int { return int(b.d - a.d) })
	return gs[:min(len(gs), n)]
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// TestLongestGaps: the stretches between decisions, longest first, those
// of a second or less left out.
func TestLongestGaps(t *testing.T) {
	at := func(s int) time.Time { return time.Unix(1_800_000_000+int64(s), 0) }
	got := longestGaps([]time.Time{at(0), at(1), at(9), at(10), at(13), at(13)}, 3)
	if len(got) != 2 || got[0].d != 8*time.Second || !got[0].at.Equal(at(1)) || got[1].d != 3*time.Second {
		t.Fatalf("longestGaps = %+v; want 8s after 1, 3s after 10", got)
	}
}
