package controlproto

import (
	"testing"
)

// BenchmarkFrameDecoder decodes a stream of AddRule frames fed in 64 KiB
// chunks, as the worker's command reader does.
func BenchmarkFrameDecoder(b *testing.B) {
	var stream []byte
	rules := testRules(1000)
	for i := range rules {
		var err error
		if stream, err = AppendFrame(stream, WorkerCommand{Type: WAddRule, Rule: &rules[i]}); err != nil {
			b.Fatal(err)
		}
	}
	d := NewFrameDecoder(0)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		frames := 0
		for rest := stream; len(rest) > 0; {
			n := min(64<<10, len(rest))
			d.Feed(rest[:n])
			rest = rest[n:]
			for {
				_, ok, err := d.Next()
				if err != nil {
					b.Fatal(err)
				}
				if !ok {
					break
				}
				frames++
			}
		}
		if frames != len(rules) {
			b.Fatalf("%d frames, want %d", frames, len(rules))
		}
	}
}
