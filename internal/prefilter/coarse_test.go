package prefilter

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestShrink(t *testing.T) {
	spans := []span{{10, 10}, {12, 12}, {20, 25}, {100, 100}, {103, 110}, {1000, 1000}}
	tests := []struct {
		name   string
		target int
		want   []span
	}{
		{"already fits", 8, spans},
		// Cost 8. Smallest gap first: 10|12 (2, cost unchanged), then
		// 100|103 (3, cost 7), then 12|20 (8, cost 5).
		{"merge the closest", 7, []span{{10, 12}, {20, 25}, {100, 110}, {1000, 1000}}},
		{"merge further", 5, []span{{10, 25}, {100, 110}, {1000, 1000}}},
		{"down to one span", 0, []span{{10, 1000}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := shrink(spans, tc.target)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(span{})); diff != "" {
				t.Errorf("shrink(%d) (-want +got):\n%s", tc.target, diff)
			}
		})
	}
}
