//go:build !unix

package bench

import "time"

// processCPU is not measured on this platform: CPU per message reads 0.
func processCPU() time.Duration { return 0 }

// maxRSS is not measured on this platform.
func maxRSS() int64 { return 0 }
