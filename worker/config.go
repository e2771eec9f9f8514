package worker

import (
	"fmt"
	"time"

	"github.com/mcrelay/mcr/controlproto"
	"github.com/mcrelay/mcr/internal/relaysock"
)

// Backend names accepted in Config.Backend and reported in
// stats.Snapshot.Backend.
const (
	// BackendAuto uses io_uring when the kernel offers every operation the
	// worker needs and falls back to BackendMmsg otherwise, logging why.
	BackendAuto = "auto"
	// BackendUring runs the loop on one io_uring: multishot receives on
	// the AF_PACKET sockets, sends, command reads and the timer.
	BackendUring = "uring"
	// BackendMmsg runs the same loop on poll(2), recvmmsg(2) and
	// sendmmsg(2), for kernels or sandboxes without io_uring.
	BackendMmsg = "mmsg"
)

// DefaultStatsInterval is the stats and heartbeat period when
// Config.StatsInterval is zero.
const DefaultStatsInterval = time.Second

// DefaultSocketRetry is how often sockets that failed to open are asked
// for again when Config.SocketRetry is zero: an output interface may have
// gained an address since.
const DefaultSocketRetry = 5 * time.Second

// Config describes one worker process. The zero value of each field means
// its default, except ID.
type Config struct {
	// ID is the worker's slot number, reported in every snapshot and log.
	ID int
	// Core is the CPU the event loop (and every thread of the process) is
	// pinned to; -1 leaves the affinity alone. Default 0 pins to CPU 0, so
	// callers that do not want pinning must say -1.
	Core int
	// Backend is BackendAuto (default when empty), BackendUring or
	// BackendMmsg.
	Backend string
	// StatsInterval is the period of stats snapshots, which double as the
	// heartbeat. Default DefaultStatsInterval.
	StatsInterval time.Duration
	// CommandFD, StatsFD, LogFD and SocketFD are the inherited fds; 0
	// means the positions fixed by controlproto (CommandFD, StatsFD, LogFD,
	// SocketFD).
	CommandFD, StatsFD, LogFD, SocketFD int
	// RxRing is the kind of each input socket's receive ring: RingFrames
	// (default when empty) or RingBlocks; see relaysock.Ring.
	RxRing string
	// RingBlocks is the number of blocks of each input socket's TPACKET_V3
	// receive ring (DefaultRingBlocks when 0); negative gives inputs no
	// ring, of either kind: every packet is received on its own, as from a
	// plain socket. Each block takes RingBlockSize bytes of kernel memory
	// per input per worker.
	RingBlocks int
	// RingFrames is the number of frames of each input socket's TPACKET_V2
	// receive ring (DefaultRingFrames when 0), rounded up to a multiple
	// of the RingBlockSize/RingFrameSize frames of a block. Each frame
	// takes RingFrameSize bytes of kernel memory per input per worker.
	RingFrames int
	// BusyPoll makes the event loop spin on its rings and its io_uring
	// instead of sleeping in the kernel between packets: the lowest
	// latency, for the price of the whole core the worker is pinned to.
	BusyPoll bool
	// Moderation is the longest nap after a batch of a frame ring under
	// load (moderator): DefaultModeration when 0, never when negative.
	// Longer naps cost latency at high rates and save wake-ups.
	Moderation time.Duration
	// RingTimeout is how long a ring block stays open for more packets
	// before the kernel hands it over anyway (DefaultRingTimeout when 0):
	// the most a packet waits in the ring at low rates. Whole milliseconds
	// from 1 ms to 1 s.
	RingTimeout time.Duration
	// SocketRetry is how often sockets that failed to open are asked for
	// again (DefaultSocketRetry when 0); the retries happen at the stats
	// ticks, so no more often than StatsInterval.
	SocketRetry time.Duration
	// User is the account the worker must run as: before its loop it
	// checks that every thread has the account's uid and gid, no
	// supplementary groups, no capabilities and no_new_privs (the
	// supervisor starts it so), and refuses to run otherwise. Empty skips
	// the check (tests, a supervisor that is not root).
	User string
}

// Receive ring defaults. A block holds about a hundred 1,024-byte
// datagrams, or one of the largest (64 KiB, reassembled or a UDP GSO
// aggregate); 64 blocks buffer as much as the socket receive buffer did
// without a ring (8 MiB), about 70 ms at 100,000 pps.
const (
	DefaultRingBlocks  = 64
	RingBlockSize      = relaysock.MinRingBlockSize
	DefaultRingTimeout = time.Millisecond
)

// Receive ring kinds (Config.RxRing).
const (
	// RingFrames: a TPACKET_V2 frame ring, each packet handed over as
	// soon as it is written. The default: the worker wakes on the first
	// packet, and under load finds many ready at once.
	RingFrames = "frames"
	// RingBlocks: a TPACKET_V3 block ring, blocks handed over full or
	// after Config.RingTimeout: fewer wake-ups at high rates, up to the
	// timeout of added latency at low ones.
	RingBlocks = "blocks"
)

