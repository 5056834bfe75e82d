package bench

import (
	"slices"
	"testing"
	"time"
)

// TestLongestGap: the longest stretch without a new output, counted from
// the first publish, whatever the order the outputs were recorded in.
func TestLongestGap(t *testing.T) {
	ms := func(n int64) int64 { return n * int64(time.Millisecond) }
	for _, c := range []struct {
		from int64
		seen []int64
		want time.Duration
	}{
		{ms(0), []int64{ms(2), ms(3), ms(5003), ms(5004)}, 5000 * time.Millisecond},
		{ms(0), []int64{ms(5004), ms(3), ms(2), ms(5003)}, 5000 * time.Millisecond},
		{ms(10), []int64{ms(900), ms(901)}, 890 * time.Millisecond},
		{ms(0), nil, 0},
	} {
		if got := longestGap(c.from, slices.Clone(c.seen)); got != c.want {
			t.Errorf("longestGap(%d, %v) = %s; want %s", c.from, c.seen, got, c.want)
		}
	}
}

// TestStallAfter: a second at full speed and for fast paced runs, ten
// intervals for slow ones.
func TestStallAfter(t *testing.T) {
	for _, c := range []struct{ rate, want float64 }{{0, 1}, {6000, 1}, {10, 1}, {2, 5}, {0.5, 20}} {
		if got := stallAfter(c.rate); got != c.want {
			t.Errorf("stallAfter(%v) = %v; want %v", c.rate, got, c.want)
		}
	}
}
