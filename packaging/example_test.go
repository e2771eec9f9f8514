package packaging

import (
	"net/netip"
	"os"
	"regexp"
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
		// WhenJoined counts the outputs that follow their receivers.
		WhenJoined int
	}
	var got []shape
	for _, r := range c.Rules {
		family := "IPv4"
		if netip.MustParseAddr(r.Input.Group).Is6() {
			family = "IPv6"
		}
		joined := 0
		for _, o := range r.Outputs {
			if o.WhenJoined {
				joined++
			}
		}
		got = append(got, shape{r.ID, family, len(r.Outputs), joined})
	}
	want := []shape{{"market-a", "IPv4", 2, 0}, {"studio-v6", "IPv6", 1, 1}}
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

// TestInstalledEmptyConfig checks that the config `make install` and the
// packages put on a new host, mcr.json (no rules), loads: a config must say
// `"rules": []`.
func TestInstalledEmptyConfig(t *testing.T) {
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`install -m 0644 packaging/mcr\.json \$\(CONFDIR\)/mcr\.json`).Match(mk) {
		t.Fatal("Makefile: does not install packaging/mcr.json as $(CONFDIR)/mcr.json")
	}
	data, err := os.ReadFile("mcr.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ruleset.DecodeConfig(data)
	if err != nil || len(c.Rules) != 0 {
		t.Errorf("the empty config make install writes, %q: %d rules, %v; want it to load with none", data, len(c.Rules), err)
	}
}
