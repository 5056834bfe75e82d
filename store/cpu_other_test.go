//go:build !unix

package store

import "time"

// processCPU is not measured on this platform: cpu-ns/msg reads 0.
func processCPU() time.Duration { return 0 }
