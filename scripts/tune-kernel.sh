#!/usr/bin/env bash
# tune-kernel.sh — set the kernel settings mcr relies on, and nothing else.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: tune-kernel.sh [--dry-run] [--persist] [INPUT_INTERFACE...]

Sets the host settings that cost mcr packets when they are too small or on:
  net.core.rmem_max            raised to 8388608 (8 MiB) if lower
  net.core.wmem_max            raised to 4194304 (4 MiB) if lower
  net.core.netdev_max_backlog  raised to 16384 if lower
  on each INPUT_INTERFACE: rx-udp-gro-forwarding and rx-gro-list switched
  off if on (they make GRO merge UDP datagrams before mcr sees them)

It changes nothing else: no other sysctl is written, no other interface
feature (plain GRO and LRO stay as they are), no package is installed. It
only ever raises a sysctl and only switches off what is on, so a second run
changes nothing. A sysctl this network namespace does not have (the
host-wide netdev_max_backlog inside a container) is reported and skipped.

  --dry-run   print what would change and change nothing (needs no root)
  --persist   also write the sysctls to /etc/sysctl.d/90-mcr.conf, so they
              survive a reboot; interface features do not persist: run this
              script at boot, e.g. from a drop-in for mcrd.service:
                [Service]
                ExecStartPre=-+/usr/local/share/mcr/tune-kernel.sh eth0
              ("+" runs it outside the unit's sandbox, which makes /proc/sys
              read-only; "-" lets mcrd start even if this script fails)
  -h, --help  print this help

Checking interfaces needs ethtool (Debian: apt-get install ethtool).

Exit status: 0 when everything is (or, with --dry-run, could be) set;
1 when something could not be checked or changed (no root, no ethtool,
no such interface, a failed command); 2 on a usage error.
EOF
}

# Why each setting (mcrd warns at start about each one that would cost
# packets on an input interface of its rules):
#
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
# It is host-wide: a network namespace other than the host's has no such
# file.
NETDEV_MAX_BACKLOG=16384

# Interface features switched off on each INPUT_INTERFACE, as
# "ethtool -K name" "ethtool -k name" pairs. rx-udp-gro-forwarding and
# rx-gro-list let GRO merge consecutive UDP datagrams of one stream into one
# packet before packet taps run (udp_gro_receive in
# net/ipv4/udp_offload.c), so mcr's AF_PACKET socket would see — and relay —
# one oversized datagram instead of several. Plain GRO
# (generic-receive-offload) does not merge UDP without them, and LRO is
# TCP-only on the drivers we know of: both are left alone, because turning
# them off costs CPU for other traffic and gains mcr nothing.
FEATURES=(
	"rx-udp-gro-forwarding rx-udp-gro-forwarding"
	"rx-gro-list rx-gro-list"
)

SYSCTL_CONF=/etc/sysctl.d/90-mcr.conf

dry_run=0 persist=0
ifaces=()
while [ $# -gt 0 ]; do
	case "$1" in
	--dry-run) dry_run=1 ;;
	--persist) persist=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	-*)
		echo "tune-kernel: unknown option $1 (see --help)" >&2
		exit 2
		;;
	*) ifaces+=("$1") ;;
	esac
	shift
done

if [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
	echo "tune-kernel: needs root to change kernel settings (or use --dry-run)" >&2
	exit 1
fi

changes=0 status=0

# run prints a command and runs it, or only prints it with --dry-run.
run() {
	changes=$((changes + 1))
	if [ "$dry_run" -eq 1 ]; then
		echo "would run: $*"
	else
		echo "run: $*"
		"$@" || {
			echo "tune-kernel: $* failed" >&2
			status=1
		}
	fi
}

# sysctl_file NAME prints the /proc/sys path of sysctl NAME.
sysctl_file() {
	echo "/proc/sys/${1//.//}"
}

# raise_sysctl NAME MIN raises sysctl NAME to MIN unless it is already at
# least MIN, or says why it is skipped.
raise_sysctl() {
	local name=$1 min=$2 file cur
	file=$(sysctl_file "$name")
	if [ ! -e "$file" ]; then
		echo "skip: $name does not exist in this network namespace (a host-wide setting: run tune-kernel.sh on the host)"
		return
	fi
	cur=$(cat "$file")
	if [ "$cur" -ge "$min" ]; then
		echo "ok: $name = $cur (>= $min)"
	else
		run sysctl -qw "$name=$min"
	fi
}

# persist_sysctls writes SYSCTL_CONF, when it would change, with each
# sysctl this namespace has at its current value or the minimum, whichever
# is higher.
persist_sysctls() {
	local want name min file cur
	want="# Written by mcr tune-kernel.sh; see that script for why."$'\n'
	while read -r name min; do
		file=$(sysctl_file "$name")
		[ -e "$file" ] || continue
		cur=$(cat "$file")
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

if [ ${#ifaces[@]} -gt 0 ]; then
	if ! command -v ethtool >/dev/null 2>&1; then
		echo "tune-kernel: ethtool is needed to check the features of ${ifaces[*]} and is not installed;" \
			"install it (Debian: apt-get install ethtool) and run this script again" >&2
		status=1
	else
		for dev in "${ifaces[@]}"; do
			tune_iface "$dev" || status=1
		done
	fi
fi

if [ "$changes" -eq 0 ] && [ "$status" -eq 0 ]; then
	echo "nothing to change"
elif [ "$changes" -eq 0 ]; then
	echo "nothing to change in what could be checked"
elif [ "$dry_run" -eq 1 ]; then
	echo "$changes change(s) needed; nothing was changed (--dry-run)"
fi
exit "$status"
