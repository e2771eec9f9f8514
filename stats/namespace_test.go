package stats

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// snmpText is /proc/net/snmp as Linux 6.18 writes it, shortened after Udp.
const snmpText = `Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards InDelivers OutRequests OutDiscards OutNoRoutes ReasmTimeout ReasmReqds ReasmOKs ReasmFails FragOKs FragFails FragCreates OutTransmits
Ip: 2 64 9 0 0 0 0 0 7 3 0 0 3 7 2 5 0 0 0 3
Icmp: InMsgs InErrors InCsumErrors InDestUnreachs
Icmp: 0 0 0 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 2 0 0 0 0 0 0 0 0
`

func TestParseSNMP(t *testing.T) {
	tests := []struct {
		name, text string
		want       NamespaceCounters
		err        string
	}{
		{name: "kernel text", text: snmpText,
			want: NamespaceCounters{IPReasmReqds: 7, IPReasmOKs: 2, IPReasmFails: 5, IPReasmTimeout: 3}},
		{name: "names in another order", text: "Ip: ReasmFails ReasmTimeout ReasmOKs ReasmReqds\nIp: 1 2 3 18446744073709551615\n",
			want: NamespaceCounters{IPReasmReqds: 18446744073709551615, IPReasmOKs: 3, IPReasmFails: 1, IPReasmTimeout: 2}},
		{name: "no Ip lines", text: "Udp: InDatagrams\nUdp: 1\n", err: "read snmp counters: no Ip: names and values"},
		{name: "names without values", text: "Ip: ReasmFails\n", err: "read snmp counters: no Ip: names and values"},
		{name: "values missing", text: "Ip: ReasmTimeout ReasmReqds ReasmOKs ReasmFails\nIp: 1 2 3\n",
			err: "read snmp counters: 5 Ip: names but 4 values"},
		{name: "a counter missing", text: "Ip: ReasmTimeout ReasmReqds ReasmOKs\nIp: 1 2 3\n",
			err: "read snmp counters: no Ip: ReasmFails"},
		{name: "not a number", text: "Ip: ReasmTimeout ReasmReqds ReasmOKs ReasmFails\nIp: 1 2 x 4\n",
			err: `read snmp counters: Ip: ReasmOKs: strconv.ParseUint: parsing "x": invalid syntax`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSNMP([]byte(tc.text))
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseSNMPOfThisKernel parses the running kernel's file, where there
// is one: its format is the one that matters.
func TestParseSNMPOfThisKernel(t *testing.T) {
	text, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		t.Skipf("no /proc/net/snmp: %v", err)
	}
	if _, err := ParseSNMP(text); err != nil {
		t.Fatal(err)
	}
}
