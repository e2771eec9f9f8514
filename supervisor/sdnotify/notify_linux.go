package sdnotify

import (
	"fmt"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// Ready tells systemd that mcrd is up: send it once the workers run,
// the --config rules are loaded and the control socket serves, so that units
// ordered After=mcrd.service start against a working relay. Send it again
// after a reload announced with Reloading has finished.
func Ready() error { return sdNotify(sd.SdNotifyReady) }

// Reloading tells systemd that mcrd is reloading its config (SIGHUP);
// systemd shows the unit as "reloading" until the next Ready. The
// message carries MONOTONIC_USEC, which sd_notify(3) asks for with
// RELOADING=1 so that systemd can match the reload to its request.
func Reloading() error {
	return sdNotify(sd.SdNotifyReloading + "\n" + sd.SdNotifyMonotonicUsec())
}

// Stopping tells systemd that mcrd has begun to shut down, so that
// systemd does not count the exit that follows as a crash.
func Stopping() error { return sdNotify(sd.SdNotifyStopping) }

// Watchdog feeds the systemd watchdog (WatchdogSec= in the unit).
// The supervisor (instance.feedWatchdog) calls it only after the control server answered a
// Ping on its own private connection (not through the socket, where
// operators' connections could crowd the check out) and the ruleset lock
// was free, so a wedged supervisor stops feeding the watchdog and systemd
// restarts it.
func Watchdog() error { return sdNotify(sd.SdNotifyWatchdog) }

// WatchdogInterval returns the unit's watchdog timeout (WATCHDOG_USEC) and
// true when systemd watches this process (WATCHDOG_PID is unset or is our
// pid): Watchdog must then be called at least once per interval, and
// sd_watchdog_enabled(3) recommends every half interval. It returns false
// when the watchdog is off, or when the variables were meant for another
// process, such as the supervisor that spawned a worker.
func WatchdogInterval() (time.Duration, bool) {
	d, err := sd.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		return 0, false
	}
	return d, true
}

// sdNotify sends state to systemd's notification socket, if there is one.
func sdNotify(state string) error {
	if _, err := sd.SdNotify(false, state); err != nil {
		return fmt.Errorf("notify systemd %q: %w", state, err)
	}
	return nil
}
