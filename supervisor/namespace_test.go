package supervisor

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/stats"
)

func TestReportNamespaceCounters(t *testing.T) {
	td := startTestDaemon(t)
	tests := []struct {
		name    string
		netSNMP func() ([]byte, error)
		want    *stats.NamespaceCounters
	}{
		{"read", func() ([]byte, error) {
			return []byte("Ip: ReasmTimeout ReasmReqds ReasmOKs ReasmFails\nIp: 2 9 3 4\n"), nil
		}, &stats.NamespaceCounters{IPReasmReqds: 9, IPReasmOKs: 3, IPReasmFails: 4, IPReasmTimeout: 2}},
		{"cannot read", func() ([]byte, error) { return nil, errors.New("no /proc") }, nil},
		{"cannot parse", func() ([]byte, error) { return []byte("Udp: InDatagrams\nUdp: 1\n"), nil }, nil},
		{"not configured", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			td.d.netSNMP = tc.netSNMP
			if diff := cmp.Diff(tc.want, td.d.Report().Namespace); diff != "" {
				t.Errorf("namespace counters (-want +got):\n%s", diff)
			}
		})
	}
}
