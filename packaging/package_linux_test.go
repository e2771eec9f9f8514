package packaging

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/internal/netnstest"
)

// TestPackages builds the .deb and .rpm with `make package`, checks the .deb
// with lintian and the .rpm's metadata with rpm, and then installs the .deb
// on this machine, upgrades it, removes it and purges it, as an operator
// would, twice: once as in a chroot or container (systemd not running:
// the maintainer scripts must not touch it) and once as on a host where it
// runs (they must reload it, restart running relays on upgrade and stop them
// on removal). After the purge the machine must be as before.
//
// It installs on the machine itself, not into a scratch root with
// `dpkg --root`: dpkg runs maintainer scripts chrooted into that root, which
// would need a whole Debian system there, and the chroot-less mode
// (--force-script-chrootless) is not how any operator installs. So the test
// runs only as root, and refuses to run where mcr is installed already or
// where any file of the package exists, so that it never replaces or
// removes an operator's copy.
func TestPackages(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, tool := range []string{"make", "git", "dpkg", "dpkg-deb", "dpkg-query", "lintian", "unshare", "systemctl",
		"systemd-sysusers", "systemd-tmpfiles", "deb-systemd-invoke"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not installed (.ci/run installs what this test needs)", tool)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dist := t.TempDir()
	v1 := buildPackages(t, root, filepath.Join(dist, "1"), "1.0.0")
	// lintian takes seconds of one core: it runs while the rest goes on.
	lint := make(chan lintianResult, 1)
	go func() { lint <- runLintian(v1.deb) }()
	v2 := buildPackages(t, root, filepath.Join(dist, "2"), "1.0.1~rc1+1.g0123abcd")

	t.Run("rpm", func(t *testing.T) { checkRPM(t, v1) })
	t.Run("rpm scripts", checkRPMScripts)
	t.Run("install", func(t *testing.T) { checkInstall(t, root, v1, v2) })
	t.Run("lintian", func(t *testing.T) { checkLintian(t, v1.deb, <-lint) })
}

// pkgs are the packages of one version.
type pkgs struct {
	version  string
	deb, rpm string
}

// buildPackages runs `make package` for version into dist. It and lintian
// run at the lowest CPU priority: `make test` runs other packages' tests at
// the same time, and those relay traffic against deadlines.
func buildPackages(t *testing.T, root, dist, version string) pkgs {
	t.Helper()
	start := time.Now()
	cmd := exec.Command("nice", "-n", "19", "make", "--no-print-directory", "-C", root, "package", "DIST="+dist, "VERSION="+version)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make package VERSION=%s: %v\n%s", version, err, out)
	}
	t.Logf("make package VERSION=%s: %v", version, time.Since(start).Round(time.Millisecond))
	p := pkgs{version: version}
	for _, m := range []struct {
		glob string
		into *string
	}{{"mcr_*.deb", &p.deb}, {"mcr-*.rpm", &p.rpm}} {
		found, _ := filepath.Glob(filepath.Join(dist, m.glob))
		if len(found) != 1 {
			t.Fatalf("make package VERSION=%s made %q, want one %s", version, found, m.glob)
		}
		*m.into = found[0]
	}
	arch := strings.TrimSpace(mustOutput(t, "dpkg", "--print-architecture"))
	if want := filepath.Join(dist, "mcr_"+version+"_"+arch+".deb"); p.deb != want {
		t.Errorf("the .deb is %s, want %s", p.deb, want)
	}
	return p
}

type lintianResult struct {
	out  []byte
	err  error
	took time.Duration
}

func runLintian(deb string) lintianResult {
	start := time.Now()
	out, err := exec.Command("nice", "-n", "19", "lintian", "--fail-on", "error,warning", deb).CombinedOutput()
	return lintianResult{out, err, time.Since(start)}
}

// checkLintian wants no error and no warning; overrides are in
// packaging/deb/lintian-overrides, each with its reason.
func checkLintian(t *testing.T, deb string, r lintianResult) {
	t.Logf("lintian: %v", r.took.Round(time.Millisecond))
	var tags []string
	for line := range strings.Lines(string(r.out)) {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			tags = append(tags, strings.TrimSpace(line))
		}
	}
	if r.err != nil || len(tags) > 0 {
		t.Errorf("lintian %s: %v\n%s", filepath.Base(deb), r.err, r.out)
	}
}

