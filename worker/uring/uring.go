package uring

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrUnavailable reports that this kernel or environment refuses io_uring:
// the syscall is missing (ENOSYS), disabled by kernel.io_uring_disabled or a
// seccomp filter (EPERM), memory is short (ENOMEM), or a needed feature or
// opcode is missing. Errors from New and Probe match it with errors.Is and
// still carry the underlying errno, so callers can fall back to another
// backend and log why.
var ErrUnavailable = errors.New("io_uring unavailable")

// Config sizes a Ring. A nil *Config means all defaults.
type Config struct {
	// Entries is the number of SQ entries; the kernel rounds it up to a
	// power of two. Default 256, maximum 32768.
	Entries uint32
	// CQEntries is the number of CQ entries (IORING_SETUP_CQSIZE); the
	// kernel rounds it up to a power of two. Default 4*Entries, minimum
	// Entries, maximum 65536.
	CQEntries uint32
	// MaxInFlight caps operations handed out by GetSQE whose final CQE has
	// not been reaped yet, so the CQ cannot overflow. Default: the CQ size
	// the kernel granted. A multishot operation counts once however many
	// CQEs it produces, so leave room in the CQ for its bursts.
	MaxInFlight int
}

// Limits from include/uapi/linux/io_uring.h (IORING_MAX_ENTRIES,
// IORING_MAX_CQ_ENTRIES).
const (
	maxEntries   = 32768
	maxCQEntries = 2 * maxEntries
)

// withDefaults returns a copy of cfg with zero fields defaulted, or an error
// naming the field the kernel would refuse.
func (cfg *Config) withDefaults() (Config, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.Entries == 0 {
		c.Entries = 256
	}
	if c.CQEntries == 0 {
		c.CQEntries = 4 * c.Entries
	}
	switch {
	case c.Entries > maxEntries:
		return c, fmt.Errorf("io_uring config: Entries %d above the kernel limit %d", c.Entries, maxEntries)
	case c.CQEntries < c.Entries:
		return c, fmt.Errorf("io_uring config: CQEntries %d below Entries %d", c.CQEntries, c.Entries)
	case c.CQEntries > maxCQEntries:
		return c, fmt.Errorf("io_uring config: CQEntries %d above the kernel limit %d", c.CQEntries, maxCQEntries)
	case c.MaxInFlight < 0:
		return c, fmt.Errorf("io_uring config: negative MaxInFlight %d", c.MaxInFlight)
	}
	return c, nil
}

// Op is an io_uring opcode (enum io_uring_op).
type Op uint8

// Opcodes this package prepares or probes for. Values are the kernel's.
const (
	OpNop            Op = 0
	OpReadv          Op = 1
	OpWritev         Op = 2
	OpPollAdd        Op = 6
	OpPollRemove     Op = 7
	OpSendmsg        Op = 9
	OpRecvmsg        Op = 10
	OpTimeout        Op = 11
	OpTimeoutRemove  Op = 12
	OpAsyncCancel    Op = 14
	OpLinkTimeout    Op = 15
	OpRead           Op = 22
	OpWrite          Op = 23
	OpSend           Op = 26
	OpRecv           Op = 27
	OpProvideBuffers Op = 31
	OpSendZC         Op = 47
	OpSendmsgZC      Op = 48
	OpReadMultishot  Op = 49
)

var opNames = map[Op]string{
	OpNop:            "NOP",
	OpReadv:          "READV",
	OpWritev:         "WRITEV",
	OpPollAdd:        "POLL_ADD",
	OpPollRemove:     "POLL_REMOVE",
	OpSendmsg:        "SENDMSG",
	OpRecvmsg:        "RECVMSG",
	OpTimeout:        "TIMEOUT",
	OpTimeoutRemove:  "TIMEOUT_REMOVE",
	OpAsyncCancel:    "ASYNC_CANCEL",
	OpLinkTimeout:    "LINK_TIMEOUT",
	OpRead:           "READ",
	OpWrite:          "WRITE",
	OpSend:           "SEND",
	OpRecv:           "RECV",
	OpProvideBuffers: "PROVIDE_BUFFERS",
	OpSendZC:         "SEND_ZC",
	OpSendmsgZC:      "SENDMSG_ZC",
	OpReadMultishot:  "READ_MULTISHOT",
}

// String returns the kernel's name without the IORING_OP_ prefix, e.g.
// "SEND_ZC", or "OP(n)" for opcodes this package does not name.
func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return "OP(" + strconv.Itoa(int(o)) + ")"
}

// SQE flags (IOSQE_*), for SQE.SetFlags. IOSQE_CQE_SKIP_SUCCESS is left out
// on purpose: an operation that posts no CQE would never leave the in-flight
// count.
const (
	SQEFixedFile    uint8 = 1 << 0 // fd is an index into the registered file table
	SQEIODrain      uint8 = 1 << 1 // start only after all earlier SQEs complete
	SQEIOLink       uint8 = 1 << 2 // next SQE starts only after this one succeeds
	SQEIOHardlink   uint8 = 1 << 3 // like SQEIOLink, but the chain survives failure
	SQEAsync        uint8 = 1 << 4 // skip the non-blocking attempt, go to io-wq
	SQEBufferSelect uint8 = 1 << 5 // pick the buffer from the SQE's buffer group
)

