package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Lines returns the events of an audit message, one JSON object each, in
// order, as sub-slices of data. Empty lines are skipped.
func Lines(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(bytes.TrimSpace(line)) > 0 {
			out = append(out, line)
		}
	}
	return out
}

// Decode returns the events of an audit message. A line that is not an
// event is an error naming its position; the events before it are
// returned with it.
func Decode(data []byte) ([]Event, error) {
	lines := Lines(data)
	out := make([]Event, 0, len(lines))
	for i, l := range lines {
		var ev Event
		if err := json.Unmarshal(l, &ev); err != nil {
			return out, fmt.Errorf("audit: event %d of the message: %w", i+1, err)
		}
		out = append(out, ev)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("audit: message holds no event")
	}
	return out, nil
}

// AppendLine appends e to an audit message being built: a newline first
// unless msg is empty, then e's JSON.
func (e *Event) AppendLine(msg []byte) []byte {
	if len(msg) > 0 {
		msg = append(msg, '\n')
	}
	return e.AppendJSON(msg)
}
