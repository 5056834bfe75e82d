package bench

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestGCTimes: --gc-times writes one line per collection cycle of the
// measured phase, numbered, on the clock of --latencies (µs since the
// run's first publish); cycles older than the 256 the runtime keeps are
// counted as left out, never written with another cycle's time.
func TestGCTimes(t *testing.T) {
	file := filepath.Join(t.TempDir(), "gc.csv")
	r := &runner{cfg: Config{GCTimes: file}, n: 7}
	base := time.Now()
	sent := &sendLog{first: int64(2 * time.Millisecond)}
	u0 := snapshot()
	runtime.GC()
	runtime.GC()
	u1 := snapshot()
	elapsed := time.Since(base)
	if u1.gcs-u0.gcs < 2 {
		t.Fatalf("runtime.GC twice: %d cycles counted", u1.gcs-u0.gcs)
	}
	if u1.gcCPU < u0.gcCPU {
		t.Errorf("collector CPU went from %v to %v s", u0.gcCPU, u1.gcCPU)
	}
	lost, err := r.writeGCTimes("gateway/plain", base, sent, u0, u1)
	if err != nil || lost != 0 {
		t.Fatalf("writeGCTimes = %d lost, %v", lost, err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if lines[0]+"\n" != gcTimesHeader || len(lines) != 1+int(u1.gcs-u0.gcs) {
		t.Fatalf("file:\n%s\nwant the header and %d cycles", data, u1.gcs-u0.gcs)
	}
	for i, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) != 4 || f[0] != "gateway/plain" || f[1] != "7" || f[2] != strconv.Itoa(int(u0.gcs)+1+i) {
			t.Fatalf("line %q; want gateway/plain,7,%d,<µs>", l, int(u0.gcs)+1+i)
		}
		us, err := strconv.ParseInt(f[3], 10, 64)
		// The cycles ran after base, so after the first publish less 2 ms.
		if err != nil || us < -2000 || us > elapsed.Microseconds() {
			t.Errorf("cycle %s ended at %s µs; want between -2000 and %d", f[2], f[3], elapsed.Microseconds())
		}
	}

	// A run longer than the runtime's memory: 300 cycles, of which at
	// most 256 are written.
	s0 := snapshot()
	for range 300 {
		runtime.GC()
	}
	s1 := snapshot()
	from, to := s0.gcs, s1.gcs
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	lost, err = r.writeGCTimes("gateway/plain", base, sent, s0, s1)
	if err != nil {
		t.Fatal(err)
	}
	if want := to - from - 256; lost != want {
		t.Errorf("%d cycles: %d left out; want %d", to-from, lost, want)
	}
	data, err = os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), "\n") - 1; n != int(to-from-lost) {
		t.Errorf("%d cycles, %d left out: %d written", to-from, lost, n)
	}
	prev := int64(-1 << 62)
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n")[1:] {
		f := strings.Split(l, ",")
		us, _ := strconv.ParseInt(f[3], 10, 64)
		if us < prev {
			t.Errorf("cycle %s ended at %d µs, before the cycle ahead of it (%d): another cycle's time", f[2], us, prev)
		}
		prev = us
	}
}
