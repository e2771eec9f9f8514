// Package docs holds no code, only the test that keeps the commands README.md
// and the operator guide show runnable and their sample output true:
// commands_linux_test.go runs them; this file finds them in the markdown.
package docs

import (
	"bufio"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A markdown file's shell examples are its fenced ```sh blocks. A block
// that must not run, or that must equal a file of the repository, is marked
// by an HTML comment (invisible when rendered) on the line just before its
// opening fence:
//
//	<!-- doctest: skip: REASON -->   not run; the reason is required
//	<!-- doctest: file PATH -->      any block: its text must equal PATH,
//	                                 relative to the repository root
//
// Any other doctest comment is an error, so a misspelt marker cannot hide a
// block.
const markerPrefix = "<!-- doctest:"

// block is one fenced code block of a markdown file.
type block struct {
	lang string // the fence's info string: "sh", "json", ""
	line int    // 1-based line of the opening fence
	text string // the lines between the fences, each ending in "\n"
	// skip is the reason given by a skip marker; "" when the block runs.
	skip string
	// file is the path a file marker names; "" when none.
	file string
}

var markerRE = regexp.MustCompile(`^<!-- doctest: (skip: (.+)|file (\S+)) -->$`)

// parseBlocks returns the fenced code blocks of a markdown document, with
// their markers.
func parseBlocks(doc string) ([]block, error) {
	var (
		blocks []block
		cur    *block
		prev   string // the line before the current one
	)
	sc := bufio.NewScanner(strings.NewReader(doc))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur != nil && trimmed == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case strings.HasPrefix(trimmed, "```"):
			cur = &block{lang: strings.TrimPrefix(trimmed, "```"), line: n}
			if p := strings.TrimSpace(prev); strings.HasPrefix(p, markerPrefix) {
				m := markerRE.FindStringSubmatch(p)
				switch {
				case m == nil:
					return nil, fmt.Errorf("line %d: unknown marker %q; want %q or %q", n-1, p,
						"<!-- doctest: skip: REASON -->", "<!-- doctest: file PATH -->")
				case m[2] != "":
					cur.skip = m[2]
				default:
					cur.file = m[3]
				}
			}
		case strings.HasPrefix(trimmed, markerPrefix) && !strings.HasPrefix(strings.TrimSpace(peekNext(doc, n)), "```"):
			return nil, fmt.Errorf("line %d: marker %q is not right before a code block", n, trimmed)
		}
		prev = line
	}
	if cur != nil {
		return nil, fmt.Errorf("line %d: code block not closed", cur.line)
	}
	return blocks, sc.Err()
}

// peekNext returns line n+1 (1-based) of doc, or "".
func peekNext(doc string, n int) string {
	lines := strings.Split(doc, "\n")
	if n < len(lines) {
		return lines[n]
	}
	return ""
}

// step is one command of a shell block and, in a transcript, the output
// the document shows for it.
type step struct {
	cmd string
	// want is the output shown after the command in a transcript block
	// (lines after "$ cmd" up to the next "$ "); "" when none is shown.
	want string
}

// steps splits a shell block into its commands. A block whose lines start
// with "$ " is a transcript: each "$ " line is a command and the lines that
// follow it, up to the next one, are its output. Otherwise every line is a
// command. Either way a line ending in a backslash continues on the next,
// and blank lines and comment lines are not commands.
func steps(text string) []step {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	transcript := false
	for _, l := range lines {
		transcript = transcript || strings.HasPrefix(l, "$ ")
	}
	var out []step
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if transcript {
			var ok bool
			if l, ok = strings.CutPrefix(l, "$ "); !ok {
				out[len(out)-1].want += lines[i] + "\n"
				continue
			}
		}
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			l += "\n" + lines[i] // sh joins them
		}
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		out = append(out, step{cmd: l})
	}
	return out
}

// numberRE matches a number with its unit where it has one ("40000",
// "39.1 MiB", "0 pps", "12.3 Kbit/s", "412µs"), an uptime ("2m04s") and a
// ruleset hash or default id (16 hex digits).
var numberRE = regexp.MustCompile(`\b[0-9a-f]{16}\b|\d+[dhm]\d+[hms]|` +
	`\d+(\.\d+)?( (B|KiB|MiB|GiB|TiB|pps|Kpps|Mpps|Gpps|bit/s|Kbit/s|Mbit/s|Gbit/s)\b|µs\b|ms\b|s\b)?`)

