package docs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/internal/netnstest"
	"github.com/mcrelay/mcr/internal/testbin"
)

// TestMain removes the binaries testbin built.
func TestMain(m *testing.M) { testbin.Main(m) }

// TestDocumentedCommands runs every ```sh block of README.md and of the
// operator guide, in order, as an operator would type them, against a real
// mcrd, and checks that each command succeeds and prints what the document
// shows (its shape: the words and lines, not the numbers; see shape).
//
// Where they run: in a throwaway network namespace whose interfaces have
// the names the documents use: eth0 and eth0.100 (inputs), eth1
// with 10.1.0.1/24 and eth2 (outputs), veths to a second namespace. The
// binaries are the ones built from this tree (internal/testbin), first on
// PATH; `sudo` is a shim that runs its arguments (the test runs as root).
// Paths of an installed host are rewritten to a temporary directory before
// a command runs (see hostPaths): /etc/mcr holds what `make install`
// writes there (mcr.json with no rules), the control socket is under the
// temporary directory (MCR_SOCKET names it too), and the installed
// tune-kernel.sh and example config are the tree's. The working directory
// holds rules.json, a copy of packaging/mcr.example.json, which the config
// commands of the guide load.
//
// How each command runs:
//   - `mcrd supervisor …` (with or without a trailing &) is a daemon: it
//     is started in the background, and the next command waits until it
//     answers `mcrctl ping`. It gets SIGTERM when the document is done.
//   - A command with --watch runs until Ctrl-C: it is interrupted once it
//     has printed, and must exit 0.
//   - Any other command must exit 0 within 20 s.
//
// Blocks that must not run carry a skip marker with the reason (see
// markerPrefix): the install steps (they install into /usr/local and start
// a system service), `make demo` and `make test` (this test is part of
// the latter), and tune-kernel.sh without --dry-run (it changes the host's
// sysctls and writes /etc/sysctl.d). A block with a file marker must equal
// that file.
func TestDocumentedCommands(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTools(t, "the guide runs tune-kernel.sh, which needs ethtool", "ethtool", "sh")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	testbin.Path(t, "mcrctl")
	testbin.Path(t, "mcrgen")
	bin := filepath.Dir(testbin.Path(t, "mcrd"))
	for _, doc := range []string{"README.md", "docs/operator-guide.md"} {
		t.Run(filepath.Base(doc), func(t *testing.T) {
			text, err := os.ReadFile(filepath.Join(root, doc))
			if err != nil {
				t.Fatal(err)
			}
			blocks, err := parseBlocks(string(text))
			if err != nil {
				t.Fatalf("%s: %v", doc, err)
			}
			sh := newShell(t, root, bin)
			ran := 0
			for _, b := range blocks {
				switch {
				case b.file != "":
					want, err := os.ReadFile(filepath.Join(root, b.file))
					if err != nil {
						t.Fatalf("%s:%d: %v", doc, b.line, err)
					}
					if diff := cmp.Diff(string(want), b.text); diff != "" {
						t.Errorf("%s:%d: the block differs from %s (-file +doc):\n%s", doc, b.line, b.file, diff)
					}
				case b.lang != "sh" || b.skip != "":
				default:
					for _, st := range steps(b.text) {
						sh.run(doc, b.line, st)
						ran++
					}
				}
			}
			if ran == 0 {
				t.Fatalf("%s: no command ran: are its ```sh blocks still there?", doc)
			}
		})
	}
}

// shell runs a document's commands in its namespace and directories.
type shell struct {
	t  *testing.T
	ns *netnstest.NS
	// prologue sets the working directory and environment of a command.
	prologue string
	paths    *strings.Replacer
	daemon   *netnstest.Proc
}

// hostPaths are the paths of an installed host the documents name, and
// what the test puts in their place.
func hostPaths(root, tmp string) *strings.Replacer {
	return strings.NewReplacer(
		"/etc/mcr/", filepath.Join(tmp, "etc")+"/",
		"/run/mcr/", filepath.Join(tmp, "run")+"/",
		"/usr/local/share/mcr/", filepath.Join(root, "scripts")+"/",
		"/usr/local/share/doc/mcr/", filepath.Join(root, "packaging")+"/",
	)
}

