//go:build !linux

package worker

import "time"

// threadCPU is 0 where there is no per-thread CPU clock: the benchmarks'
// cpu-ns metrics then read 0.
func threadCPU() time.Duration { return 0 }
