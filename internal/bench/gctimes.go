package bench

import (
	"bufio"
	"runtime"
	"strconv"
	"time"
)

// gcTimesHeader names the columns of Config.GCTimes.
const gcTimesHeader = "scenario,run,cycle,mark_end_us\n"

// writeGCTimes appends to Config.GCTimes one line per garbage-collection
// cycle of the process numbered after from and up to to (the cycles a
// run's measured phase saw end): the run's scenario name and number, the
// cycle's number and when its marking ended (the end of its last
// stop-the-world pause, runtime.MemStats.PauseEnd), in µs since the
// run's first publish, the clock of Config.Latencies. The runtime keeps
// the last 256 cycles' times: it returns how many of the run's were
// older and left out. The file gets the header when it is empty.
func (r *runner) writeGCTimes(name string, base time.Time, sent *sendLog, from, to uint32) (lost uint32, err error) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	first := base.UnixNano() + sent.first
	err = appendCSV(r.cfg.GCTimes, "gc times", gcTimesHeader, func(w *bufio.Writer) error {
		var line []byte
		for n := from + 1; n <= to; n++ {
			// PauseEnd[(n+255)%256] is cycle n's while fewer than 256
			// have ended since.
			if ms.NumGC-n >= uint32(len(ms.PauseEnd)) {
				lost++
				continue
			}
			end := int64(ms.PauseEnd[(n+255)%uint32(len(ms.PauseEnd))])
			line = append(line[:0], name...)
			line = append(line, ',')
			line = strconv.AppendInt(line, int64(r.n), 10)
			line = append(line, ',')
			line = strconv.AppendUint(line, uint64(n), 10)
			line = append(line, ',')
			line = strconv.AppendInt(line, (end-first)/1e3, 10)
			line = append(line, '\n')
			if _, err := w.Write(line); err != nil {
				return err
			}
		}
		return nil
	})
	return lost, err
}
