#!/usr/bin/env bash
# tune-kernel.sh — set the kernel settings mcr relies on, and nothing else.
#
#   scripts/tune-kernel.sh [--dry-run] [--persist] [INPUT_INTERFACE...]
#
# It only ever raises a sysctl (a host tuned higher keeps its value) and only
# switches off an interface feature that is on, so running it twice changes
# nothing the second time. --dry-run prints what it would change and changes
# nothing; it needs no root. --persist also writes the sysctls to
# /etc/sysctl.d/90-mcr.conf so they survive a reboot. Interface features do
# not persist: run this script at boot, e.g. from a drop-in for mcrd.service
#
#   [Service]
#   ExecStartPre=+/usr/local/share/mcr/tune-kernel.sh eth0
#
# ("+" runs it outside the unit's sandbox, which makes /proc/sys read-only).
# mcrd warns at start about each of these settings that would cost packets.
set -euo pipefail

# net.core.rmem_max: the cap on SO_RCVBUF. Each mcr worker asks for an
# 8 MiB receive buffer on every AF_PACKET input socket, so that a burst that
# arrives while the worker is busy waits in the socket instead of being
# dropped (counted as kernel_drops). With CAP_NET_ADMIN the worker uses
# SO_RCVBUFFORCE, which ignores this cap; without it (a unit with fewer
# capabilities, a container) the buffer is 2 × rmem_max, 416 KiB by default.
RMEM_MAX=8388608

# net.core.wmem_max: the cap on SO_SNDBUF, the same story for the 4 MiB send
# buffer of each output socket: too small, and a burst to one output fails
# with EAGAIN and counts as egress_errors.
WMEM_MAX=4194304

# net.core.netdev_max_backlog: the length of each CPU's backlog queue, where
# packets wait when a driver hands them over with netif_rx (veth, macvlan
# multicast) or when RPS steers them to another CPU. A burst beyond it is
# dropped before AF_PACKET sees it, visible only in /proc/net/softnet_stat
# (second column). The default, 1000, is a fraction of a millisecond of a
# busy 10 Gb/s input. Physical NICs processed in their own NAPI poll without
# RPS do not use it; raising it costs memory only while a burst is queued.
NETDEV_MAX_BACKLOG=16384

# Interface features switched off on each INPUT_INTERFACE, as
# "ethtool -K name" "ethtool -k name" pairs:
#
# - rx-udp-gro-forwarding and rx-gro-list let GRO merge consecutive UDP
#   datagrams of one stream into one packet before packet taps run, so
#   mcr's AF_PACKET socket would see — and relay — one oversized datagram
#   instead of several. These two are what actually costs packets.
# - gro (generic-receive-offload): with GRO off the kernel does no software
#   GRO on the interface at all, so nothing can merge UDP even if the two
#   features above are switched back on later, or a local application asks
#   for UDP GRO on the same port. It costs CPU only for TCP received on that
#   interface.
# - lro (large-receive-offload): hardware coalescing; the drivers we know
#   of apply it to TCP only, and the kernel itself turns it off on any
#   interface that forwards. Off, so the NIC hands over frames as they came.
FEATURES=(
	"rx-udp-gro-forwarding rx-udp-gro-forwarding"
	"rx-gro-list rx-gro-list"
	"gro generic-receive-offload"
	"lro large-receive-offload"
)

SYSCTL_CONF=/etc/sysctl.d/90-mcr.conf

usage() {
	sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

dry_run=0 persist=0
ifaces=()
while [ $# -gt 0 ]; do
	case "$1" in
	--dry-run) dry_run=1 ;;
	--persist) persist=1 ;;
	-h | --help) usage ;;
	-*) echo "tune-kernel: unknown option $1" >&2; usage ;;
	*) ifaces+=("$1") ;;
	esac
	shift
done

