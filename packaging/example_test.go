package packaging

import (
	"net/netip"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/ruleset"
)

// TestExampleConfig checks that mcr.example.json loads as mcrd's --config
// would load it, and that it is in the form `mcrctl config save` writes, so
// saving an unchanged example leaves the file as it is.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("mcr.example.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ruleset.DecodeConfig(data)
	if err != nil {
		t.Fatalf("mcr.example.json does not load: %v", err)
	}
	type shape struct {
		ID      string
		Family  string
		Outputs int
	}
	var got []shape
	for _, r := range c.Rules {
		family := "IPv4"
		if netip.MustParseAddr(r.Input.Group).Is6() {
			family = "IPv6"
		}
		got = append(got, shape{r.ID, family, len(r.Outputs)})
	}
	want := []shape{{"market-a", "IPv4", 2}, {"studio-v6", "IPv6", 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("example rules (-want +got):\n%s", diff)
	}
	saved, err := ruleset.EncodeConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(data), string(saved)); diff != "" {
		t.Errorf("mcr.example.json differs from what config save writes (-file +saved):\n%s", diff)
	}
}
