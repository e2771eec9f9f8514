package supervisor

import (
	"log/slog"

	"github.com/mcrelay/mcr/querier"
)

// openQuerier opens the IGMP/MLD sockets of an interface (CAP_NET_RAW).
func openQuerier(ifindex int, cfg *querier.Config, events func(querier.Event), log *slog.Logger) (groupTable, error) {
	return querier.Open(ifindex, cfg, events, log)
}