// CQE flags (IORING_CQE_F_*).
const (
	CQEFBuffer       uint32 = 1 << 0 // upper 16 bits hold the provided buffer id
	CQEFMore         uint32 = 1 << 1 // more CQEs follow for this request (multishot, SEND_ZC)
	CQEFSockNonempty uint32 = 1 << 2 // the socket still had data after this receive
	CQEFNotif        uint32 = 1 << 3 // SEND_ZC notification: the buffer may be reused
)

// cqeBufferShift is IORING_CQE_BUFFER_SHIFT: the buffer id's place in Flags.
const cqeBufferShift = 16

// CQE is one completion, laid out exactly as struct io_uring_cqe (16 bytes).
type CQE struct {
	UserData uint64 // copied from the SQE
	Res      int32  // result: >= 0 on success, -errno on failure
	Flags    uint32 // CQEF* bits; provided buffer id in the upper 16 bits
}

// More reports whether the request stays active and will post further CQEs
// (IORING_CQE_F_MORE). A multishot CQE without it is the last one: re-arm.
func (c *CQE) More() bool { return c.Flags&CQEFMore != 0 }

// BufferID returns the provided buffer the kernel filled for this CQE, and
// false when the CQE carries no buffer (IORING_CQE_F_BUFFER unset).
func (c *CQE) BufferID() (uint16, bool) {
	if c.Flags&CQEFBuffer == 0 {
		return 0, false
	}
	return uint16(c.Flags >> cqeBufferShift), true
}

// MissingOpsError is returned by Probe when the kernel lacks opcodes. It
// matches ErrUnavailable with errors.Is.
type MissingOpsError struct {
	Ops []Op // missing opcodes, in the order they were asked for
}

// Error names the missing opcodes, e.g.
// "io_uring: kernel lacks opcodes RECV, SEND_ZC".
func (e *MissingOpsError) Error() string {
	names := make([]string, len(e.Ops))
	for i, op := range e.Ops {
		names[i] = op.String()
	}
	return "io_uring: kernel lacks opcodes " + strings.Join(names, ", ")
}

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *MissingOpsError) Is(target error) bool { return target == ErrUnavailable }

// struct io_uring_probe: last_op u8 @0, ops_len u8 @1, ops[] @16, each
// struct io_uring_probe_op {op u8 @0, resv u8, flags u16 @2, resv2 u32}.
const (
	probeHeaderSize = 16
	probeOpSize     = 8
	probeMaxOps     = 256
	probeSupported  = 1 // IO_URING_OP_SUPPORTED
)

// parseProbe checks a filled struct io_uring_probe for ops and returns a
// *MissingOpsError naming every unsupported one, or nil.
func parseProbe(buf []byte, ops []Op) error {
	if len(buf) < probeHeaderSize {
		return fmt.Errorf("io_uring probe: result of %d bytes is shorter than its header", len(buf))
	}
	lastOp, opsLen := int(buf[0]), int(buf[1])
	var missing []Op
	for _, op := range ops {
		i := int(op)
		off := probeHeaderSize + i*probeOpSize
		ok := i <= lastOp && i < opsLen && off+probeOpSize <= len(buf) &&
			(uint16(buf[off+2])|uint16(buf[off+3])<<8)&probeSupported != 0
		if !ok {
			missing = append(missing, op)
		}
	}
	if missing != nil {
		return &MissingOpsError{Ops: missing}
	}
	return nil
}

// Setup flags (IORING_SETUP_*) New asks for.
const (
	setupCQSize       uint32 = 1 << 3
	setupSubmitAll    uint32 = 1 << 7
	setupCoopTaskrun  uint32 = 1 << 8
	setupTaskrunFlag  uint32 = 1 << 9
	setupSingleIssuer uint32 = 1 << 12
	setupDeferTaskrun uint32 = 1 << 13
	setupNoSQArray    uint32 = 1 << 16
)

var setupFlagNames = []struct {
	flag uint32
	name string
}{
	{setupSingleIssuer, "single_issuer"},
	{setupDeferTaskrun, "defer_taskrun"},
	{setupCoopTaskrun, "coop_taskrun"},
	{setupTaskrunFlag, "taskrun_flag"},
	{setupCQSize, "cqsize"},
	{setupSubmitAll, "submit_all"},
	{setupNoSQArray, "no_sqarray"},
}

// setupFlagsString names the setup flags in a fixed order, e.g.
// "single_issuer,defer_taskrun,cqsize".
func setupFlagsString(flags uint32) string {
	var names []string
	for _, f := range setupFlagNames {
		if flags&f.flag != 0 {
			names = append(names, f.name)
			flags &^= f.flag
		}
	}
	if flags != 0 {
		names = append(names, fmt.Sprintf("%#x", flags))
	}
	return strings.Join(names, ",")
}
