package querier

import (
	"net/netip"
	"testing"
	"time"
)

type nopSender struct{}

func (nopSender) SendQuery(*Message, netip.Addr, netip.Addr) error { return nil }

// benchRouter returns a non-querying router whose table holds n groups,
// 239.0.x.y, each EXCLUDE({}).
func benchRouter(b *testing.B, n int) (*Router, time.Time) {
	r, err := NewRouter(IPv4, 1, nil, nopSender{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	m := Message{Kind: KindRecords, Protocol: IGMPv3}
	for i := 0; i < n; i++ {
		m.Records = append(m.Records, Record{Type: IsExclude, Group: netip.AddrFrom4([4]byte{239, 0, byte(i >> 8), byte(i)})})
		if len(m.Records) == 100 {
			r.Receive(now, netip.MustParseAddr("10.0.0.5"), &m)
			m.Records = m.Records[:0]
		}
	}
	if r.Len() != n {
		b.Fatalf("table has %d groups, want %d", r.Len(), n)
	}
	return r, now
}

// BenchmarkReport100Records processes an IGMPv3 report of 100 records on a
// table of 10,000 groups: what a host with 100 groups sends in answer to
// each general query. "refresh" renews existing groups with IS_EX({}),
// "sources" gives each an ALLOW of 4 sources and takes them back with
// BLOCK, every iteration.
func BenchmarkReport100Records(b *testing.B) {
	for _, tc := range []struct {
		name string
		recs func(i int) []Record
	}{
		{"refresh", func(i int) []Record {
			return []Record{{Type: IsExclude, Group: netip.AddrFrom4([4]byte{239, 0, byte(i >> 8), byte(i)})}}
		}},
		{"sources", func(i int) []Record {
			g := netip.AddrFrom4([4]byte{239, 0, byte(i >> 8), byte(i)})
			s := addrs("10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.4")
			return []Record{{Type: Allow, Group: g, Sources: s}, {Type: Block, Group: g, Sources: s}}
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r, now := benchRouter(b, 10000)
			m := Message{Kind: KindRecords, Protocol: IGMPv3}
			for i := 0; len(m.Records) < 100; i += 97 {
				m.Records = append(m.Records, tc.recs(i%10000)...)
			}
			m.Records = m.Records[:100]
			src := netip.MustParseAddr("10.0.0.5")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now = now.Add(time.Millisecond)
				r.Receive(now, src, &m)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/100, "ns/record")
		})
	}
}

// BenchmarkParseReport parses a 100-record IGMPv3 report into a reused
// Message.
func BenchmarkParseReport(b *testing.B) {
	m := Message{Kind: KindRecords, Protocol: IGMPv3}
	for i := 0; i < 100; i++ {
		m.Records = append(m.Records, Record{Type: IsExclude, Group: netip.AddrFrom4([4]byte{239, 0, 0, byte(i)}), Sources: addrs("10.1.0.1")})
	}
	msg, err := AppendIGMP(nil, &m)
	if err != nil {
		b.Fatal(err)
	}
	var into Message
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for i := 0; i < b.N; i++ {
		if err := ParseIGMP(msg, &into); err != nil {
			b.Fatal(err)
		}
	}
}
