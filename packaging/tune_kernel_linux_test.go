package packaging

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/internal/netnstest"
)

// TestTuneKernelScript runs scripts/tune-kernel.sh on a veth inside a
// throwaway namespace, with /proc/sys/net/core and /etc/sysctl.d replaced by
// temporary directories in a private mount namespace, so the host's own
// settings are never touched: --dry-run changes nothing, a real run fixes
// every setting it owns and leaves plain GRO alone, and a second run finds
// nothing to change.
func TestTuneKernelScript(t *testing.T) {
	netnstest.RequireTools(t, "", "ethtool", "unshare", "sysctl")
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
		"would run: ethtool -K tk0 rx-udp-gro-forwarding off\n",
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
	if got, want := features(), "generic-receive-offload=on rx-gro-list=off rx-udp-gro-forwarding=off"; got != want {
		t.Errorf("after a run: features %q, want %q (plain GRO left alone)", got, want)
	}
	conf, err := os.ReadFile(filepath.Join(etc, "90-mcr.conf"))
	if err != nil {
		t.Fatal(err)
	}
	wantConf := "# Written by mcr tune-kernel.sh; see that script for why.\n" +
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

// TestTuneKernelDryRunInNamespace runs the script as an operator would
// inside a container: in a fresh network namespace, without the host-wide
// net.core.netdev_max_backlog, with --dry-run. It must report what it
// would change, skip what the namespace lacks, leave every feature as it
// was, exit 0; and exit 1 with a clear message for an interface that does
// not exist or when ethtool is missing, never installing anything.
func TestTuneKernelDryRunInNamespace(t *testing.T) {
	netnstest.RequireTools(t, "", "ethtool", "bash")
	script, err := filepath.Abs("../scripts/tune-kernel.sh")
	if err != nil {
		t.Fatal(err)
	}
	a, b := netnstest.New(t, "tkda"), netnstest.New(t, "tkdb")
	netnstest.Veth(t, a, "tkd0", nil, b, "tkd1", nil)
	a.MustRun("ethtool", "-K", "tkd0", "gro", "on", "rx-udp-gro-forwarding", "on")
	featuresBefore := a.MustRun("ethtool", "-k", "tkd0")

	// What the script must say about each sysctl, from the namespace's
	// own view of /proc/sys.
	var want []string
	changes := 1 // the ethtool command
	for _, s := range []struct {
		name string
		min  int
	}{{"net.core.rmem_max", 8388608}, {"net.core.wmem_max", 4194304}, {"net.core.netdev_max_backlog", 16384}} {
		cur, err := a.Run("cat", "/proc/sys/"+strings.ReplaceAll(s.name, ".", "/"))
		switch n, _ := strconv.Atoi(strings.TrimSpace(cur)); {
		case err != nil:
			want = append(want, "skip: "+s.name+" does not exist in this network namespace (a host-wide setting: run tune-kernel.sh on the host)")
		case n >= s.min:
			want = append(want, fmt.Sprintf("ok: %s = %d (>= %d)", s.name, n, s.min))
		default:
			want = append(want, fmt.Sprintf("would run: sysctl -qw %s=%d", s.name, s.min))
			changes++
		}
	}
	want = append(want, "ok: tkd0: rx-gro-list off", "would run: ethtool -K tkd0 rx-udp-gro-forwarding off",
		fmt.Sprintf("%d change(s) needed; nothing was changed (--dry-run)", changes))

	run := func(env []string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := a.Command(script, args...)
		cmd.Env = append(os.Environ(), env...)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("run %s: %v", script, err)
		}
		return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
	}

	stdout, stderr, code := run(nil, "--dry-run", "tkd0")
	if diff := cmp.Diff(strings.Join(want, "\n")+"\n", stdout); diff != "" || code != 0 || stderr != "" {
		t.Errorf("--dry-run tkd0: exit %d, stderr %q, stdout (-want +got):\n%s", code, stderr, diff)
	}
	if after := a.MustRun("ethtool", "-k", "tkd0"); after != featuresBefore {
		t.Errorf("--dry-run changed features:\nbefore:\n%s\nafter:\n%s", featuresBefore, after)
	}

	if _, stderr, code := run(nil, "--dry-run", "tkd0", "nosuch0"); code != 1 || stderr != "tune-kernel: no interface nosuch0\n" {
		t.Errorf("--dry-run with a missing interface: exit %d, stderr %q; want 1 and the interface named", code, stderr)
	}

	// Without ethtool on PATH: the tools the script needs, and no others.
	bin := t.TempDir()
	for _, tool := range []string{"bash", "cat", "id", "sed"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("skipping: %s not installed", tool)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	wantErr := "tune-kernel: ethtool is needed to check the features of tkd0 and is not installed; " +
		"install it (Debian: apt-get install ethtool) and run this script again\n"
	if _, stderr, code := run([]string{"PATH=" + bin}, "--dry-run", "tkd0"); code != 1 || stderr != wantErr {
		t.Errorf("--dry-run without ethtool: exit %d, stderr %q; want 1 and %q", code, stderr, wantErr)
	}

	if stdout, _, code := run(nil, "--help"); code != 0 || !strings.HasSuffix(stdout, "2 on a usage error.\n") {
		t.Errorf("--help: exit %d, output does not end with the exit statuses:\n%s", code, stdout)
	}
	if _, stderr, code := run(nil, "--frobnicate"); code != 2 || !strings.Contains(stderr, "unknown option --frobnicate") {
		t.Errorf("unknown option: exit %d, stderr %q; want 2", code, stderr)
	}
}
