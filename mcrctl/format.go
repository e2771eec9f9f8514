package mcrctl

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ANSI colours used for states on a terminal.
const (
	colorGreen  = "\x1b[32m"
	colorYellow = "\x1b[33m"
	colorRed    = "\x1b[31m"
	colorReset  = "\x1b[0m"
)

// cell is one table cell; color, if set, is applied on a terminal only.
type cell struct {
	text  string
	color string
}

// row is one table line. A row with a note instead of cells prints the note
// as it is, indented by two spaces, outside the column layout (rule errors
// under their rule).
type row struct {
	cells []cell
	note  string
}

// table lays out rows in columns separated by two spaces. Widths count
// runes and ignore colour codes, which are added after padding, so coloured
// and plain output align the same.
type table struct {
	header []string
	right  []bool // right-align this column (numbers)
	rows   []row
}

func (t *table) add(cells ...cell) { t.rows = append(t.rows, row{cells: cells}) }

func (t *table) addNote(note string) { t.rows = append(t.rows, row{note: note}) }

// write prints the table; color enables the cells' colours.
func (t *table) write(w io.Writer, color bool) error {
	widths := make([]int, len(t.header))
	for i, h := range t.header {
		widths[i] = utf8.RuneCountInString(h)
	}
	for _, r := range t.rows {
		for i, c := range r.cells {
			widths[i] = max(widths[i], utf8.RuneCountInString(c.text))
		}
	}
	var b strings.Builder
	header := make([]cell, len(t.header))
	for i, h := range t.header {
		header[i] = cell{text: h}
	}
	t.line(&b, header, widths, false)
	for _, r := range t.rows {
		if r.cells == nil {
			b.WriteString("  " + r.note + "\n")
			continue
		}
		t.line(&b, r.cells, widths, color)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// line writes one row of cells padded to widths, without trailing blanks.
func (t *table) line(b *strings.Builder, cells []cell, widths []int, color bool) {
	var l strings.Builder
	for i, c := range cells {
		if i > 0 {
			l.WriteString("  ")
		}
		pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c.text))
		text := c.text
		if color && c.color != "" {
			text = c.color + text + colorReset
		}
		if t.right[i] {
			l.WriteString(pad + text)
		} else {
			l.WriteString(text + pad)
		}
	}
	b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
}

// plain returns cells without colour.
func plain(texts ...string) []cell {
	cells := make([]cell, len(texts))
	for i, s := range texts {
		cells[i] = cell{text: s}
	}
	return cells
}

// stateColor is the colour of a rule or worker state.
func stateColor(state string) string {
	switch state {
	case "active", "running":
		return colorGreen
	case "pending", "starting":
		return colorYellow
	case "down", "backoff", "stopped":
		return colorRed
	}
	return ""
}

func count(n uint64) string { return strconv.FormatUint(n, 10) }

// formatPPS prints a packet rate with SI prefixes: "950 pps", "12.3 Kpps",
// "1.2 Mpps".
func formatPPS(pps float64) string {
	return siUnit(pps, "pps", "Kpps", "Mpps", "Gpps")
}

// formatBPS prints a bit rate with SI prefixes: "800 bit/s", "98.4 Mbit/s".
func formatBPS(bps float64) string {
	return siUnit(bps, "bit/s", "Kbit/s", "Mbit/s", "Gbit/s")
}

// siUnit scales v by powers of 1000 into units (base, kilo, mega, giga):
// one decimal below 100 of a prefixed unit ("12.3 Kpps"), whole numbers
// otherwise ("950 pps", "250 Kpps").
func siUnit(v float64, units ...string) string {
	if v < 999.5 {
		return fmt.Sprintf("%.0f %s", v, units[0])
	}
	i := 0
	for v >= 999.5 && i < len(units)-1 {
		v /= 1000
		i++
	}
	if v < 100 {
		return fmt.Sprintf("%.1f %s", v, units[i])
	}
	return fmt.Sprintf("%.0f %s", v, units[i])
}

// counted prints n and noun, plural unless n is 1: "1 rule", "3 rules",
// "0 kernel drops".
func counted[N int | uint64](n N, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// formatBytes prints a byte count with binary prefixes: "512 B",
// "1.5 KiB", "15.0 MiB".
func formatBytes(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}

// formatUptime prints a duration like top and ps do, two units at most:
// "45s", "12m03s", "3h04m", "2d03h".
func formatUptime(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second))
	s := int64(d / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// orDash returns s, or "-" for an empty cell.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
