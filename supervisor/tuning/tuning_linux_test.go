package tuning

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/mcrelay/mcr/internal/netnstest"
)

// TestEthtoolFeaturesOfLoopback reads the features of lo, which needs no
// privilege, and checks them against the kernel's names.
func TestEthtoolFeaturesOfLoopback(t *testing.T) {
	h := readHostTuning([]string{"lo", "lo", "mcr-absent0"})
	if len(h.ifaces) != 1 || h.ifaces[0].name != "lo" {
		t.Fatalf("interfaces read: %+v, want lo once and the absent one skipped", h.ifaces)
	}
	f := h.ifaces[0].features
	for _, name := range []string{"rx-gro", "rx-udp-gro-forwarding", "rx-gro-list", "rx-lro", "tx-checksum-ip-generic"} {
		if _, ok := f[name]; !ok {
			t.Errorf("features of lo lack %q (got %d features)", name, len(f))
		}
	}
	if f["rx-lro"] {
		t.Errorf("lo reports rx-lro active; the loopback device has no LRO")
	}
}

// TestTuningWarnsAboutUDPGROOnVeth turns UDP GRO forwarding on for a veth
// input with ethtool and checks that mcrd's own reading sees it, agrees
// with ethtool, and warns; then turns it off again.
func TestTuningWarnsAboutUDPGROOnVeth(t *testing.T) {
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Skip("skipping: ethtool not installed (apt-get install ethtool) to switch features for the test")
	}
	a, b := netnstest.New(t, "tunea"), netnstest.New(t, "tuneb")
	netnstest.Veth(t, a, "tune0", nil, b, "tune1", nil)

	check := func(wantGRO bool) {
		t.Helper()
		var h hostTuning
		var warns []string
		if err := a.Do(func() error {
			h = readHostTuning([]string{"tune0"})
			warns = tuningAdvice(h, "tune-kernel.sh")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(h.ifaces) != 1 || h.ifaces[0].driver != "veth" {
			t.Fatalf("interfaces read in %s: %+v, want tune0 with driver veth", a.Name, h.ifaces)
		}
		f := h.ifaces[0].features
		out := a.MustRun("ethtool", "-k", "tune0")
		for _, name := range []string{"rx-udp-gro-forwarding", "rx-gro-list"} {
			if want := name + ": " + onOff(f[name]); !strings.Contains(out, want) {
				t.Errorf("mcrd reads %q, ethtool -k says:\n%s", want, out)
			}
		}
		var gotGRO bool
		for _, w := range warns {
			gotGRO = gotGRO || strings.HasPrefix(w, "input interface tune0 has GRO with rx-udp-gro-forwarding on:")
		}
		if gotGRO != wantGRO {
			t.Errorf("GRO warning given: %v, want %v; warnings: %q", gotGRO, wantGRO, warns)
		}
	}

	check(false)
	a.MustRun("ethtool", "-K", "tune0", "gro", "on", "rx-udp-gro-forwarding", "on")
	check(true)
	a.MustRun("ethtool", "-K", "tune0", "rx-udp-gro-forwarding", "off")
	check(false)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
