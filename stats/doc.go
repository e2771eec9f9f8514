// Package stats provides mcr's counters: the snapshot a worker pushes to the
// supervisor, the aggregation of snapshots across workers into the GetStats
// report, and the rates (pps, bps) derived from counter deltas.
//
// Worker counters start again from zero when a worker restarts; the
// aggregator folds each worker's previous life into a base so that the totals
// it reports never go backwards.
package stats
