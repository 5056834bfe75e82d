//go:build !unix

package bench

import "time"

// processCPU is not measured on this platform: CPU and page faults per
// message read 0.
func processCPU() (time.Duration, uint64) { return 0, 0 }

// maxRSS is not measured on this platform.
func maxRSS() int64 { return 0 }
