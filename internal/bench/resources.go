package bench

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"time"
)

// usage is a snapshot of what the whole process has consumed: the system
// under test, the embedded server (when there is one), the publisher and
// the observer. Deltas between two snapshots are charged to a scenario;
// everything but the system under test is the same in every scenario, so
// same-run comparisons hold.
type usage struct {
	cpu     time.Duration // user + system CPU time
	faults  uint64        // minor page faults
	mallocs uint64
	bytes   uint64 // cumulative bytes allocated
	gcs     uint32
	gcCPU   float64 // the runtime's estimate of the CPU seconds its collector used
	// gcEnds is runtime.MemStats.PauseEnd: when the last 256 cycles'
	// marking ended (wall clock, ns since 1970), cycle n's at
	// (n+255)%256.
	gcEnds [256]uint64
}

// gcCPUMetric is the collector's CPU time: marking (dedicated, fractional,
// idle and assists) and pauses, an estimate the runtime keeps.
const gcCPUMetric = "/cpu/classes/gc/total:cpu-seconds"

func snapshot() usage {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	cpu, faults := processCPU()
	gc := []metrics.Sample{{Name: gcCPUMetric}}
	metrics.Read(gc)
	var gcCPU float64
	if gc[0].Value.Kind() == metrics.KindFloat64 {
		gcCPU = gc[0].Value.Float64()
	}
	return usage{cpu: cpu, faults: faults, mallocs: ms.Mallocs, bytes: ms.TotalAlloc, gcs: ms.NumGC, gcCPU: gcCPU, gcEnds: ms.PauseEnd}
}

// peakRSS tracks the resident set peak of a scenario. On Linux the
// kernel's high-water mark (VmHWM) is reset at the start of each scenario
// by writing 5 to /proc/self/clear_refs, so the peak is the scenario's
// own; elsewhere, or when the reset is refused, it is getrusage's maxrss,
// the peak of the process so far, and Source says so.
type peakRSS struct {
	source string
	start  int64 // resident set at the start, bytes (0 when unknown)
}

const (
	rssScenario = "VmHWM, reset per scenario"
	rssProcess  = "maxrss, process lifetime"
)

func startPeakRSS() peakRSS {
	start, _ := procStatusKiB("VmRSS:")
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err == nil {
		if _, ok := procStatusKiB("VmHWM:"); ok {
			return peakRSS{source: rssScenario, start: start << 10}
		}
	}
	return peakRSS{source: rssProcess, start: start << 10}
}

// bytes returns the peak in bytes.
func (p peakRSS) bytes() int64 {
	if p.source == rssScenario {
		if kib, ok := procStatusKiB("VmHWM:"); ok {
			return kib << 10
		}
	}
	return maxRSS()
}

func procStatusKiB(field string) (int64, bool) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte(field)) {
			continue
		}
		f := bytes.Fields(line[len(field):])
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseInt(string(f[0]), 10, 64)
		return n, err == nil
	}
	return 0, false
}
