package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
)

// latenciesHeader names the columns of Config.Latencies.
const latenciesHeader = "scenario,run,ingress_seq,published_us,stored_us,output_us,latency_us\n"

// writeLatencies appends one line per measured message of a run to
// Config.Latencies: the run's scenario name and number (its data
// directory's), the message's ingress sequence, when it was published
// (paced: when it was due), when the publisher had its PubAck and when
// its first output was seen, in µs since the run's first publish, and
// the latency the report's histogram took. A time not observed is empty.
// The file gets the header when it is empty.
func (r *runner) writeLatencies(name string, sent *sendLog, obs *observer) error {
	us := func(b []byte, t int64) []byte {
		if t == 0 {
			return b
		}
		return strconv.AppendInt(b, (t-sent.first)/1e3, 10)
	}
	return appendCSV(r.cfg.Latencies, "latencies", latenciesHeader, func(w *bufio.Writer) error {
		var line []byte
		for i, seq := range sent.seq {
			if seq == 0 {
				continue
			}
			seen := obs.seen[seq].Load()
			line = append(line[:0], name...)
			line = append(line, ',')
			line = strconv.AppendInt(line, int64(r.n), 10)
			line = append(line, ',')
			line = strconv.AppendUint(line, seq, 10)
			line = append(line, ',')
			line = strconv.AppendInt(line, (sent.at[i]-sent.first)/1e3, 10)
			line = append(line, ',')
			line = us(line, sent.stored[i])
			line = append(line, ',')
			line = us(line, seen)
			line = append(line, ',')
			if seen != 0 {
				line = strconv.AppendInt(line, histUS(sent.at[i], seen), 10)
			}
			line = append(line, '\n')
			if _, err := w.Write(line); err != nil {
				return err
			}
		}
		return nil
	})
}

// appendCSV appends to file what write writes, with header first when the
// file is empty; what names the file in errors.
func appendCSV(file, what, header string, write func(*bufio.Writer) error) (err error) {
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("bench: %s: %w", what, err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("bench: %s: %w", what, cerr)
		}
	}()
	w := bufio.NewWriter(f)
	if fi, err := f.Stat(); err == nil && fi.Size() == 0 {
		_, _ = w.WriteString(header)
	}
	if err := write(w); err != nil {
		return fmt.Errorf("bench: %s: %w", what, err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("bench: %s: %w", what, err)
	}
	return nil
}
