package supervisor

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLinkStateNames: rule and output states keep their names on the wire.
func TestLinkStateNames(t *testing.T) {
	got := []string{linkPending.String(), linkDown.String(), linkActive.String()}
	want := []string{"pending", "down", "active"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("state names (-want +got):\n%s", diff)
	}
}
