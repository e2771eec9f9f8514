package manpage

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
)

// TestCommand writes the pages of a small tree: one per visible command,
// none for hidden ones (the worker, man itself), headed with the version
// and SOURCE_DATE_EPOCH's date.
func TestCommand(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600") // 2026-01-01
	root := &cobra.Command{Use: "tool", Short: "A tool", CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true}}
	config := &cobra.Command{Use: "config", Short: "Config commands"}
	config.AddCommand(&cobra.Command{Use: "load FILE", Short: "Load a file", Run: func(*cobra.Command, []string) {}})
	root.AddCommand(config,
		&cobra.Command{Use: "worker", Hidden: true, Run: func(*cobra.Command, []string) {}},
		Command(root, "1.2.0"))
	dir := t.TempDir()
	root.SetArgs([]string{"man", dir})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	if diff := cmp.Diff([]string{"tool-config-load.1", "tool-config.1", "tool.1"}, names); diff != "" {
		t.Errorf("pages (-want +got):\n%s", diff)
	}
	page, err := os.ReadFile(filepath.Join(dir, "tool-config-load.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`.TH "TOOL-CONFIG-LOAD" "1" "Jan 2026" "mcr 1.2.0" "mcr manual"`, "Load a file"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("tool-config-load.1 lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(string(page), "Auto generated") {
		t.Errorf("tool-config-load.1 has cobra's dated tag:\n%s", page)
	}
}

func TestSourceDate(t *testing.T) {
	got, err := sourceDate("1767225600")
	if want := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); err != nil || !got.Equal(want) {
		t.Errorf("sourceDate(1767225600) = %v, %v; want %v", got, err, want)
	}
	if _, err := sourceDate("yesterday"); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Errorf("sourceDate(yesterday): error %v, want one naming SOURCE_DATE_EPOCH", err)
	}
	if got, err := sourceDate(""); err != nil || time.Since(got) > time.Minute {
		t.Errorf(`sourceDate("") = %v, %v; want now`, got, err)
	}
}
