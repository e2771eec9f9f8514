package supervisor

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/mcrelay/mcr/internal/relaysock"
)

// probeRaw finds out once, at start, whether the supervisor can open the
// raw sockets of transparent outputs (relaysock.OpenRaw), per family.
func probeRaw() rawSupport {
	explain := func(err error) error {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("%w (mcrd needs CAP_NET_RAW)", err)
		}
		return err
	}
	return rawSupport{v4: explain(relaysock.ProbeRaw(false)), v6: explain(relaysock.ProbeRaw(true))}
}
