// Package stats provides mcr's counters: the snapshot a worker pushes to the
// supervisor, the aggregation of snapshots across workers into the GetStats
// report, and the rates (pps, bps) derived from counter deltas.
//
// Worker counters start again from zero when a worker restarts; the
// aggregator folds each worker's previous life into a base so that the totals
// it reports never go backwards.
//
// What the aggregator expects of workers: counters in a Snapshot are
// cumulative over the worker process's life; a rule's counters start from 0
// when the worker removes the rule (RemoveRule, or a SyncRules without it)
// and are kept, not restarted, for a rule a SyncRules keeps under the same
// id; bytes are UDP payload bytes. The aggregator copes with a counter that
// goes backwards anyway, but it cannot tell a rule restarted at 0 that has
// since counted past its old value from one that was never restarted.
package stats
