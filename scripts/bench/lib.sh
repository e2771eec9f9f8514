# shellcheck shell=bash
# Shared by the multicast relay benchmarks scripts/bench/run.sh (throughput
# and CPU) and scripts/bench/latency.sh (one-way latency): the namespace
# topology, the relay variants, process and namespace clean-up, and the
# counters that tell other work on the relay core apart. Sourced, not run.
#
#   [src ns] s0 ──veth── r0 [relay ns] r1 ──veth── k1 [sink1 ns]
#                                      r2 ──veth── k2 [sink2 ns]   (1→4 fan-out:
#                                      r3 ──veth── k3 [sink3 ns]    one link and
#                                      r4 ──veth── k4 [sink4 ns]    one sink each)
#            n0 ──veth── n1 [sink1 ns]   the "none" path: generator → sink
#
# Input 239.1.1.1:5001 on r0; relays translate to 239.2.2.2:6000 on r1..rN.
# Kernel forwarding cannot translate, so its sinks listen on 239.1.1.1:5001.
# The generator runs on GEN_CPU, the sinks on SINK_CPU (by default the
# same core), the relay on RELAY_CPU, and
# RPS steers each namespace's receive processing to the core of the process
# that reads it, so the relay core carries exactly the relay's work.
#
# The sourcing script sets `repo` and `tag` (the namespace name prefix)
# before sourcing, and before calling anything: BIN, MCRGEN, OUT, GEN_CPU,
# RELAY_CPU, SINK_CPU (empty: GEN_CPU), BUILD (1 = make build first), ARGS
# (its command line), DURATION and REPS (for machine.txt), NOISE_PCT,
# NOISE_RETRIES, QUIET_WAIT, and optionally MCRD_ARGS (flags added to every
# mcr variant's mcrd). It defines run_point, which `measure` calls.
: "${repo:?set repo before sourcing lib.sh}" "${tag:?set tag before sourcing lib.sh}"

IN_GROUP=239.1.1.1 IN_PORT=5001
OUT_GROUP=239.2.2.2 OUT_PORT=6000
TTL=8
NET=10.231 # 10.231.0.0/24 src–relay, 10.231.I.0/24 relay–sinkI, 10.231.9.0/24 the "none" link

# quote_args ARG... — the arguments as one line to paste into a shell,
# quoting those with spaces.
quote_args() {
	local a out=""
	for a in "$@"; do
		if [[ $a =~ [[:space:]] ]]; then out+=" \"$a\""; else out+=" $a"; fi
	done
	echo "${out# }"
}

log() { printf '%s\n' "$*" >&2; }
die() { log "${0##*/}: $*"; exit 1; }

preflight() {
	[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, smcroute): sudo $0 $ARGS"
	ncpu=$(nproc --all)
	local c
	SINK_CPU=${SINK_CPU:-$GEN_CPU}
	for c in "$GEN_CPU" "$SINK_CPU" "$RELAY_CPU"; do
		if ! [[ $c =~ ^[0-9]+$ ]] || [ "$c" -ge "$ncpu" ]; then die "CPU $c does not exist (this machine has $ncpu)"; fi
	done
	if [ "$GEN_CPU" = "$RELAY_CPU" ] || [ "$SINK_CPU" = "$RELAY_CPU" ]; then
		die "the relay core must be neither the generator's nor the sinks'"
	fi
}

