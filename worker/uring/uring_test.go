package uring

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *Config
		want    Config
		wantErr string
	}{
		{name: "nil", cfg: nil, want: Config{Entries: 256, CQEntries: 1024}},
		{name: "entries only", cfg: &Config{Entries: 64}, want: Config{Entries: 64, CQEntries: 256}},
		{name: "all set", cfg: &Config{Entries: 8, CQEntries: 8, MaxInFlight: 3}, want: Config{Entries: 8, CQEntries: 8, MaxInFlight: 3}},
		{name: "entries too big", cfg: &Config{Entries: 65536}, wantErr: "io_uring config: Entries 65536 above the kernel limit 32768"},
		{name: "cq below sq", cfg: &Config{Entries: 64, CQEntries: 32}, wantErr: "io_uring config: CQEntries 32 below Entries 64"},
		{name: "cq too big", cfg: &Config{Entries: 64, CQEntries: 1 << 17}, wantErr: "io_uring config: CQEntries 131072 above the kernel limit 65536"},
		{name: "negative cap", cfg: &Config{MaxInFlight: -1}, wantErr: "io_uring config: negative MaxInFlight -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.withDefaults()
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("withDefaults() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("withDefaults() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("withDefaults() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpString(t *testing.T) {
	tests := []struct {
		op   Op
		want string
	}{
		{OpNop, "NOP"},
		{OpRecv, "RECV"},
		{OpSendZC, "SEND_ZC"},
		{OpAsyncCancel, "ASYNC_CANCEL"},
		{Op(200), "OP(200)"},
	}
	for _, tt := range tests {
		if got := tt.op.String(); got != tt.want {
			t.Errorf("Op(%d).String() = %q, want %q", uint8(tt.op), got, tt.want)
		}
	}
}

func TestCQEFlags(t *testing.T) {
	tests := []struct {
		name     string
		flags    uint32
		wantMore bool
		wantBID  uint16
		wantBuf  bool
	}{
		{name: "plain", flags: 0},
		{name: "more only", flags: CQEFMore, wantMore: true},
		{name: "buffer 100", flags: 0x640001, wantBID: 100, wantBuf: true},
		{name: "buffer 65535 with more", flags: 0xffff<<16 | CQEFBuffer | CQEFMore, wantMore: true, wantBID: 65535, wantBuf: true},
		{name: "id bits without F_BUFFER", flags: 7 << 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := CQE{Flags: tt.flags}
			bid, ok := c.BufferID()
			if c.More() != tt.wantMore || bid != tt.wantBID || ok != tt.wantBuf {
				t.Errorf("flags %#x: More()=%v BufferID()=(%d, %v), want %v (%d, %v)",
					tt.flags, c.More(), bid, ok, tt.wantMore, tt.wantBID, tt.wantBuf)
			}
		})
	}
}

// probeResult builds a struct io_uring_probe as the kernel fills it: ops up
// to lastOp listed, those in supported flagged IO_URING_OP_SUPPORTED.
func probeResult(lastOp Op, supported ...Op) []byte {
	buf := make([]byte, probeHeaderSize+probeMaxOps*probeOpSize)
	buf[0] = byte(lastOp)
	buf[1] = byte(lastOp) + 1
	for i := 0; i <= int(lastOp); i++ {
		buf[probeHeaderSize+i*probeOpSize] = byte(i)
	}
	for _, op := range supported {
		buf[probeHeaderSize+int(op)*probeOpSize+2] = probeSupported
	}
	return buf
}

func TestParseProbe(t *testing.T) {
	tests := []struct {
		name    string
		buf     []byte
		ask     []Op
		wantErr string
	}{
		{name: "all present", buf: probeResult(OpRecv, OpNop, OpSend, OpRecv), ask: []Op{OpNop, OpSend, OpRecv}},
		{name: "nothing asked", buf: probeResult(OpNop), ask: nil},
		{name: "one unsupported, one past last_op", buf: probeResult(OpRecv, OpNop, OpSend),
			ask: []Op{OpNop, OpRecv, OpSendZC}, wantErr: "io_uring: kernel lacks opcodes RECV, SEND_ZC"},
		{name: "flag set but past last_op", buf: func() []byte {
			b := probeResult(OpSend, OpSend)
			b[probeHeaderSize+int(OpRecv)*probeOpSize+2] = probeSupported
			return b
		}(), ask: []Op{OpRecv}, wantErr: "io_uring: kernel lacks opcodes RECV"},
		{name: "short buffer", buf: make([]byte, 4), ask: []Op{OpNop},
			wantErr: "io_uring probe: result of 4 bytes is shorter than its header"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := parseProbe(tt.buf, tt.ask)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parseProbe() = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("parseProbe() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestMissingOpsIsUnavailable(t *testing.T) {
	err := parseProbe(probeResult(OpNop, OpNop), []Op{OpRecv})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("errors.Is(%v, ErrUnavailable) = false", err)
	}
	var missing *MissingOpsError
	if !errors.As(err, &missing) || !cmp.Equal(missing.Ops, []Op{OpRecv}) {
		t.Errorf("errors.As(%v) = %v, want Ops [RECV]", err, missing)
	}
}

func TestSetupFlagsString(t *testing.T) {
	tests := []struct {
		flags uint32
		want  string
	}{
		{0, ""},
		{setupCQSize, "cqsize"},
		{setupNoSQArray | setupSingleIssuer | setupDeferTaskrun, "single_issuer,defer_taskrun,no_sqarray"},
		{setupCQSize | 1<<1, "cqsize,0x2"},
	}
	for _, tt := range tests {
		if got := setupFlagsString(tt.flags); got != tt.want {
			t.Errorf("setupFlagsString(%#x) = %q, want %q", tt.flags, got, tt.want)
		}
	}
}