// shape reduces command output to what a document's sample must share with
// the real output: the words and the layout of the lines, not the numbers
// (counts, rates, pids, uptimes) or the column widths they cause. Every
// number, with its unit, becomes "#"; runs of blanks become one; lines are
// trimmed; and consecutive equal lines are one, so that a sample with two
// workers has the shape of a host with eight.
func shape(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.Join(strings.Fields(numberRE.ReplaceAllString(l, "#")), " ")
		if l == "" || len(lines) > 0 && lines[len(lines)-1] == l {
			continue
		}
		lines = append(lines, l)
	}
	return lines
}

func TestParseBlocks(t *testing.T) {
	doc := "# title\n\n```sh\nls\n```\n\n<!-- doctest: skip: changes the host -->\n```sh\nrm -rf /\n```\n" +
		"<!-- doctest: file packaging/x.json -->\n```json\n{}\n```\n```\nplain\n```\n"
	got, err := parseBlocks(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := []block{
		{lang: "sh", line: 3, text: "ls\n"},
		{lang: "sh", line: 8, text: "rm -rf /\n", skip: "changes the host"},
		{lang: "json", line: 12, text: "{}\n", file: "packaging/x.json"},
		{lang: "", line: 15, text: "plain\n"},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(block{})); diff != "" {
		t.Errorf("parseBlocks (-want +got):\n%s", diff)
	}
	for _, tc := range []struct{ doc, wantErr string }{
		{"<!-- doctest: skip -->\n```sh\nls\n```\n", `line 1: unknown marker "<!-- doctest: skip -->"`},
		{"<!-- doctest: skip: why -->\n\n```sh\nls\n```\n", `line 1: marker "<!-- doctest: skip: why -->" is not right before a code block`},
		{"```sh\nls\n", "line 1: code block not closed"},
	} {
		if _, err := parseBlocks(tc.doc); err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
			t.Errorf("parseBlocks(%q) error %v, want it to start with %q", tc.doc, err, tc.wantErr)
		}
	}
}

func TestSteps(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []step
	}{
		{"script", "# comment\nmcrd supervisor &\nmcrctl add --a 1 \\\n   --b 2   # why\n\nmcrctl list\n",
			[]step{{cmd: "mcrd supervisor &"}, {cmd: "mcrctl add --a 1 \\\n   --b 2   # why"}, {cmd: "mcrctl list"}}},
		{"transcript", "$ mcrctl add \\\n    --x 1\nmarket-a\n$ mcrctl list\nID  STATE\nm   active\n$ mcrctl stats --watch  # redraws\n",
			[]step{{cmd: "mcrctl add \\\n    --x 1", want: "market-a\n"}, {cmd: "mcrctl list", want: "ID  STATE\nm   active\n"},
				{cmd: "mcrctl stats --watch  # redraws"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, steps(tc.text), cmp.AllowUnexported(step{})); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestShape(t *testing.T) {
	doc := `RULE / OUTPUT          PACKETS     BYTES   RATE  BANDWIDTH  DROPS
market-a                 40000  39.1 MiB  0 pps    0 bit/s      0
  239.2.2.2:6000@eth1    40000  39.1 MiB                        0

WORKER  CORE     RX  NO-MATCH
     0     0      0         0
     1     1  40000         0
`
	real := `RULE / OUTPUT          PACKETS  BYTES   RATE  BANDWIDTH  DROPS
market-a                     0    0 B  1.2 Kpps    9.8 Mbit/s      0
  239.2.2.2:6000@eth1        0    0 B                        0

WORKER  CORE  RX  NO-MATCH
     0     0   0         0
`
	if diff := cmp.Diff(shape(doc), shape(real)); diff != "" {
		t.Errorf("shapes differ (-doc +real):\n%s", diff)
	}
	want := []string{"WORKER PID UPTIME HASH", "# # # #"}
	if got := shape("WORKER  PID  UPTIME  HASH\n0  8691  2m04s  ae3c199d44ce7a1b\n1  8696  1s  bb3302e8a9608868\n"); !cmp.Equal(want, got) {
		t.Errorf("shape = %q, want %q", got, want)
	}
	if got := shape("market-a  active\n"); cmp.Equal(got, shape("market-a  pending\n")) {
		t.Errorf("words differ but the shapes are equal: %q", got)
	}
}