# setup — everything before the first point: checks, the scratch directory
# and the clean-up trap, the build, machine.txt, the topology.
setup() {
	preflight
	tmp=$(mktemp -d "/tmp/$tag.XXXXXX")
	trap cleanup EXIT
	trap 'exit 130' INT TERM

	mkdir -p "$OUT/logs"
	build
	[ -x "$MCRGEN" ] || die "no traffic generator: $MCRGEN is missing (make build, or set MCRGEN)"
	{
		echo "command: scripts/bench/${0##*/} $ARGS"
		echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "commit: $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)"
		echo "mcrd: $("$BIN/mcrd" version 2>/dev/null || echo "not built")"
		echo "kernel: $(uname -r)"
		echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo) × $ncpu"
		echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
		if [ "$SINK_CPU" = "$GEN_CPU" ]; then echo -n "generator and sinks on CPU $GEN_CPU"
		else echo -n "generator on CPU $GEN_CPU, sinks on CPU $SINK_CPU"; fi
		echo ", relay on CPU $RELAY_CPU, $DURATION s per point, $REPS repetition(s)"
	} >"$OUT/machine.txt"

	# This shell and its helpers stay off the relay core; relays are pinned onto it.
	taskset -pc "$GEN_CPU" $$ >/dev/null
	ksoftirqd=$(pgrep -x "ksoftirqd/$RELAY_CPU" || true)
	last_foreign_pct=0
	log "topology: namespaces $tag-{src,relay,sink1..4}; generator on CPU $GEN_CPU, sinks on $SINK_CPU, relay on $RELAY_CPU"
	topology
}

# ---------------------------------------------------------------- cleanup --

tmp=""
namespaces=()
holders=()     # one `sleep` per namespace: /proc/PID/net/* reads that namespace
relay_pids=()  # processes of the variant under test
mcr_bin=""     # mcrd and mcrctl of the mcr variant under test (variant_bin)
sink_pids=()
gen_pids=()    # a generator run in the background

# running PID — the process exists and is not a zombie. (An exited child
# stays a zombie only while the shell cannot reap it: in a trap, or in the
# EXIT trap a signal started.)
running() {
	local stat
	read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ]
}

gone() { local p; for p in "$@"; do ! running "$p" || return 1; done; } # gone PID... — all have exited

