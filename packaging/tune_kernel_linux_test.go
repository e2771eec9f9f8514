package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/internal/netnstest"
)

// TestTuneKernelScript runs scripts/tune-kernel.sh on a veth inside a
// throwaway namespace, with /proc/sys/net/core and /etc/sysctl.d replaced by
// temporary directories in a private mount namespace, so the host's own
// settings are never touched: --dry-run changes nothing, a real run fixes
// every setting, and a second run finds nothing to change.
func TestTuneKernelScript(t *testing.T) {
	for _, tool := range []string{"ethtool", "unshare", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not installed", tool)
		}
	}
	script, err := filepath.Abs("../scripts/tune-kernel.sh")
	if err != nil {
		t.Fatal(err)
	}
	a, b := netnstest.New(t, "tka"), netnstest.New(t, "tkb")
	netnstest.Veth(t, a, "tk0", nil, b, "tk1", nil)
	a.MustRun("ethtool", "-K", "tk0", "gro", "on", "rx-udp-gro-forwarding", "on")

	sys, etc := t.TempDir(), t.TempDir()
	writeSysctls(t, sys, map[string]string{"rmem_max": "212992", "wmem_max": "8388608", "netdev_max_backlog": "1000"})
	run := func(args ...string) string {
		t.Helper()
		cmd := "mount --bind " + sys + " /proc/sys/net/core && mount --bind " + etc + " /etc/sysctl.d && exec " +
			script + " " + strings.Join(args, " ")
		return a.MustRun("unshare", "--mount", "--propagation", "private", "sh", "-c", cmd)
	}
	features := func() string {
		t.Helper()
		var on []string
		for _, line := range strings.Split(a.MustRun("ethtool", "-k", "tk0"), "\n") {
			name, state, _ := strings.Cut(line, ": ")
			switch name {
			case "generic-receive-offload", "rx-udp-gro-forwarding", "rx-gro-list":
				on = append(on, name+"="+state)
			}
		}
		return strings.Join(on, " ")
	}

	out := run("--dry-run", "--persist", "tk0")
	for _, want := range []string{
		"would run: sysctl -qw net.core.rmem_max=8388608\n",
		"ok: net.core.wmem_max = 8388608 (>= 4194304)\n",
		"would run: sysctl -qw net.core.netdev_max_backlog=16384\n",
		"would run: ethtool -K tk0 rx-udp-gro-forwarding off gro off\n",
		"4 change(s) needed; nothing was changed (--dry-run)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("--dry-run output lacks %q:\n%s", want, out)
		}
	}
	checkSysctls(t, sys, map[string]string{"rmem_max": "212992", "wmem_max": "8388608", "netdev_max_backlog": "1000"})
	if got, want := features(), "generic-receive-offload=on rx-gro-list=off rx-udp-gro-forwarding=on"; got != want {
		t.Errorf("after --dry-run: features %q, want %q unchanged", got, want)
	}

	run("--persist", "tk0")
	checkSysctls(t, sys, map[string]string{"rmem_max": "8388608", "wmem_max": "8388608", "netdev_max_backlog": "16384"})
	if got, want := features(), "generic-receive-offload=off rx-gro-list=off rx-udp-gro-forwarding=off"; got != want {
		t.Errorf("after a run: features %q, want %q", got, want)
	}
	conf, err := os.ReadFile(filepath.Join(etc, "90-mcr.conf"))
	if err != nil {
		t.Fatal(err)
	}
	wantConf := "# Written by mcr scripts/tune-kernel.sh; see that script for why.\n" +
		"net.core.rmem_max = 8388608\nnet.core.wmem_max = 8388608\nnet.core.netdev_max_backlog = 16384\n"
	if diff := cmp.Diff(wantConf, string(conf)); diff != "" {
		t.Errorf("90-mcr.conf (-want +got):\n%s", diff)
	}

	if out := run("--persist", "tk0"); !strings.HasSuffix(out, "nothing to change\n") {
		t.Errorf("second run changed something:\n%s", out)
	}
}

func writeSysctls(t *testing.T, dir string, values map[string]string) {
	t.Helper()
	for name, v := range values {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func checkSysctls(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for name := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got[name] = strings.TrimSpace(string(b))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("sysctls (-want +got):\n%s", diff)
	}
}
