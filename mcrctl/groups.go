package mcrctl

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcrelay/mcr/controlproto"
)

func (c *cli) groupsCommand() *cobra.Command {
	var iface string
	cmd := &cobra.Command{
		Use:   "groups [--interface IF]",
		Short: "Show the IGMP/MLD listeners and querier state of the output interfaces",
		Long: `Show the listener table mcrd keeps on each output interface (and each
--querier interface): the groups receivers joined there, what sources they
want, who reported last and when the group runs out unless a receiver
reports again; and per family the querier election: mcrd's role and the
link's querier.`,
		Args: cobra.NoArgs,
		RunE: runE(func(ctx context.Context, _ []string) error {
			var list []controlproto.InterfaceGroups
			req := controlproto.Request{Command: controlproto.CmdListGroups, Interface: iface}
			return c.query(ctx, req, &list, func() error { return writeGroups(c.stdout, list, c.color(c.stdout)) })
		}),
	}
	cmd.Flags().StringVar(&iface, "interface", "", "show this interface only")
	return cmd
}

// writeGroups prints the `groups` tables: the querier state per interface
// and family, then the groups with listeners.
func writeGroups(w io.Writer, list []controlproto.InterfaceGroups, color bool) error {
	if len(list) == 0 {
		_, err := io.WriteString(w, "no listener tables: no output interface of a rule and no --querier interface exists\n")
		return err
	}
	q := table{
		header: []string{"INTERFACE", "FAMILY", "ROLE", "QUERIER", "GROUPS", "QUERIES SENT", "QUERIES HEARD", "REPORTS", "LEAVES"},
		right:  []bool{false, false, false, false, true, true, true, true, true},
	}
	g := table{
		header: []string{"INTERFACE", "GROUP", "MODE", "SOURCES", "VERSION", "REPORTER", "EXPIRES"},
		right:  []bool{false, false, false, false, false, false, true},
	}
	for _, ig := range list {
		for _, f := range ig.Families {
			querier := orDash(f.Querier)
			if f.QuerierExpiresMs > 0 {
				querier += fmt.Sprintf(" (gone in %v)", msDuration(f.QuerierExpiresMs))
			}
			q.add(cell{text: ig.Interface}, cell{text: f.Family}, cell{text: f.Role, color: roleColor(f.Role)},
				cell{text: querier}, cell{text: fmt.Sprint(f.Groups)}, cell{text: count(f.QueriesSent)},
				cell{text: count(f.QueriesReceived)}, cell{text: count(f.Reports)}, cell{text: count(f.Leaves)})
		}
		for _, gl := range ig.Groups {
			sources := "any"
			switch {
			case len(gl.Sources) > 0:
				sources = strings.Join(gl.Sources, ",")
			case gl.Mode == "include":
				sources = "none"
			}
			g.add(plain(ig.Interface, gl.Group, gl.Mode, sources, gl.Version, orDash(gl.Reporter),
				msDuration(gl.ExpiresMs).String())...)
		}
	}
	if err := q.write(w, color); err != nil {
		return err
	}
	if len(g.rows) == 0 {
		_, err := io.WriteString(w, "\nno listeners\n")
		return err
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return err
	}
	return g.write(w, color)
}

// msDuration is ms milliseconds, rounded to tenths of a second.
func msDuration(ms int64) time.Duration {
	return (time.Duration(ms) * time.Millisecond).Round(100 * time.Millisecond)
}

// roleColor colours the querier role: querier green, no address red.
func roleColor(role string) string {
	switch role {
	case "querier":
		return colorGreen
	case "no address":
		return colorRed
	}
	return ""
}