// Frame ring defaults. A frame holds a packet of up to 1,944 bytes of IP
// (with its link-layer header, the frame's header and the virtio_net_hdr);
// larger ones are read from the socket (relaysock.Ring). A worker gets
// relaysock.DefaultFrames for its number of workers from the supervisor;
// DefaultRingFrames is what a worker that has its inputs to itself gets.
const (
	DefaultRingFrames = relaysock.MaxDefaultFrames
	RingFrameSize     = 2048
)

// DefaultModeration and MaxModeration bound the nap of a frame ring's
// worker under load (Config.Moderation): 1 ms, the block ring's timer,
// costs 0.92–1.35× what a block ring costs per packet from 50,000
// packets/s (docs/PERFORMANCE.md).
const (
	DefaultModeration = time.Millisecond
	MaxModeration     = 10 * time.Millisecond
)

// Check returns an error naming the first field of cfg out of range.
func (cfg Config) Check() error {
	_, err := cfg.withDefaults()
	return err
}

// withDefaults returns cfg with defaults filled in, or an error naming the
// field that is out of range.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.Backend == "" {
		cfg.Backend = BackendAuto
	}
	switch cfg.Backend {
	case BackendAuto, BackendUring, BackendMmsg:
	default:
		return cfg, fmt.Errorf("worker config: backend %q: want %s, %s or %s", cfg.Backend, BackendAuto, BackendUring, BackendMmsg)
	}
	if cfg.StatsInterval == 0 {
		cfg.StatsInterval = DefaultStatsInterval
	}
	if cfg.StatsInterval < 0 {
		return cfg, fmt.Errorf("worker config: negative stats interval %v", cfg.StatsInterval)
	}
	if cfg.SocketRetry == 0 {
		cfg.SocketRetry = DefaultSocketRetry
	}
	if cfg.SocketRetry < 0 {
		return cfg, fmt.Errorf("worker config: negative socket retry period %v", cfg.SocketRetry)
	}
	if cfg.Core < -1 {
		return cfg, fmt.Errorf("worker config: core %d: want a CPU number or -1", cfg.Core)
	}
	if cfg.RxRing == "" {
		cfg.RxRing = RingFrames
	}
	if cfg.RxRing != RingFrames && cfg.RxRing != RingBlocks {
		return cfg, fmt.Errorf("worker config: receive ring %q: want %s or %s", cfg.RxRing, RingFrames, RingBlocks)
	}
	if cfg.RingBlocks == 0 {
		cfg.RingBlocks = DefaultRingBlocks
	}
	if cfg.RingFrames == 0 {
		cfg.RingFrames = DefaultRingFrames
	}
	if cfg.RingFrames < 0 {
		return cfg, fmt.Errorf("worker config: %d receive ring frames: want 1 or more", cfg.RingFrames)
	}
	if cfg.RingTimeout == 0 {
		cfg.RingTimeout = DefaultRingTimeout
	}
	if cfg.Moderation == 0 {
		cfg.Moderation = DefaultModeration
	}
	if cfg.Moderation > MaxModeration {
		return cfg, fmt.Errorf("worker config: moderation %v: want at most %v", cfg.Moderation, MaxModeration)
	}
	if cfg.RingBlocks > 0 {
		// Both kinds, whichever is used: a flag out of range is an
		// error even while the other kind is chosen.
		for _, r := range []*relaysock.Ring{cfg.blockRing(), cfg.frameRing()} {
			if err := r.Validate(); err != nil {
				return cfg, fmt.Errorf("worker config: %w", err)
			}
		}
		if cfg.RingTimeout%time.Millisecond != 0 {
			return cfg, fmt.Errorf("worker config: receive ring timeout %v: want whole milliseconds", cfg.RingTimeout)
		}
	}
	if cfg.CommandFD == 0 {
		cfg.CommandFD = controlproto.CommandFD
	}
	if cfg.StatsFD == 0 {
		cfg.StatsFD = controlproto.StatsFD
	}
	if cfg.LogFD == 0 {
		cfg.LogFD = controlproto.LogFD
	}
	if cfg.SocketFD == 0 {
		cfg.SocketFD = controlproto.SocketFD
	}
	return cfg, nil
}

// ring returns the receive ring every input asks for, nil for none.
func (cfg *Config) ring() *relaysock.Ring {
	if cfg.RingBlocks < 0 {
		return nil
	}
	if cfg.RxRing == RingBlocks {
		return cfg.blockRing()
	}
	return cfg.frameRing()
}

func (cfg *Config) blockRing() *relaysock.Ring {
	return &relaysock.Ring{Blocks: cfg.RingBlocks, BlockSize: RingBlockSize, TimeoutMS: int(cfg.RingTimeout / time.Millisecond)}
}

func (cfg *Config) frameRing() *relaysock.Ring {
	perBlock := RingBlockSize / RingFrameSize
	return &relaysock.Ring{Blocks: (cfg.RingFrames + perBlock - 1) / perBlock, BlockSize: RingBlockSize, FrameSize: RingFrameSize}
}
