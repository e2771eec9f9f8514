package relaysock

import "testing"

func TestRingValidate(t *testing.T) {
	ok := Ring{Blocks: 64, BlockSize: 128 << 10, TimeoutMS: 1}
	for _, tc := range []struct {
		name string
		edit func(r *Ring)
		want string
	}{
		{"default geometry", func(*Ring) {}, ""},
		{"block too small for a 64 KiB datagram", func(r *Ring) { r.BlockSize = 64 << 10 },
			"receive ring: block size 65536: want a power of two from 131072 to 4194304 bytes"},
		{"block not a power of two", func(r *Ring) { r.BlockSize = 192 << 10 },
			"receive ring: block size 196608: want a power of two from 131072 to 4194304 bytes"},
		{"no blocks", func(r *Ring) { r.Blocks = 0 }, "receive ring: 0 blocks: want 1 to 4096"},
		{"too much memory", func(r *Ring) { r.Blocks, r.BlockSize = 4096, 1<<20 },
			"receive ring: 4096 blocks of 1048576 bytes exceed 256 MiB"},
		{"no timeout", func(r *Ring) { r.TimeoutMS = 0 }, "receive ring: block timeout 0 ms: want 1 to 1000"},
		{"frame ring, no timeout needed", func(r *Ring) { r.FrameSize, r.TimeoutMS = 2048, 0 }, ""},
		{"frame not a multiple of 16", func(r *Ring) { r.FrameSize = 2000 },
			"receive ring: frame size 2000: want a multiple of 16 from 256 bytes that divides the block size 131072"},
		{"frame too small", func(r *Ring) { r.FrameSize = 128 },
			"receive ring: frame size 128: want a multiple of 16 from 256 bytes that divides the block size 131072"},
		{"frame does not divide the block", func(r *Ring) { r.FrameSize = 3072 },
			"receive ring: frame size 3072: want a multiple of 16 from 256 bytes that divides the block size 131072"},
		{"too many frames", func(r *Ring) { r.Blocks, r.FrameSize = 2048, 256 },
			"receive ring: 1048576 frames: want at most 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.edit(&r)
			err := r.Validate()
			if got := errString(err); got != tc.want {
				t.Errorf("Validate() = %q, want %q", got, tc.want)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestDefaultFrames: an input's 32,768 default frames are shared by its
// workers, from 4,096 to 16,384 each.
func TestDefaultFrames(t *testing.T) {
	for _, tc := range []struct{ workers, want int }{
		{0, 16384}, {1, 16384}, {2, 16384}, {3, 10922}, {4, 8192}, {8, 4096}, {64, 4096},
	} {
		if got := DefaultFrames(tc.workers); got != tc.want {
			t.Errorf("DefaultFrames(%d) = %d, want %d", tc.workers, got, tc.want)
		}
	}
}