# stop_pids SIGNAL PID... — signal, then wait up to 5 s, then kill. It polls
# instead of using `wait`: in the EXIT trap of a run interrupted inside
# `wait`, bash can block in a second `wait` for a child it has reaped.
stop_pids() {
	local sig=$1 p deadline
	shift
	[ $# -gt 0 ] || return 0
	kill "-$sig" "$@" 2>/dev/null || true
	deadline=$((SECONDS + 5))
	for p in "$@"; do
		while running "$p" && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
		kill -KILL "$p" 2>/dev/null || true
	done
}

cleanup() {
	set +e
	stop_pids TERM "${gen_pids[@]}" "${sink_pids[@]}" "${relay_pids[@]}"
	kill -KILL "${holders[@]}" 2>/dev/null
	for n in "${namespaces[@]}"; do ip netns del "$n" 2>/dev/null; done
	[ -z "$tmp" ] || rm -rf "$tmp"
}

# ----------------------------------------------------------- dependencies --

apt_install() { # apt_install CMD PACKAGE
	command -v "$1" >/dev/null && return 0
	log "installing $2 from Debian"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >>"$OUT/logs/apt.log" 2>&1; then
		apt-get update -q >>"$OUT/logs/apt.log" 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >>"$OUT/logs/apt.log" 2>&1 || true
	fi
	command -v "$1" >/dev/null
}

build() {
	[ "$BUILD" = 1 ] || return 0
	log "building mcrd, mcrctl, mcrgen (make build)"
	if ! make -C "$repo" build >"$tmp/build.log" 2>&1; then
		# Build what builds, so one broken command does not hide the others.
		log "make build failed; building each command on its own (see $OUT/build.log)"
		for c in mcrd mcrctl mcrgen; do
			(cd "$repo" && go build -o "$BIN/" "./cmd/$c") >>"$tmp/build.log" 2>&1 || true
		done
	fi
	cp "$tmp/build.log" "$OUT/build.log"
}

# -------------------------------------------------------------- topology --

in_ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

add_ns() { # add_ns NAME — loopback up, IPv6 off (no ND/MLD chatter), a counter holder
	ip netns add "$1"
	namespaces+=("$1")
	ip -n "$1" link set lo up
	in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	ip netns exec "$1" sleep infinity &
	holders+=($!)
	holder[$1]=$!
	disown $!
}

add_link() { # add_link NS1 IF1 ADDR1 NS2 IF2 ADDR2 — veth ends created inside their namespaces
	ip link add "$2" netns "$1" type veth peer name "$5" netns "$4"
	ip -n "$1" addr add "$3/24" dev "$2"
	ip -n "$4" addr add "$6/24" dev "$5"
	ip -n "$1" link set "$2" up
	ip -n "$4" link set "$5" up
}

rps() { # rps NS IF CPU — run IF's receive processing on CPU
	local mask
	mask=$(printf '%x' $((1 << $3)))
	in_ns "$1" sh -c "echo $mask > /sys/class/net/$2/queues/rx-0/rps_cpus"
}

declare -A holder
src="$tag-src" relay="$tag-relay"
sinks=("$tag-sink1" "$tag-sink2" "$tag-sink3" "$tag-sink4")

topology() {
	local i
	for n in "$src" "$relay" "${sinks[@]}"; do add_ns "$n"; done
	add_link "$src" s0 "$NET.0.1" "$relay" r0 "$NET.0.2"
	for i in 1 2 3 4; do
		add_link "$relay" "r$i" "$NET.$i.1" "${sinks[i - 1]}" "k$i" "$NET.$i.2"
		rps "$relay" "r$i" "$RELAY_CPU"
		rps "${sinks[i - 1]}" "k$i" "$SINK_CPU"
	done
	add_link "$src" n0 "$NET.9.1" "${sinks[0]}" n1 "$NET.9.2"
	rps "$src" s0 "$GEN_CPU"
	rps "$src" n0 "$GEN_CPU"
	rps "$relay" r0 "$RELAY_CPU"
	rps "${sinks[0]}" n1 "$SINK_CPU"
	# Kernel forwarding checks the reverse path of the source; relays don't care.
	# shellcheck disable=SC2016 # the loop runs in the namespace's shell
	in_ns "$relay" sh -c 'for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > "$f"; done'
}

# --------------------------------------------------------------- counters --

# netdev NS IF FIELD — rx_packets, rx_dropped, tx_packets or tx_dropped of IF.
netdev() {
	awk -v ifn="$2:" -v f="$3" '
		$1 == ifn { col = (f == "rx_packets") ? 3 : (f == "rx_dropped") ? 5 : (f == "tx_packets") ? 11 : 13; print $col }
	' "/proc/${holder[$1]}/net/dev"
}

# udp_rcvbuf_errors NS — datagrams the namespace's UDP sockets dropped for a full buffer.
udp_rcvbuf_errors() {
	awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) k[i] = $i; h = 1 } else for (i = 2; i <= NF; i++) if (k[i] == "RcvbufErrors") print $i }' \
		"/proc/${holder[$1]}/net/snmp"
}

# cpu_idle CPU — idle+iowait jiffies of one core from /proc/stat (no fork).
cpu_idle() {
	local name idle iow
	while read -r name _ _ _ idle iow _; do
		if [ "$name" = "cpu$1" ]; then echo $((idle + iow)); return; fi
	done </proc/stat
}