// checkRPM reads the .rpm back with rpm (there is no RPM system here to
// install it on): its version, the config file and the files, which must be
// the .deb's but for what only Debian has.
func checkRPM(t *testing.T, p pkgs) {
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Skip("skipping: rpm not installed (apt-get install rpm)")
	}
	query := func(format string) string {
		t.Helper()
		return mustOutput(t, "rpm", "-qp", "--queryformat", format, p.rpm)
	}
	if got, want := query("%{NAME} %{VERSION}-%{RELEASE}"), "mcr "+p.version+"-1"; got != want {
		t.Errorf("rpm name and version %q, want %q", got, want)
	}
	if got, want := strings.TrimSpace(mustOutput(t, "rpm", "-qp", "--requires", p.rpm)), "systemd\n"; !strings.HasPrefix(got, want) {
		t.Errorf("rpm requires %q, want systemd first", got)
	}
	var rpmFiles []string
	ownsConfDir := false
	for line := range strings.Lines(query("[%{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILENAMES}\n]")) {
		fields := strings.Fields(line)
		perms, name, flags := fields[0], fields[len(fields)-1], strings.Join(fields[1:len(fields)-1], "")
		switch {
		case strings.HasPrefix(perms, "d"):
			ownsConfDir = ownsConfDir || name == "/etc/mcr"
		case name == "/etc/mcr/mcr.json" && flags != "cn":
			t.Errorf("%s has flags %q, want cn: %%config(noreplace)", name, flags)
			fallthrough
		default:
			rpmFiles = append(rpmFiles, name)
		}
	}
	if !ownsConfDir {
		t.Errorf("the .rpm does not own /etc/mcr, so erasing it would leave the directory")
	}
	var debFiles []string
	for _, name := range packageFiles(t, p.deb) {
		switch name {
		case "/usr/share/lintian/overrides/mcr", "/usr/share/doc/mcr/changelog.gz":
			// Debian's alone.
		case "/usr/share/zsh/vendor-completions/_mcrctl":
			debFiles = append(debFiles, "/usr/share/zsh/site-functions/_mcrctl")
		default:
			debFiles = append(debFiles, name)
		}
	}
	slices.Sort(rpmFiles)
	slices.Sort(debFiles)
	if diff := cmp.Diff(debFiles, rpmFiles); diff != "" {
		t.Errorf("rpm files differ from the .deb's (-deb +rpm):\n%s", diff)
	}
	scripts := mustOutput(t, "rpm", "-qp", "--scripts", p.rpm)
	for _, want := range []string{"postinstall scriptlet", "systemd-sysusers mcr.conf", "preuninstall scriptlet",
		"postuninstall scriptlet", "systemctl try-restart mcrd.service 'mcrd@*.service'"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm scripts lack %q:\n%s", want, scripts)
		}
	}
}

