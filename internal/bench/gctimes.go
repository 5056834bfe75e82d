package bench

import (
	"bufio"
	"strconv"
	"time"
)

// gcTimesHeader names the columns of Config.GCTimes.
const gcTimesHeader = "scenario,run,cycle,mark_end_us\n"

// writeGCTimes appends to Config.GCTimes one line per garbage-collection
// cycle of the process that ended between snapshots u0 and u1 (the
// cycles a run's measured phase saw end): the run's scenario name and
// number, the cycle's number and when its marking ended (the end of its
// last stop-the-world pause, runtime.MemStats.PauseEnd), in µs since the
// run's first publish, the clock of Config.Latencies. The runtime keeps
// the last 256 cycles' times at u1: it returns how many of the run's were
// older and left out. The file gets the header when it is empty.
func (r *runner) writeGCTimes(name string, base time.Time, sent *sendLog, u0, u1 usage) (lost uint32, err error) {
	first := base.UnixNano() + sent.first
	ring := uint32(len(u1.gcEnds))
	err = appendCSV(r.cfg.GCTimes, "gc times", gcTimesHeader, func(w *bufio.Writer) error {
		var line []byte
		for n := u0.gcs + 1; n <= u1.gcs; n++ {
			// Cycle n's time is at (n+255)%256 while fewer than 256
			// cycles have ended since.
			if u1.gcs-n >= ring {
				lost++
				continue
			}
			end := int64(u1.gcEnds[(n+ring-1)%ring])
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
