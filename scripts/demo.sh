#!/usr/bin/env bash
# mcr demo: three network namespaces joined by veth pairs, a real mcrd relaying
# multicast between them, live stats, then a clean teardown.
#
#   [src ns] s0 ──veth── r0 [relay ns: mcrd] r1 ──veth── k0 [sink ns]
#    mcrgen send            239.1.1.1:5001 → 239.2.2.2:6000       mcrgen recv
#
# The relay namespace has no multicast routing at all: the datagrams cross
# only because mcrd captures them on r0 and republishes them on r1. The
# sender is not pinned: as the scheduler moves it between cores, veth hands
# its datagrams to the relay on one core, then another; the relay's two
# workers must still send the stream on in order (FANOUT=cpu shows what
# happens when each core's packets go to that core's worker instead).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: needs root (network namespaces): run make demo as root, or sudo make demo" >&2
	exit 1
fi
BIN=${BIN:-$PWD/bin}
RATE=${RATE:-20000}
COUNT=${COUNT:-200000}
FANOUT=${FANOUT:-hash}
tag="mcrdemo$$"
src="$tag-src" relay="$tag-relay" sink="$tag-sink"
tmp=$(mktemp -d /tmp/mcrdemo.XXXXXX)
sock="$tmp/control.sock"
pids=()

cleanup() {
	set +e
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	for n in "$src" "$relay" "$sink"; do ip netns del "$n" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# wait_for SECONDS WHAT CMD... — poll CMD every 0.1 s until it succeeds.
wait_for() {
	local what=$2 i
	for ((i = $1 * 10; i > 0; i--)); do "${@:3}" >/dev/null 2>&1 && return; sleep 0.1; done
	echo "demo: $what did not happen within $1 s; mcrd's log:" >&2
	cat "$tmp/mcrd.log" >&2
	exit 1
}
rule_active() { "$BIN/mcrctl" --socket "$sock" list | grep -qw active; }

say "building namespaces $src, $relay, $sink"
for n in "$src" "$relay" "$sink"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add s0 netns "$src" type veth peer name r0 netns "$relay"
ip link add r1 netns "$relay" type veth peer name k0 netns "$sink"
ip -n "$src" addr add 10.90.1.1/24 dev s0
ip -n "$relay" addr add 10.90.1.2/24 dev r0
ip -n "$relay" addr add 10.90.2.1/24 dev r1
ip -n "$sink" addr add 10.90.2.2/24 dev k0
for l in "$src s0" "$relay r0" "$relay r1" "$sink k0"; do set -- $l; ip -n "$1" link set "$2" up; done

say "starting mcrd supervisor in $relay (2 workers, --fanout $FANOUT)"
ip netns exec "$relay" "$BIN/mcrd" supervisor --control-socket "$sock" --num-workers 2 \
	--fanout "$FANOUT" --stats-interval 1s >"$tmp/mcrd.log" 2>&1 &
pids+=($!)
wait_for 10 "mcrd answering ping" "$BIN/mcrctl" --socket "$sock" ping
"$BIN/mcrctl" --socket "$sock" version

say "adding a rule: r0 239.1.1.1:5001 → r1 239.2.2.2:6000"
"$BIN/mcrctl" --socket "$sock" add --rule-id demo --name "demo stream" \
	--input-interface r0 --input-group 239.1.1.1 --input-port 5001 --outputs 239.2.2.2:6000:r1
# A veth is operationally up only once the kernel's link watch gets to it.
wait_for 5 "the rule becoming active" rule_active
"$BIN/mcrctl" --socket "$sock" list
"$BIN/mcrctl" --socket "$sock" workers

say "traffic: $COUNT datagrams of 1,024 bytes at $RATE pps; live stats every second"
ip netns exec "$sink" "$BIN/mcrgen" recv --interface k0 --group 239.2.2.2 --port 6000 \
	--count "$COUNT" --timeout $((COUNT / RATE + 10))s >"$tmp/recv.json" 2>"$tmp/recv.err" &
recv=$!
pids+=("$recv")
wait_for 5 "the receiver joining 239.2.2.2" grep -q "listening on" "$tmp/recv.err"
"$BIN/mcrctl" --socket "$sock" stats --watch &
watch=$!
pids+=("$watch")
ip netns exec "$src" "$BIN/mcrgen" send --interface s0 --group 239.1.1.1 --port 5001 \
	--rate "$RATE" --count "$COUNT" --size 1024 --ttl 4 >/dev/null
wait "$recv" || true
sleep 1.2
kill "$watch" 2>/dev/null || true

say "receiver in $sink"
cat "$tmp/recv.json"
say "final stats"
"$BIN/mcrctl" --socket "$sock" stats
say "stopping mcrd (SIGTERM)"
kill -TERM "${pids[0]}"
wait "${pids[0]}" && echo "mcrd exited cleanly"
pids=("${pids[@]:1}")
if grep -q "\"received\":$COUNT,\"lost\":0,\"duplicates\":0,\"reordered\":0," "$tmp/recv.json"; then
	echo "demo: all $COUNT datagrams relayed, in order, none lost"
else
	echo "demo: the receiver did not get all $COUNT datagrams exactly once and in order (see above)"
	exit 1
fi
