//go:build race

package supervisor

// raceEnabled is set when tests run with the race detector, which slows
// them too much for throughput targets.
const raceEnabled = true