// checkInstall installs, upgrades, removes and purges, first with systemd
// not running, then with it running.
func checkInstall(t *testing.T, root string, v1, v2 pkgs) {
	lockHost(t)
	if out, err := exec.Command("dpkg-query", "-W", "mcr").CombinedOutput(); err == nil {
		t.Skipf("skipping: mcr is installed on this machine (%s); not replacing it", strings.TrimSpace(string(out)))
	}
	for _, p := range append(packageFiles(t, v1.deb), "/run/mcr") {
		if _, err := os.Lstat(p); err == nil {
			t.Skipf("skipping: %s exists on this machine; not installing over it", p)
		}
	}
	// A machine with systemd has it; create it like systemd would so
	// that purging can be checked to leave it as it was.
	wants := "/etc/systemd/system/multi-user.target.wants"
	if _, err := os.Stat(wants); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(wants, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(wants) })
	}
	before := listHost(t)
	h := newScriptHost(t)
	t.Cleanup(func() {
		// Whatever failed, leave no mcr behind.
		if exec.Command("dpkg-query", "-W", "mcr").Run() == nil {
			h.dpkg("--purge", "mcr")
		}
	})

	t.Run("systemd not running", func(t *testing.T) {
		h.t, h.systemd = t, false
		h.dpkg("--install", v1.deb)
		checkInstalled(t, v1.version)
		if out, err := exec.Command("systemctl", "--no-reload", "enable", "mcrd.service", "mcrd@blue.service").CombinedOutput(); err != nil {
			t.Fatalf("systemctl enable: %v\n%s", err, out)
		}
		// The operator's rules: they must survive the upgrade untouched.
		example, err := os.ReadFile(filepath.Join(root, "packaging/mcr.example.json"))
		if err != nil {
			t.Fatal(err)
		}
		mustWrite(t, "/etc/mcr/mcr.json", example)
		mustWrite(t, "/etc/mcr/blue.json", []byte("{\n  \"rules\": []\n}\n"))

		if out := h.dpkg("--install", v2.deb); strings.Contains(out, "Configuration file") {
			t.Errorf("the upgrade asked about a configuration file:\n%s", out)
		}
		checkInstalled(t, v2.version)
		if got, err := os.ReadFile("/etc/mcr/mcr.json"); err != nil || string(got) != string(example) {
			t.Errorf("after the upgrade /etc/mcr/mcr.json is %q (%v), want the operator's rules kept", got, err)
		}

		h.dpkg("--remove", "mcr")
		if status := mustOutput(t, "dpkg-query", "-W", "-f", "${Status}", "mcr"); status != "deinstall ok config-files" {
			t.Errorf("after dpkg -r: status %q, want deinstall ok config-files", status)
		}
		for _, p := range []string{"/usr/bin/mcrd", "/usr/lib/systemd/system/mcrd@.service"} {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("after dpkg -r: %s still exists", p)
			}
		}
		if got, err := os.ReadFile("/etc/mcr/mcr.json"); err != nil || string(got) != string(example) {
			t.Errorf("after dpkg -r: /etc/mcr/mcr.json is %q (%v), want the operator's rules kept until a purge", got, err)
		}

		h.dpkg("--purge", "mcr")
		if out, err := exec.Command("dpkg-query", "-W", "mcr").CombinedOutput(); err == nil {
			t.Errorf("after dpkg -P dpkg still knows mcr: %s", out)
		}
		h.checkCalls(nil)
		checkSameHost(t, before, listHost(t))
		if out, err := exec.Command("getent", "passwd", "mcr-worker").Output(); err != nil || len(out) == 0 {
			t.Errorf("after dpkg -P the mcr-worker account is gone (%v); Debian keeps system accounts", err)
		}
	})

	t.Run("systemd running", func(t *testing.T) {
		h.t, h.systemd = t, true
		h.dpkg("--install", v1.deb)
		h.dpkg("--install", v2.deb)
		h.dpkg("--remove", "mcr")
		h.dpkg("--purge", "mcr")
		h.checkCalls([]string{
			"systemctl --system daemon-reload", // install
			"systemctl --system daemon-reload", // upgrade: reload, then restart what runs
			"systemctl try-restart mcrd.service mcrd@*.service",
			"systemctl stop mcrd.service mcrd@*.service", // remove: stop, then reload
			"systemctl --system daemon-reload",
			"systemctl --system daemon-reload", // purge
		})
		checkSameHost(t, before, listHost(t))
	})
}

// checkInstalled checks what an operator relies on after an install or an
// upgrade to version.
func checkInstalled(t *testing.T, version string) {
	t.Helper()
	for name, want := range map[string]string{
		"mcrd":   "mcrd " + version + ", ",
		"mcrctl": "mcrctl  " + version + "  ",
		"mcrgen": "mcrgen " + version + "  ",
	} {
		// mcrctl version exits 3 without a daemon, after its own line.
		out, _ := exec.Command("/usr/bin/"+name, "version").Output()
		if !strings.HasPrefix(string(out), want) {
			t.Errorf("%s version: %q, want it to start %q", name, out, want)
		}
	}
	if got := mustOutput(t, "dpkg-query", "-W", "-f", "${Conffiles}", "mcr"); !strings.Contains(got, " /etc/mcr/mcr.json ") {
		t.Errorf("conffiles %q, want /etc/mcr/mcr.json", got)
	}
	for _, unit := range []string{"mcrd.service", "mcrd@.service"} {
		b, err := os.ReadFile("/usr/lib/systemd/system/" + unit)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "ExecStart=/usr/bin/mcrd supervisor ") || strings.Contains(string(b), "/usr/local") {
			t.Errorf("%s does not start /usr/bin/mcrd, or names /usr/local:\n%s", unit, b)
		}
	}
	// The installed units, with the installed binary, as systemd finds
	// them by name (outside this directory, whose units verify would take).
	for _, unit := range []string{"mcrd.service", "mcrd@blue.service"} {
		cmd := exec.Command("systemd-analyze", "verify", "--man=no", unit)
		cmd.Dir = t.TempDir()
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
	if out, err := exec.Command("getent", "passwd", "mcr-worker").Output(); err != nil ||
		!strings.HasSuffix(strings.TrimSpace(string(out)), ":/usr/sbin/nologin") {
		t.Errorf("getent passwd mcr-worker: %q, %v; want a system account without shell", out, err)
	}
	if fi, err := os.Stat("/run/mcr"); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Errorf("/run/mcr: %v, %v; want a directory, mode 0755", fi, err)
	}
	for _, p := range []string{"/usr/share/man/man1/mcrctl-add.1.gz", "/usr/share/bash-completion/completions/mcrctl",
		"/usr/share/mcr/grafana/mcr.json", "/usr/share/mcr/prometheus/mcr-alerts.yml", "/usr/share/mcr/tune-kernel.sh",
		"/usr/share/doc/mcr/operator-guide.md", "/usr/share/doc/mcr/mcr.example.json"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("installed: %v", err)
		}
	}
}

