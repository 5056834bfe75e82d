//go:build unix

package bench

import (
	"runtime"
	"syscall"
	"time"
)

// processCPU returns the process's CPU time (user + system) and its
// minor page faults (a page touched for the first time since it was
// mapped or returned to the kernel) so far.
func processCPU() (time.Duration, uint64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), uint64(max(ru.Minflt, 0))
}

// maxRSS is getrusage's peak resident set of the process, in bytes
// (Linux reports KiB, Darwin bytes).
func maxRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return int64(ru.Maxrss)
	}
	return int64(ru.Maxrss) << 10
}