if [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
	echo "tune-kernel: needs root to change kernel settings (or use --dry-run)" >&2
	exit 1
fi

changes=0

# run prints a command and runs it, or only prints it with --dry-run.
run() {
	changes=$((changes + 1))
	if [ "$dry_run" -eq 1 ]; then
		echo "would run: $*"
	else
		echo "run: $*"
		"$@"
	fi
}

# raise_sysctl NAME MIN raises sysctl NAME to MIN unless it is already at
# least MIN.
raise_sysctl() {
	local name=$1 min=$2 cur
	cur=$(cat "/proc/sys/${name//.//}")
	if [ "$cur" -ge "$min" ]; then
		echo "ok: $name = $cur (>= $min)"
	else
		run sysctl -qw "$name=$min"
	fi
}

# persist_sysctls writes SYSCTL_CONF, when it would change, with each
# sysctl at its current value or the minimum, whichever is higher.
persist_sysctls() {
	local want name min cur
	want="# Written by mcr scripts/tune-kernel.sh; see that script for why."$'\n'
	while read -r name min; do
		cur=$(cat "/proc/sys/${name//.//}")
		want+="$name = $((cur > min ? cur : min))"$'\n'
	done <<-EOF
		net.core.rmem_max $RMEM_MAX
		net.core.wmem_max $WMEM_MAX
		net.core.netdev_max_backlog $NETDEV_MAX_BACKLOG
	EOF
	if [ -f "$SYSCTL_CONF" ] && [ "$(cat "$SYSCTL_CONF")"$'\n' = "$want" ]; then
		echo "ok: $SYSCTL_CONF is up to date"
	elif [ "$dry_run" -eq 1 ]; then
		changes=$((changes + 1))
		echo "would write $SYSCTL_CONF:"
		printf '%s' "$want" | sed 's/^/    /'
	else
		changes=$((changes + 1))
		echo "write: $SYSCTL_CONF"
		printf '%s' "$want" >"$SYSCTL_CONF"
	fi
}

# ensure_ethtool installs ethtool with apt-get when it is missing.
ensure_ethtool() {
	if command -v ethtool >/dev/null 2>&1; then
		return
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "tune-kernel: ethtool is missing and apt-get is not available; install ethtool" >&2
		exit 1
	fi
	if [ "$dry_run" -eq 1 ]; then
		echo "would run: apt-get install -y ethtool (ethtool is missing; interface features are not checked)"
		return 1
	fi
	run apt-get install -y ethtool
}

# tune_iface switches off each feature of FEATURES that is on for $1.
tune_iface() {
	local dev=$1 state pair short long off=()
	if [ ! -e "/sys/class/net/$dev" ]; then
		echo "tune-kernel: no interface $dev" >&2
		return 1
	fi
	state=$(ethtool -k "$dev")
	for pair in "${FEATURES[@]}"; do
		read -r short long <<<"$pair"
		case "$(sed -n "s/^$long: //p" <<<"$state")" in
		on) off+=("$short" off) ;;
		"on [fixed]") echo "warning: $dev: $long is on and cannot be changed (fixed by the driver)" >&2 ;;
		"") ;; # this ethtool or kernel does not know the feature
		*) echo "ok: $dev: $long off" ;;
		esac
	done
	if [ ${#off[@]} -gt 0 ]; then
		run ethtool -K "$dev" "${off[@]}"
	fi
}

raise_sysctl net.core.rmem_max "$RMEM_MAX"
raise_sysctl net.core.wmem_max "$WMEM_MAX"
raise_sysctl net.core.netdev_max_backlog "$NETDEV_MAX_BACKLOG"
if [ "$persist" -eq 1 ]; then
	persist_sysctls
fi

status=0
if [ ${#ifaces[@]} -gt 0 ] && ensure_ethtool; then
	for dev in "${ifaces[@]}"; do
		tune_iface "$dev" || status=1
	done
fi

if [ "$changes" -eq 0 ]; then
	echo "nothing to change"
elif [ "$dry_run" -eq 1 ]; then
	echo "$changes change(s) needed; nothing was changed (--dry-run)"
fi
exit "$status"
