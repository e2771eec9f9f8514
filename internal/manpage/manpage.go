// Package manpage writes the section 1 manual pages of a cobra command tree:
// the packages ship one page per command, generated from the same flags and
// help texts the binaries print, so the two cannot disagree.
package manpage

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Command returns the hidden `man DIR` command of root. It writes root.1
// and a page per visible subcommand (mcrctl-config-load.1, ...) into DIR,
// headed with version. The date is SOURCE_DATE_EPOCH when set, so that a
// package built twice from one commit has identical pages
// (reproducible-builds.org), else today.
func Command(root *cobra.Command, version string) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "Write the manual pages into DIR",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			date, err := sourceDate(os.Getenv("SOURCE_DATE_EPOCH"))
			if err != nil {
				return err
			}
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return fmt.Errorf("write manual pages: %w", err)
			}
			root.DisableAutoGenTag = true // the tag carries today's date
			header := &doc.GenManHeader{Section: "1", Date: &date, Source: "mcr " + version, Manual: "mcr manual"}
			if err := doc.GenManTree(root, header, args[0]); err != nil {
				return fmt.Errorf("write manual pages: %w", err)
			}
			return nil
		},
	}
}

// sourceDate parses SOURCE_DATE_EPOCH, seconds since 1970; "" is now.
func sourceDate(epoch string) (time.Time, error) {
	if epoch == "" {
		return time.Now().UTC(), nil
	}
	s, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: want seconds since 1970", epoch)
	}
	return time.Unix(s, 0).UTC(), nil
}