// scriptHost runs maintainer scripts (and dpkg, which runs them) on this
// machine with systemd running or not, as the scripts see it: in a private
// mount namespace where /run/systemd is an empty tmpfs (not running) or
// /run is a tmpfs with /run/systemd/system (running). Either way systemctl
// is a fake that records its calls, and policy-rc.d, which
// deb-systemd-invoke asks first, allows everything.
type scriptHost struct {
	t       *testing.T
	dir     string
	systemd bool
}

// newScriptHost writes the fakes: systemctl and any other commands named.
func newScriptHost(t *testing.T, fakes ...string) *scriptHost {
	h := &scriptHost{t: t, dir: t.TempDir()}
	for _, name := range append([]string{"systemctl"}, fakes...) {
		mustWrite(t, filepath.Join(h.dir, "bin", name), []byte("#!/bin/sh\necho \""+name+" $*\" >>"+h.dir+"/calls.log\n"))
		if err := os.Chmod(filepath.Join(h.dir, "bin", name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(t, filepath.Join(h.dir, "policy-rc.d"), []byte("#!/bin/sh\nexit 0\n"))
	if err := os.Chmod(filepath.Join(h.dir, "policy-rc.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	return h
}

// command returns name with args, to run as described above, with stdin
// closed so that a question fails the run.
func (h *scriptHost) command(name string, args ...string) *exec.Cmd {
	setup := "mount -t tmpfs tmpfs /run/systemd\n"
	if _, err := os.Stat("/run/systemd"); err != nil {
		setup = "" // no systemd here at all
	}
	if h.systemd {
		setup = "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system\n"
	}
	if _, err := os.Stat("/usr/sbin/policy-rc.d"); err == nil {
		setup += "mount --bind " + h.dir + "/policy-rc.d /usr/sbin/policy-rc.d\n"
	}
	script := "set -e\n" + setup + "exec \"$@\""
	// nice: dpkg's triggers (man-db) take seconds of CPU; see buildPackages.
	cmd := exec.Command("nice", append([]string{"-n", "19", "unshare", "--mount", "--propagation", "private",
		"sh", "-c", script, "sh", name}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+h.dir+"/bin:"+os.Getenv("PATH"), "DEBIAN_FRONTEND=noninteractive")
	return cmd
}

// dpkg runs dpkg with args and returns its output. It waits for dpkg's
// lock while another dpkg (an apt-get of another test run) holds it.
func (h *scriptHost) dpkg(args ...string) string {
	h.t.Helper()
	var out []byte
	netnstest.Poll(h.t, 2*time.Minute, time.Second, "dpkg's lock", func() bool {
		var err error
		out, err = h.command("dpkg", args...).CombinedOutput()
		if err != nil && strings.Contains(string(out), "lock") && strings.Contains(string(out), "another process") {
			return false
		}
		if err != nil {
			h.t.Fatalf("dpkg %s (systemd running: %v): %v\n%s", strings.Join(args, " "), h.systemd, err, out)
		}
		return true
	})
	return string(out)
}

// checkCalls compares the calls of the fakes with want, and forgets them.
func (h *scriptHost) checkCalls(want []string) {
	h.t.Helper()
	log := filepath.Join(h.dir, "calls.log")
	b, err := os.ReadFile(log)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		h.t.Fatal(err)
	}
	os.Remove(log)
	var got []string
	for line := range strings.Lines(string(b)) {
		got = append(got, strings.TrimSuffix(line, "\n"))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		h.t.Errorf("commands the maintainer scripts ran (systemd running: %v) (-want +got):\n%s", h.systemd, diff)
	}
}

// checkRPMScripts runs the .rpm's scriptlets as rpm would, with their
// argument (the number of versions installed after the transaction) and
// systemd running or not, with fakes for the commands they run.
func checkRPMScripts(t *testing.T) {
	h := newScriptHost(t, "systemd-sysusers", "systemd-tmpfiles")
	const reload, restart, stop = "systemctl daemon-reload", "systemctl try-restart mcrd.service mcrd@*.service",
		"systemctl stop mcrd.service mcrd@*.service"
	sysusers, tmpfiles := "systemd-sysusers mcr.conf", "systemd-tmpfiles --create mcr.conf"
	for _, tt := range []struct {
		script  string
		arg     string
		systemd bool
		want    []string
	}{
		{"post.sh", "1", false, []string{sysusers, tmpfiles}},
		{"post.sh", "1", true, []string{sysusers, tmpfiles, reload}},
		{"post.sh", "2", true, []string{sysusers, tmpfiles, reload}},
		{"preun.sh", "1", true, nil}, // upgrade: the relays go on
		{"preun.sh", "0", false, nil},
		{"preun.sh", "0", true, []string{stop}},
		{"postun.sh", "1", false, nil},
		{"postun.sh", "1", true, []string{reload, restart}},
		{"postun.sh", "0", true, []string{reload}},
	} {
		h.systemd = tt.systemd
		if out, err := h.command("sh", "-e", filepath.Join("rpm", tt.script), tt.arg).CombinedOutput(); err != nil {
			t.Errorf("%s %s: %v\n%s", tt.script, tt.arg, err, out)
		}
		t.Logf("%s %s, systemd running: %v", tt.script, tt.arg, tt.systemd)
		h.checkCalls(tt.want)
	}
}

// packageFiles lists the files (not directories) of a .deb as installed paths.
func packageFiles(t *testing.T, deb string) []string {
	t.Helper()
	var files []string
	for line := range strings.Lines(mustOutput(t, "dpkg-deb", "-c", deb)) {
		if strings.HasPrefix(line, "d") {
			continue
		}
		fields := strings.Fields(line)
		files = append(files, strings.TrimPrefix(fields[len(fields)-1], "."))
	}
	return files
}

// lockHost serialises the test with copies of itself (other checkouts on
// one machine): both would install and purge the same package.
func lockHost(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile("/run/lock/mcr-packaging-test.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
	netnstest.Poll(t, 5*time.Minute, 500*time.Millisecond, "the packaging test lock held by another test run", func() bool {
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
	})
}

// hostRoots are the trees a package and its scripts could leave files in;
// the rest of /var and /run is churn that is not ours.
var hostRoots = []string{"/etc", "/usr", "/var/lib", "/run/mcr"}

// listHost lists every path under hostRoots with its type and mode.
func listHost(t *testing.T) map[string]string {
	t.Helper()
	entries := map[string]string{}
	for _, r := range hostRoots {
		err := filepath.WalkDir(r, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // gone while we looked, or r itself absent
				}
				return err
			}
			switch path {
			case "/var/lib/apt/lists", "/var/lib/dpkg/updates", "/var/lib/dpkg/triggers":
				return filepath.SkipDir // package manager churn
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			entries[path] = info.Mode().String()
			return nil
		})
		if err != nil {
			t.Fatalf("list %s: %v", r, err)
		}
	}
	return entries
}

// checkSameHost reports paths that differ between before and after, except
// those another process on this machine may have changed meanwhile by
// installing something: paths another package owns (dpkg -S), and package
// manager state under /var/lib that is not about mcr (dpkg's info files of
// another package, apt's and dpkg's own records).
func checkSameHost(t *testing.T, before, after map[string]string) {
	t.Helper()
	var diffs []string
	for p, m := range after {
		if before[p] != m {
			diffs = append(diffs, "+ "+p+" "+m)
		}
	}
	for p, m := range before {
		if _, ok := after[p]; !ok {
			diffs = append(diffs, "- "+p+" "+m)
		}
	}
	slices.Sort(diffs)
	var ours []string
	for _, d := range diffs {
		p := strings.Fields(d)[1]
		if out, err := exec.Command("dpkg-query", "-S", p).Output(); err == nil && !strings.HasPrefix(string(out), "mcr:") {
			continue
		}
		if strings.HasPrefix(p, "/var/lib/") && !strings.Contains(p, "mcr") {
			continue
		}
		ours = append(ours, d)
	}
	if len(ours) > 0 {
		t.Errorf("the machine differs from before the install (+ new, - gone):\n%s", strings.Join(ours, "\n"))
	}
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
