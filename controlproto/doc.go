// Package controlproto provides the two wire protocols of mcr and their
// message types.
//
// Operator protocol (mcrctl ⇄ supervisor): a unix stream socket
// carrying newline-delimited JSON, one object per line in each direction.
// A connection may pipeline any number of requests; replies come in request
// order. A request line may be at most MaxRequestSize (1 MiB) bytes; a longer
// line gets an invalid_argument reply and the rest of it is discarded.
// Requests are decoded strictly: unknown fields are errors that name them.
//
// Worker protocol (supervisor ⇄ worker): frames of a 4-byte
// big-endian length followed by that many bytes of JSON, at most
// MaxFrameSize (16 MiB). Commands (supervisor → worker, on the command
// socketpair): AddRule, RemoveRule, SyncRules, Shutdown. A SyncRules too big
// for one frame is split into parts that the worker applies atomically when
// the last part arrives. Stats (worker → supervisor, on the stats pipe): a
// stats.Snapshot per frame. Logs (worker → supervisor, on the log pipe): one
// JSON log record per line, each shorter than PIPE_BUF so a write is atomic.
// A frame that is too long or does not parse is a protocol error: the reader
// reports it and never panics or allocates more than the limit; it skips an
// oversized frame's body, so the frames after it are read normally.
// FrameReader reads frames from a blocking reader (the supervisor's pipe
// readers), FrameDecoder from chunks an event loop read itself (the worker).
// SyncCommands and SyncAssembler split and join SyncRules; HashWorkerRules
// is the ruleset hash both sides compare.
//
// Both directions of the operator protocol are here: DecodeRequest,
// LineReader and WriteResponse for the daemon, Client for mcrctl and tests.
// A Client's failures fall in three kinds that callers can tell apart: a
// daemon error (*Error, with its Code), an unreachable daemon (Dial's error
// wraps the errno: syscall.ENOENT, ECONNREFUSED, EACCES), and a connection
// the daemon closed (ErrClosed).
//
// The fds a worker inherits are fixed by position: CommandFD, StatsFD, LogFD.
package controlproto
