package faults

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/agentgw/agentgw/internal/procs"
)

var (
	soakFlag = flag.Duration("soak", 0, "TestSoak duration; 0 runs the short CI version")
	rateFlag = flag.Int("rate", 0, "load in messages per second (0: the test's default)")
	keepFlag = flag.Bool("keep", false, "keep the test directories (logs, stores) and print where they are")
	seedFlag = flag.Uint64("seed", 0, "fault schedule seed, as a failing run logs it (0: from the clock)")
)

// bins are the binaries built once for this test binary.
var bins procs.Binaries

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "agentgw-faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	bins, err = procs.Build(ctx, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if testing.Verbose() {
		fmt.Printf("faults: built nats-server and agentgw in %s\n", time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}
