package procs

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// ephemeralRangeFile holds the kernel's ephemeral port range on Linux:
// the ports it hands to outgoing connections and to listeners on port 0.
const ephemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

// lowestPort is the lowest port FreePorts chooses: above the well-known
// and most registered service ports.
const lowestPort = 10000

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago, for servers that must know their ports (and their peers')
// before they start, and keep them across a restart.
//
// A port is chosen at random below the kernel's ephemeral range, so that
// between choosing it and binding it, or while its server is down for a
// restart, no outgoing connection and no listener on port 0 anywhere on
// the machine can be given it: with many test processes connecting at
// once, a freed ephemeral port is soon reused as some connection's source
// port. Where the range cannot be read, the kernel chooses (port 0).
func FreePorts(n int) ([]int, error) {
	lo, hi := lowestPort, 0
	if eph, ok := ephemeralLow(); ok && eph-lowestPort >= 1000 {
		hi = eph
	}
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := listenFree(lo, hi)
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// listenFree listens on a free port in [lo, hi), or on port 0 when hi is
// 0. The listener is held open by the caller while it chooses the rest,
// so the ports are distinct.
func listenFree(lo, hi int) (net.Listener, error) {
	if hi == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("procs: free port: %w", err)
		}
		return l, nil
	}
	var last error
	for range 200 {
		p := lo + rand.IntN(hi-lo)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err == nil {
			return l, nil
		}
		last = err
	}
	return nil, fmt.Errorf("procs: no free port in [%d, %d): %w", lo, hi, last)
}

// ephemeralLow returns the first port of the kernel's ephemeral range.
func ephemeralLow() (int, bool) {
	data, err := os.ReadFile(ephemeralRangeFile)
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 0, false
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= 0 {
		return 0, false
	}
	return lo, true
}
