// Package sdnotify provides mcrd's systemd integration (sd_notify(3)) for
// `Type=notify` units, see packaging/mcrd.service: readiness, reloads,
// shutdown and the watchdog.
//
// Every function is a no-op returning nil when NOTIFY_SOCKET is unset, that
// is when mcrd does not run under systemd or runs in a unit of another
// type. Workers inherit NOTIFY_SOCKET but never notify; the unit's
// NotifyAccess=main would ignore them anyway. It is Linux-only.
package sdnotify