func newShell(t *testing.T, root, bin string) *shell {
	t.Helper()
	tmp, err := os.MkdirTemp("", "mcrdoc") // short: the socket path must fit 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	for _, d := range []string{"etc", "run", "work", "shim"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path, content string, mode os.FileMode) {
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(tmp, "etc", "mcr.json"), "{\n  \"rules\": []\n}\n", 0o644) // as make install
	write(filepath.Join(tmp, "shim", "sudo"), "#!/bin/sh\nexec \"$@\"\n", 0o755)
	example, err := os.ReadFile(filepath.Join(root, "packaging", "mcr.example.json"))
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(tmp, "work", "rules.json"), string(example), 0o644)

	relay, peer := netnstest.New(t, "docr"), netnstest.New(t, "docp")
	netnstest.Veth(t, relay, "eth0", nil, peer, "src0", nil)
	netnstest.Veth(t, relay, "eth1", []string{"10.1.0.1/24"}, peer, "sink1", []string{"10.1.0.50/24"})
	netnstest.Veth(t, relay, "eth2", nil, peer, "sink2", nil)
	// A veth by the name of the guide's VLAN: the kernel may lack 8021q.
	netnstest.Veth(t, relay, "eth0.100", nil, peer, "vlan100", nil)

	s := &shell{
		t:  t,
		ns: relay,
		prologue: "cd '" + filepath.Join(tmp, "work") + "' && " +
			"export PATH='" + filepath.Join(tmp, "shim") + ":" + bin + ":" + os.Getenv("PATH") + "' " +
			"MCR_SOCKET='" + filepath.Join(tmp, "run", "control.sock") + "' NO_COLOR=1 && ",
		paths: hostPaths(root, tmp),
	}
	return s
}

// script is the sh -c script that runs line as the document means it.
func (s *shell) script(line string) string {
	return s.prologue + s.paths.Replace(line)
}

// run runs one step of the document doc, whose block starts at line.
func (s *shell) run(doc string, line int, st step) {
	t := s.t
	t.Helper()
	where := doc + ":" + strconv.Itoa(line) + ": " + firstLine(st.cmd)
	fields := strings.Fields(strings.TrimPrefix(strings.TrimSpace(st.cmd), "sudo "))
	switch {
	case len(fields) > 1 && fields[0] == "mcrd" && fields[1] == "supervisor":
		s.startDaemon(where, strings.TrimSuffix(strings.TrimSpace(st.cmd), "&"))
		return
	case strings.HasSuffix(strings.TrimSpace(st.cmd), "&"):
		t.Fatalf("%s: only mcrd supervisor may run in the background here", where)
	case strings.Contains(st.cmd, "--watch"):
		s.interrupt(where, st.cmd)
		return
	}
	cmd := s.ns.Command("sh", "-c", s.script(st.cmd))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", where, err, &stdout, &stderr)
		}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s: still running after 20 s\nstdout:\n%s\nstderr:\n%s", where, &stdout, &stderr)
	}
	if st.want != "" {
		if diff := cmp.Diff(shape(st.want), shape(stdout.String())); diff != "" {
			t.Errorf("%s: the output differs from the document's sample (-doc +real, numbers as #):\n%s\nreal output:\n%s",
				where, diff, &stdout)
		}
	}
}

// startDaemon starts a documented `mcrd supervisor` in the background and
// waits until it answers.
func (s *shell) startDaemon(where, line string) {
	t := s.t
	t.Helper()
	if s.daemon != nil {
		t.Fatalf("%s: a second mcrd in one document", where)
	}
	s.daemon = netnstest.Start(t, s.ns, "sh", "-c", s.script("exec "+line))
	d := s.daemon
	t.Cleanup(func() { // before Start's, which kills
		select {
		case <-d.Done():
			return // reported below
		default:
		}
		_ = d.Signal(syscall.SIGTERM)
		if err := d.Wait(5 * time.Second); err != nil {
			t.Errorf("mcrd after SIGTERM: %v, want exit status 0\n%s", err, d.Output())
		}
	})
	netnstest.WaitFor(t, 10*time.Second, "the documented mcrd to answer ping", func() bool {
		select {
		case <-s.daemon.Done():
			t.Fatalf("%s: mcrd exited: %v\n%s", where, s.daemon.Wait(0), s.daemon.Output())
		default:
		}
		return s.ns.Command("sh", "-c", s.script("mcrctl ping")).Run() == nil
	})
}

// interrupt runs a command that runs until Ctrl-C: it must print, then
// exit 0 on SIGINT.
func (s *shell) interrupt(where, line string) {
	t := s.t
	t.Helper()
	p := netnstest.Start(t, s.ns, "sh", "-c", s.script("exec "+line))
	netnstest.WaitFor(t, 10*time.Second, where+" to print", func() bool {
		select {
		case <-p.Done():
			t.Fatalf("%s: exited before Ctrl-C: %v\n%s", where, p.Wait(0), p.Output())
		default:
		}
		return p.Output() != ""
	})
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(5 * time.Second); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("%s: exit status %d after Ctrl-C, want 0\n%s", where, exit.ExitCode(), p.Output())
		}
		t.Fatalf("%s: %v", where, err)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}