# ns_runtime NS — nanoseconds every thread of every process in NS has run:
# the scheduler's exact sum_exec_runtime (schedstat), not the tick-sampled
# utime/stime of /proc/PID/stat.
ns_runtime() {
	local -a files=()
	local p
	for p in $(ip netns pids "$1" 2>/dev/null); do files+=("/proc/$p/task/"*/schedstat); done
	# A process may exit between the listing and the read; cat skips it.
	cat "${files[@]}" 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# ns_rqwait NS — "WAIT SLICES": nanoseconds every thread of every process in
# NS has waited on a run queue, ready but not running, and the times they
# were scheduled in (schedstat fields 2 and 3). Their ratio over a window is
# how long the relay waited for its core per wake-up: other work on the
# core, or its own other threads.
ns_rqwait() {
	local -a files=()
	local p
	for p in $(ip netns pids "$1" 2>/dev/null); do files+=("/proc/$p/task/"*/schedstat); done
	cat "${files[@]}" 2>/dev/null | awk '{ w += $2; n += $3 } END { printf "%.0f %.0f\n", w, n }'
}

# task_runtime PID — nanoseconds one task has run (0 when unknown).
task_runtime() { local a _; [ -n "$1" ] && read -r a _ <"/proc/$1/schedstat" 2>/dev/null && echo "$a" || echo 0; }

# all_tasks_runtime CPU — nanoseconds all tasks together have run on CPU, from
# the root cpuacct cgroup (cgroup v1); empty where that file does not exist.
CPUACCT=/sys/fs/cgroup/cpuacct/cpuacct.usage_percpu
all_tasks_runtime() { [ -r "$CPUACCT" ] && awk -v c="$1" '{ print $(c + 1) }' "$CPUACCT" || echo ""; }

now_ns() { local t=${EPOCHREALTIME/./}; echo $((t * 1000)); }

json_num() { # json_num KEY FILE — a number field from a one-line JSON object
	sed -n "s/.*\"$1\":[[:space:]]*\([0-9.]*\).*/\1/p" "$2" | tail -n 1
}

# ---------------------------------------------------------------- relays --

# Each start_* function starts one variant in the relay namespace on the relay
# core for FANOUT outputs and appends its pids to relay_pids. When the variant
# cannot run here it sets `why` and returns non-zero. (They run in this shell,
# not in $(…), so relay_pids survives.)
why=""
# shellcheck disable=SC2034 # the sourcing script reports why
fail() { why=$*; return 1; }

outputs_spec() { # outputs_spec FANOUT — G:P:r1[,G:P:r2…]
	local i spec=""
	for ((i = 1; i <= $1; i++)); do spec+="${spec:+,}$OUT_GROUP:$OUT_PORT:r$i"; done
	echo "$spec"
}

wait_for() { # wait_for SECONDS CMD... — poll CMD every 50 ms until it succeeds
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.05
	done
}

relay_alive() { local p; for p in "${relay_pids[@]}"; do kill -0 "$p" 2>/dev/null || return 1; done; }

mcr_rule_active() { "$mcr_bin/mcrctl" --socket "$tmp/mcr.sock" list | grep -qw active; }

# mcr_up_or_gone PID — mcrd answers, or it has exited (and will not).
mcr_up_or_gone() { ! kill -0 "$1" 2>/dev/null || "$mcr_bin/mcrctl" --socket "$tmp/mcr.sock" ping; }

# variant_bin VARIANT — where an mcr variant's mcrd and mcrctl are: BIN, or
# for NAME@BUILD another build's, BUILD being a directory or the name of
# one under BUILDS (default /tmp/mcr-builds): "mcr-uring@main".
variant_bin() {
	local name=${1%%:*}
	case "$name" in
	*@*/*) echo "${name#*@}" ;;
	*@*) echo "${BUILDS:-/tmp/mcr-builds}/${name#*@}" ;;
	*) echo "$BIN" ;;
	esac
}

# variant_log VARIANT — the log file of a variant; mcr variants with flags
# get their own, named after them.
variant_log() { echo "$OUT/logs/$(printf '%s' "$1" | tr -c 'A-Za-z0-9._=-' '_').log"; }

# start_mcr VARIANT BACKEND FANOUT [FLAG...] — flags written add:FLAG go
# to `mcrctl add` ("add:--preserve-source"), the others to mcrd.
start_mcr() {
	local v=$1 backend=$2 fan=$3 b f pid logf
	shift 3
	local -a flags=() add=()
	for f in "$@"; do
		case "$f" in
		add:*) add+=("${f#add:}") ;;
		*) flags+=("$f") ;;
		esac
	done
	logf=$(variant_log "$v")
	mcr_bin=$(variant_bin "$v")
	for b in mcrd mcrctl; do
		[ -x "$mcr_bin/$b" ] || { fail "$mcr_bin/$b not built"; return 1; }
	done
	rm -f "$tmp/mcr.sock"
	local -a cmd=("$mcr_bin/mcrd" supervisor --num-workers 1 --cpus "$RELAY_CPU" --backend "$backend"
		--control-socket "$tmp/mcr.sock" "${flags[@]}")
	echo "+ ${cmd[*]}" >>"$logf"
	ip netns exec "$relay" taskset -c "$RELAY_CPU" "${cmd[@]}" >>"$logf" 2>&1 &
	pid=$!
	relay_pids+=("$pid")
	wait_for 10 mcr_up_or_gone "$pid" || true
	kill -0 "$pid" 2>/dev/null || { fail "mcrd exited: $(tail -n 3 "$logf" | tr '\n' ' ')"; return 1; }
	"$mcr_bin/mcrctl" --socket "$tmp/mcr.sock" ping >/dev/null 2>&1 ||
		{ fail "mcrd did not answer ping within 10 s: $(tail -n 3 "$logf" | tr '\n' ' ')"; return 1; }
	"$mcr_bin/mcrctl" --socket "$tmp/mcr.sock" add --input-interface r0 --input-group "$IN_GROUP" \
		--input-port "$IN_PORT" --outputs "$(outputs_spec "$fan")" "${add[@]}" >>"$logf" 2>&1 ||
		{ fail "mcrctl add failed: $(tail -n 2 "$logf" | tr '\n' ' ')"; return 1; }
	wait_for 10 mcr_rule_active || { fail "the rule did not become active within 10 s"; return 1; }
	"$mcr_bin/mcrctl" --socket "$tmp/mcr.sock" version >>"$logf" 2>&1 || true
}

socat_joined() { [ "$(in_ns "$relay" ss -uanH "sport = :$IN_PORT" | wc -l)" -ge "$1" ]; }

start_socat() { # start_socat FANOUT — one socat per output, as a socat user would fan out
	local i
	apt_install socat socat || { fail "socat is not installed and apt-get install socat failed"; return 1; }
	for ((i = 1; i <= $1; i++)); do
		ip netns exec "$relay" taskset -c "$RELAY_CPU" socat -u \
			"UDP4-RECV:$IN_PORT,reuseaddr,ip-add-membership=$IN_GROUP:r0" \
			"UDP4-SENDTO:$OUT_GROUP:$OUT_PORT,ip-multicast-if=$NET.$i.1,ip-multicast-ttl=$TTL" \
			>>"$OUT/logs/socat.log" 2>&1 &
		relay_pids+=($!)
	done
	wait_for 5 socat_joined "$1" || { fail "socat did not bind port $IN_PORT"; return 1; }
}

kernel_routed() { in_ns "$relay" ip mroute show | grep -q "$IN_GROUP.*Iif: r0.*Oifs: r1"; }

start_kernel() { # start_kernel FANOUT — a static (S,G) route r0 → r1..rN
	local i oifs=""
	apt_install smcrouted smcroute || { fail "smcroute is not installed and apt-get install smcroute failed"; return 1; }
	{
		echo "phyint r0 enable"
		for ((i = 1; i <= $1; i++)); do echo "phyint r$i enable"; oifs+=" r$i"; done
		echo "mroute from r0 source $NET.0.1 group $IN_GROUP to$oifs"
	} >"$tmp/smcroute.conf"
	cp "$tmp/smcroute.conf" "$OUT/logs/smcroute-fanout$1.conf"
	# Own socket, pid file and identity: never the host's /run/smcroute.*.
	ip netns exec "$relay" taskset -c "$RELAY_CPU" smcrouted -n -N -l notice -i "$tag" -f "$tmp/smcroute.conf" \
		-P "$tmp/smcroute.pid" -u "$tmp/smcroute.sock" >>"$OUT/logs/smcroute.log" 2>&1 &
	relay_pids+=($!)
	wait_for 10 kernel_routed || { fail "smcrouted did not install the route: $(tail -n 2 "$OUT/logs/smcroute.log" | tr '\n' ' ')"; return 1; }
}

go_joined() { in_ns "$relay" ss -uanH "sport = :$IN_PORT" | grep -q .; }

start_go() { # start_go FANOUT
	if [ ! -x "$tmp/baseline" ]; then
		(cd "$repo" && go build -o "$tmp/baseline" ./scripts/bench/baseline) >>"$OUT/logs/go-batched.log" 2>&1 ||
			{ fail "go build ./scripts/bench/baseline failed (see logs/go-batched.log)"; return 1; }
	fi
	ip netns exec "$relay" taskset -c "$RELAY_CPU" "$tmp/baseline" --input-interface r0 --input-group "$IN_GROUP" \
		--input-port "$IN_PORT" --outputs "$(outputs_spec "$1")" --batch 64 --ttl "$TTL" \
		>>"$OUT/logs/go-batched.log" 2>&1 &
	relay_pids+=($!)
	wait_for 5 go_joined || { fail "the baseline did not bind port $IN_PORT"; return 1; }
}

tc_ready() { grep -qx ready "$OUT/logs/tc-redirect.log"; }

# start_tc FANOUT — the kernel-path reference where kernel forwarding cannot
# run: a tc ingress eBPF program on r0 that rewrites and redirects each
# datagram to r1..rN (scripts/bench/tcredirect). Its work is done in the
# relay core's softirq; the process only holds the program's link.
start_tc() {
	if [ ! -x "$tmp/tcredirect" ]; then
		(cd "$repo" && go build -o "$tmp/tcredirect" ./scripts/bench/tcredirect) >>"$OUT/logs/tc-redirect.log" 2>&1 ||
			{ fail "go build ./scripts/bench/tcredirect failed (see logs/tc-redirect.log)"; return 1; }
	fi
	: >"$OUT/logs/tc-redirect.log"
	ip netns exec "$relay" taskset -c "$RELAY_CPU" "$tmp/tcredirect" --input-interface r0 --input-group "$IN_GROUP" \
		--input-port "$IN_PORT" --outputs "$(outputs_spec "$1")" --ttl "$TTL" >>"$OUT/logs/tc-redirect.log" 2>&1 &
	relay_pids+=($!)
	wait_for 10 tc_ready || { fail "tcredirect did not attach: $(tail -n 2 "$OUT/logs/tc-redirect.log" | tr '\n' ' ')"; return 1; }
}

# start_variant VARIANT FANOUT — VARIANT is a name, or for mcr a name with
# another build after an @ (variant_bin) and extra flags after a colon
# ("mcr-uring@main:--rx-ring-timeout 4ms add:--preserve-source"); the flags
# in MCRD_ARGS go to every mcr variant. Both are split at spaces.
start_variant() {
	local name=${1%%:*} flags=""
	[ "$name" = "$1" ] || flags=${1#*:}
	name=${name%%@*}
	local -a extra
	read -ra extra <<<"$flags ${MCRD_ARGS:-}"
	case "$name" in
	mcr-uring | mcr-mmsg) start_mcr "$1" "${name#mcr-}" "$2" "${extra[@]}"; return ;;
	esac
	[ -z "$flags" ] || { fail "only mcr variants take mcrd flags"; return 1; }
	case "$name" in
	socat) start_socat "$2" ;;
	kernel) start_kernel "$2" ;;
	go-batched) start_go "$2" ;;
	tc-redirect) start_tc "$2" ;;
	none) [ "$2" = 1 ] || fail "no relay means no fan-out: 1→1 only" ;;
	*) fail "unknown variant (known: mcr-uring, mcr-mmsg, socat, kernel, tc-redirect, go-batched, none, and in latency.sh none-cross)" ;;
	esac
}

stop_variant() { # stop_variant VARIANT — keep mcr's own counters, then stop it
	case "$1" in
	mcr-*) "$(variant_bin "$1")/mcrctl" --socket "$tmp/mcr.sock" stats >>"$(variant_log "$1")" 2>&1 || true ;;
	esac
	stop_pids TERM "${relay_pids[@]}"
	relay_pids=()
}

# joined NS IF GROUP — IF in NS has joined GROUP.
joined() { in_ns "$1" ip maddr show dev "$2" | grep -qw "inet *$3"; }

# ----------------------------------------------------------------- noise --

# foreign_pct_now — share of the relay core that other work used during the
# last second (the relay itself is idle between points).
foreign_pct_now() {
	local a0 p0 q0 t0 a1 p1 q1 t1
	a0=$(all_tasks_runtime "$RELAY_CPU") p0=$(ns_runtime "$relay") q0=$(task_runtime "$ksoftirqd") t0=$(now_ns)
	sleep 1
	a1=$(all_tasks_runtime "$RELAY_CPU") p1=$(ns_runtime "$relay") q1=$(task_runtime "$ksoftirqd") t1=$(now_ns)
	echo $((((a1 - a0) - (p1 - p0) - (q1 - q0)) * 100 / (t1 - t0)))
}

# wait_quiet — wait up to QUIET_WAIT seconds for a second in which other work
# used at most NOISE_PCT % of the relay core.
wait_quiet() {
	[ -r "$CPUACCT" ] || return 0
	local deadline=$((SECONDS + QUIET_WAIT)) pct
	while pct=$(foreign_pct_now); [ "$pct" -gt "$NOISE_PCT" ]; do
		if [ $SECONDS -ge $deadline ]; then
			log "    the relay core is still ${pct}% busy with other work; measuring anyway"
			return 0
		fi
	done
}

# measure ARG... — run_point ARG...; while other work took
# more than NOISE_PCT % of the relay core, wait for a quiet moment and measure
# again (at most NOISE_RETRIES times). Rejected runs go to noisy.csv, the kept
# one to points.csv.
measure() {
	for ((attempt = 0; ; attempt++)); do
		run_point "$@"
		if [ "$last_foreign_pct" -le "$NOISE_PCT" ] || [ "$attempt" -ge "$NOISE_RETRIES" ]; then break; fi
		log "    other work took ${last_foreign_pct}% of the relay core; measuring again"
		cat "$tmp/row.csv" >>"$OUT/noisy.csv"
		wait_quiet
	done
	cat "$tmp/row.csv" >>"$OUT/points.csv"
}

# csv_values COLUMN — the distinct values of a points.csv column, comma-separated, in order.
csv_values() { awk -F, -v c="$1" 'NR > 1 && !seen[$c]++ { printf "%s%s", sep, $c; sep = "," }' "$OUT/points.csv"; }

# reprint VAR... — --report DIR: measure nothing, print the tables again
# from DIR/points.csv. The sourcing script's report reads the lists in VAR…,
# which are set from points.csv's first columns in that order.
reprint() {
	OUT=$REPORT
	[ -r "$OUT/points.csv" ] || die "no $OUT/points.csv"
	local var col=1
	for var in "$@"; do
		printf -v "$var" %s "$(csv_values "$col")"
		col=$((col + 1)) # not in $(…): a subshell's increment is lost
	done
	report | tee "$OUT/summary.md"
}

# machine KEY — the value of the "KEY: value" line of machine.txt.
machine() { sed -n "s/^$1: //p" "$OUT/machine.txt" 2>/dev/null; }

# charts KIND — SVG bar charts of $OUT/summary.csv, written next to it
# (scripts/bench/charts; KIND is -run or -latency). Skipped without Go.
charts() {
	if ! command -v go >/dev/null; then
		log "no go in PATH: charts skipped (go run ./scripts/bench/charts $1 $OUT/summary.csv -out DIR)"
		return 0
	fi
	(cd "$repo" && go run ./scripts/bench/charts "$1" "$OUT/summary.csv" -out "$OUT") || log "charts failed"
}
