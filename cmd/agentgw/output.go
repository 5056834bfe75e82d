package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// clean makes a value from a stream safe for one terminal cell: control
// characters (escape sequences, tabs, newlines) become spaces; empty is "-".
func clean(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, s)
}

// short abbreviates a public nkey for a table: "UABC…WXYZ".
func short(k string) string {
	if len(k) <= 12 {
		return clean(k)
	}
	return clean(k[:5] + "…" + k[len(k)-4:])
}

// stamp formats a time for a table, in UTC.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// table prints aligned rows. In stream mode (a --follow) each row is
// written at once, its cells padded to the header's widths, since rows
// to come cannot be measured.
type table struct {
	tw     *tabwriter.Writer
	w      io.Writer
	widths []int
	stream bool
}

// column is a header and, for stream mode, its cell width.
type column struct {
	name  string
	width int
}

func newTable(w io.Writer, stream bool, cols ...column) *table {
	t := &table{w: w, stream: stream}
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
		t.widths = append(t.widths, max(c.width, len(c.name)))
	}
	if !stream {
		t.tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	}
	t.row(names...)
	return t
}

func (t *table) row(cells ...string) {
	if !t.stream {
		fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
		return
	}
	var b strings.Builder
	for i, c := range cells {
		if i == len(cells)-1 {
			b.WriteString(c)
			break
		}
		fmt.Fprintf(&b, "%-*s  ", t.widths[i], c)
	}
	fmt.Fprintln(t.w, b.String())
}

func (t *table) flush() {
	if t.tw != nil {
		_ = t.tw.Flush()
	}
}

// jsonLines writes one JSON object per line.
type jsonLines struct{ enc *json.Encoder }

func newJSONLines(w io.Writer) *jsonLines {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &jsonLines{enc: enc}
}

func (j *jsonLines) write(v any) error { return j.enc.Encode(v) }
