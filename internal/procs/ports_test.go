package procs

import (
	"net"
	"strconv"
	"testing"
)

// TestFreePortsBelowEphemeralRange: the ports are distinct, bindable, and
// outside the range from which the kernel hands out source ports and
// port-0 listeners, so no other process can be given one before its
// server binds it.
func TestFreePortsBelowEphemeralRange(t *testing.T) {
	// Off Linux the range is unknown and the kernel chooses: the ports
	// must still be distinct and free.
	eph, linux := ephemeralLow()
	ports, err := FreePorts(50)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Errorf("port %d returned twice", p)
		}
		seen[p] = true
		if linux && (p < lowestPort || p >= eph) {
			t.Errorf("port %d outside [%d, %d)", p, lowestPort, eph)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("port %d is not free: %v", p, err)
			continue
		}
		_ = l.Close()
	}
}
