#!/usr/bin/env bash
# One-way latency of multicast relays at paced rates: mcr (uring and mmsg
# backends, optionally with extra mcrd flags), kernel multicast routing
# (smcroute: the reference that "added" latency is measured against) and no
# relay at all (the floor), on the namespace topology and core pinning of
# run.sh (lib.sh). Method and results: docs/PERFORMANCE.md, "Latency".
#
# mcrgen send stamps every datagram with its wall clock and mcrgen recv
# subtracts that from its own when recvmmsg returns. Both run on this machine
# and read one clock, which is what makes the difference a one-way latency.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: scripts/bench/latency.sh [options]   (root; Linux network namespaces)

  --variants LIST   kernel,tc-redirect,go-batched,none,none-cross,mcr-uring,
                    mcr-mmsg; none-cross is no relay with the generator on the
                    relay's core: one crossing from that core to the sink's,
                    the floor of any relay on its own core
                    (default: kernel,none,mcr-uring,mcr-mmsg, in
                    this order); an mcr variant may carry mcrd flags after a
                    colon, split at spaces, so one run compares settings:
                    "kernel,mcr-uring,mcr-uring:--rx-ring-timeout 4ms"
  --mcrd-args FLAGS mcrd flags added to every mcr variant, split at spaces
                    (for example "--rx-ring-blocks 0")
  --rates LIST      paced rates in datagrams/s (default 1000,10000,100000)
  --size N          UDP payload bytes (default 1024)
  --duration S      seconds of traffic per point (default 5: 5,000 samples
                    at 1k pps)
  --reps N          repetitions; the tables show median (min–max) (default 3)
  --out DIR         results directory (default /tmp/mcr-latency-YYYYmmdd-HHMMSS)
  --gen-cpu N       core for the generator (default 0)
  --sink-cpu N      core for the sink (default: the generator's; on a machine
                    with a third core, a core of its own keeps the generator's
                    work out of the sink's latency)
  --sink-fifo PRIO  run the sink SCHED_FIFO at PRIO, so that it reads a
                    datagram as soon as one is queued instead of waiting for
                    the generator's time slice on their shared core; 0 runs it
                    SCHED_OTHER as run.sh does (default 10)
  --relay-cpu N     core for the relay under test (default 1)
  --no-build        use bin/ as it is instead of running `make build` first
  --report DIR      measure nothing: print the tables again from DIR/points.csv

environment: BIN (mcrd, mcrctl, mcrgen; default <repo>/bin), MCRGEN (default
$BIN/mcrgen), NOISE_PCT / NOISE_RETRIES / QUIET_WAIT (when other processes
took more than NOISE_PCT % of the relay core during a point, wait up to
QUIET_WAIT s for a quiet second and measure it again, up to NOISE_RETRIES
times; default 5 / 2 / 20)
EOF
}

repo=$(cd "$(dirname "$0")/../.." && pwd)
tag="mcrl$$"
# shellcheck source=scripts/bench/lib.sh
. "$repo/scripts/bench/lib.sh"

VARIANTS=kernel,none,mcr-uring,mcr-mmsg
MCRD_ARGS=""
RATES=1000,10000,100000
SIZE=1024
DURATION=5
REPS=3
OUT=""
GEN_CPU=0
SINK_CPU=""
RELAY_CPU=1
SINK_FIFO=10
BUILD=1
REPORT=""
BIN=${BIN:-$repo/bin}
MCRGEN=${MCRGEN:-$BIN/mcrgen}
NOISE_PCT=${NOISE_PCT:-5}
NOISE_RETRIES=${NOISE_RETRIES:-2}
QUIET_WAIT=${QUIET_WAIT:-20}

parse_args() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--variants) VARIANTS=$2; shift ;;
		--mcrd-args) MCRD_ARGS=$2; shift ;;
		--rates) RATES=$2; shift ;;
		--size) SIZE=$2; shift ;;
		--duration) DURATION=$2; shift ;;
		--reps) REPS=$2; shift ;;
		--out) OUT=$2; shift ;;
		--gen-cpu) GEN_CPU=$2; shift ;;
		--relay-cpu) RELAY_CPU=$2; shift ;;
		--sink-cpu) SINK_CPU=$2; shift ;;
		--sink-fifo) SINK_FIFO=$2; shift ;;
		--no-build) BUILD=0 ;;
		--report) REPORT=$2; shift ;;
		-h | --help) usage; exit 0 ;;
		*) echo "latency.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
		esac
		shift
	done
	local r
	local -a rates
	IFS=, read -ra rates <<<"$RATES"
	for r in "${rates[@]}"; do
		[[ $r =~ ^[1-9][0-9]*$ ]] || die "rate \"$r\" is not a positive whole number of datagrams/s"
	done
	[[ $SINK_FIFO =~ ^([0-9]|[1-9][0-9])$ ]] || die "--sink-fifo $SINK_FIFO is not a priority 0..99"
	OUT=${OUT:-/tmp/mcr-latency-$(date +%Y%m%d-%H%M%S)}
}

# ------------------------------------------------------------------ point --

# run_point VARIANT RATE REP — one measurement: a paced stream of
# RATE×DURATION datagrams through VARIANT to one sink; writes a CSV row.
run_point() {
	local v=$1 rate=$2 rep=$3
	local group=$OUT_GROUP port=$OUT_PORT gen_if=s0 sif=k1 count=$(($2 * DURATION))
	local gen_cpu=$GEN_CPU
	case "$v" in kernel | none | none-cross) group=$IN_GROUP port=$IN_PORT ;; esac
	case "$v" in none | none-cross) gen_if=n0 sif=n1 ;; esac
	# The sink's link steers receive work to the sink's core, so a datagram
	# sent from the relay's core crosses to it as a relayed one does.
	[ "$v" != none-cross ] || gen_cpu=$RELAY_CPU

	local -a sched=()
	[ "$SINK_FIFO" = 0 ] || sched=(chrt -f "$SINK_FIFO")
	ip netns exec "${sinks[0]}" "${sched[@]}" taskset -c "$SINK_CPU" "$MCRGEN" recv --interface "$sif" --group "$group" \
		--port "$port" --count "$count" --timeout "$((DURATION * 10 + 60))s" >"$tmp/recv.json" 2>"$tmp/recv.err" &
	sink_pids=($!)
	wait_for 5 joined "${sinks[0]}" "$sif" "$group" || log "  warning: sink on $sif did not join $group"

	local a0 p0 q0 ig0 t0 w0 gen_rc=0
	a0=$(all_tasks_runtime "$RELAY_CPU") p0=$(ns_runtime "$relay") q0=$(task_runtime "$ksoftirqd") w0=$(ns_rqwait "$relay")
	ig0=$(cpu_idle "$GEN_CPU") t0=$(now_ns)
	# In the background with `wait`, so that Ctrl-C or a TERM ends the run at
	# once: bash defers a trap until a foreground command has finished, and
	# skips SIGINT altogether when that command exits normally, as mcrgen does.
	ip netns exec "$src" taskset -c "$gen_cpu" "$MCRGEN" send --interface "$gen_if" --group "$IN_GROUP" \
		--port "$IN_PORT" --rate "$rate" --count "$count" --size "$SIZE" --ttl "$TTL" \
		>"$tmp/send.json" 2>"$tmp/send.err" &
	gen_pids=($!)
	wait "${gen_pids[0]}" || gen_rc=$?
	gen_pids=()
	local a1 p1 q1 ig1 t1 w1
	t1=$(now_ns) ig1=$(cpu_idle "$GEN_CPU")
	a1=$(all_tasks_runtime "$RELAY_CPU") q1=$(task_runtime "$ksoftirqd") p1=$(ns_runtime "$relay") w1=$(ns_rqwait "$relay")

	# The sink stops by itself once it has every datagram; give stragglers
	# two seconds, then ask it for its report.
	wait_for 2 gone "${sink_pids[0]}" || true
	stop_pids INT "${sink_pids[@]}"
	sink_pids=()

	local sent recv dups corrupt note=""
	sent=$(json_num sent "$tmp/send.json") recv=$(json_num received "$tmp/recv.json")
	dups=$(json_num duplicates "$tmp/recv.json") corrupt=$(json_num corrupt "$tmp/recv.json")
	[ "$gen_rc" = 0 ] || note+="generator exit $gen_rc: $(head -c 200 "$tmp/send.err" | tr '\n,' '  '); "
	[ -n "$recv" ] || { note+="no sink report; "; cat "$tmp/recv.err" >>"$OUT/logs/sink.log"; }
	[ "${corrupt:-0}" = 0 ] || note+="$corrupt corrupt datagrams; "
	relay_alive || note+="relay died; "

	# Other work on the relay core during the window (see run.sh): the
	# relay's and its core's ksoftirqd runtime are ours, the rest is not.
	last_foreign_pct=0
	local foreign=""
	# none-cross's generator is that other work: not measured.
	if [ -n "$a0" ] && [ -n "$a1" ] && [ "$v" != none-cross ]; then
		foreign=$(((a1 - a0) - (p1 - p0) - (q1 - q0)))
		[ "$foreign" -gt 0 ] || foreign=0
		last_foreign_pct=$((foreign * 100 / (t1 - t0)))
	fi

	awk -v v="$v" -v rate="$rate" -v size="$SIZE" -v rep="$rep" -v sent="${sent:-0}" -v recv="${recv:-0}" \
		-v dups="${dups:-0}" -v p50="$(json_num p50 "$tmp/recv.json")" -v p99="$(json_num p99 "$tmp/recv.json")" \
		-v p999="$(json_num p999 "$tmp/recv.json")" -v max="$(json_num max "$tmp/recv.json")" \
		-v foreign="$foreign" -v el=$((t1 - t0)) -v idle=$((ig1 - ig0)) -v hz="$(getconf CLK_TCK)" \
		-v attempt="$attempt" -v note="$note" -v w0="$w0" -v w1="$w1" 'BEGIN {
		split(w0, a, " "); split(w1, b, " ")
		rqwait = (b[2] > a[2]) ? sprintf("%.1f", (b[1] - a[1]) / (b[2] - a[2]) / 1000) : ""
		loss = (sent > 0) ? 100 * (sent - (recv - dups)) / sent : 100; if (loss < 0) loss = 0
		fp = (foreign == "") ? "" : sprintf("%.1f", 100 * foreign / el)
		gbusy = 100 * (1 - idle / hz / (el / 1e9)); if (gbusy < 0) gbusy = 0
		printf "%s,%s,%s,%s,%d,%d,%.4f,%s,%s,%s,%s,%s,%.1f,%d,%s,%s\n",
			v, rate, size, rep, sent, recv - dups, loss, p50, p99, p999, max, fp, gbusy, attempt, note, rqwait
	}' >"$tmp/row.csv"
	awk -F, '{
		printf "  %-12s %6s pps #%s: p50 %7s  p99 %7s  p99.9 %7s  max %8s µs  loss %6.3f%%  foreign %4s%%  gen core %5.1f%%  relay rq wait %s µs/wake  %s\n",
			$1, $2, $4, $8, $9, $10, $11, $7, ($12 == "" ? "?" : $12), $13, $16, $15 }' "$tmp/row.csv" >&2
}

# ---------------------------------------------------------------- report --

# summarize — per rate, one row per variant (median and spread over
# repetitions) in summary.csv, and the markdown tables on stdout. Column
# numbers refer to points.csv; rows without a sink report are left out.
summarize() {
	awk -F, -v variants="$VARIANTS" -v rates="$RATES" -v summary="$OUT/summary.csv" '
	function sortn(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }
	# stat(k, c): median m, minimum lo, maximum hi of column c over the repetitions of point k.
	function stat(k, c,   a, n, i, parts) {
		n = cnt[k]; for (i = 1; i <= n; i++) { split(row[k, i], parts, ","); a[i] = parts[c] + 0 }
		sortn(a, n); m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2; lo = a[1]; hi = a[n]
		return n
	}
	function cell(fmt) { return (lo == hi) ? sprintf(fmt, m) : sprintf(fmt " (" fmt "–" fmt ")", m, lo, hi) }
	NR > 1 && $8 != "" { k = $1 SUBSEP $2; row[k, ++cnt[k]] = $0; if ($12 == "") noforeign[k] = 1 }
	END {
		nv = split(variants, V, ","); nr = split(rates, R, ",")
		print "variant,rate,reps,p50_us,p50_min,p50_max,p99_us,p99_min,p99_max,p999_us,p999_min,p999_max,max_us,loss_pct,loss_min,loss_max,foreign_pct,gen_busy_pct,added_p50_us,added_p99_us" > summary
		for (r = 1; r <= nr; r++) {
			printf "\n##### %s pps\n\n", R[r]
			print "| variant | p50 µs | p99 µs | p99.9 µs | max µs | loss % | foreign % | gen core % | added p50 µs | added p99 µs |"
			print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
			# Added over kernel forwarding, or over no relay where the
			# kernel cannot forward (no CONFIG_IP_MROUTE).
			refv = "kernel"; ref = refv SUBSEP R[r]; kp50 = kp99 = ""
			if (!(ref in cnt)) { refv = "none"; ref = refv SUBSEP R[r] }
			if (ref in cnt) { stat(ref, 8); kp50 = m; stat(ref, 9); kp99 = m }
			for (v = 1; v <= nv; v++) {
				k = V[v] SUBSEP R[r]
				if (!(k in cnt)) continue
				n = stat(k, 8); p50 = m; c50 = cell("%.0f"); p50lo = lo; p50hi = hi
				stat(k, 9); p99 = m; c99 = cell("%.0f"); p99lo = lo; p99hi = hi
				stat(k, 10); p999 = m; c999 = cell("%.0f"); p999lo = lo; p999hi = hi
				stat(k, 11); worst = hi
				stat(k, 7); loss = m; closs = cell("%.2f"); losslo = lo; losshi = hi
				fm = ""; if (!(k in noforeign)) { stat(k, 12); fm = sprintf("%.0f", m) }
				stat(k, 13); gm = m
				a50 = a99 = ""
				if (kp50 != "" && V[v] != refv) { a50 = sprintf("%+.0f", p50 - kp50); a99 = sprintf("%+.0f", p99 - kp99) }
				printf "| %s | %s | %s | %s | %.0f | %s | %s | %.0f | %s | %s |\n", V[v], c50, c99, c999, worst, closs,
					(fm == "" ? "?" : fm), gm, (a50 == "" ? "–" : a50), (a99 == "" ? "–" : a99)
				printf "%s,%s,%d,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.1f,%.4f,%.4f,%.4f,%s,%.1f,%s,%s\n", V[v], R[r], n,
					p50, p50lo, p50hi, p99, p99lo, p99hi, p999, p999lo, p999hi, worst, loss, losslo, losshi, fm, gm, a50, a99 > summary
			}
		}
	}' "$OUT/points.csv"
}

# report — the markdown results: a header from machine.txt, skipped
# variants, one table per rate.
report() {
	local cpu build flags date
	cpu=$(machine cpu) flags=$(machine "mcrd flags for every mcr variant") date=$(machine date)
	# The build measured: mcrd's own version (BIN may hold a build of another
	# commit than the tree's), else the tree's commit.
	build=$(machine mcrd | sed -n 's/^\(mcrd [^,]*\).*/\1/p')
	[ -n "$build" ] || build=$(machine commit)
	echo "#### Latency ${date:0:10} — ${build:-unknown build}"
	echo
	echo "Command: \`$(machine command)\`${flags:+ (every mcr variant with \`$flags\`)}" \
		"on ${cpu:-unknown CPU}. $(sed -n 's/^generator/Generator/p' "$OUT/machine.txt" 2>/dev/null)," \
		"sink $(machine sink);" \
		"load average before: $(machine "load before")." \
		"One-way latency of the datagrams the sink verified, in µs: median (min–max) over repetitions;" \
		"max = the highest of any repetition; foreign % = share of the relay core other processes used;" \
		"gen core % = how busy the generator and sink core was (near 100: its queueing dominates);" \
		"added = median minus kernel forwarding's median at the same rate (no relay's, when kernel forwarding is not in the run)."
	local s
	for s in "${skipped[@]}"; do echo; echo "Skipped: $s"; done
	summarize
}

# ------------------------------------------------------------------ main --

# The whole run is one function, so bash has parsed all of it before anything
# runs: editing this file during a run cannot change the run.
main() {
	ARGS=$(quote_args "$@")
	skipped=()
	parse_args "$@"
	if [ -n "$REPORT" ]; then reprint VARIANTS RATES; return; fi
	setup
	{
		if [ "$SINK_FIFO" = 0 ]; then echo "sink: SCHED_OTHER"; else echo "sink: SCHED_FIFO $SINK_FIFO"; fi
		[ -z "$MCRD_ARGS" ] || echo "mcrd flags for every mcr variant: $MCRD_ARGS"
	} >>"$OUT/machine.txt"
	local header=variant,rate,size,rep,sent,received,loss_pct,p50_us,p99_us,p999_us,max_us,foreign_pct,gen_busy_pct,attempt,note,relay_rqwait_us
	echo "$header" >"$OUT/points.csv"
	echo "$header" >"$OUT/noisy.csv"

	# Repetitions outermost, so that a disturbance of a few seconds hits
	# one repetition of every variant rather than every repetition of one.
	local -a variant_list rate_list
	local -A broken=()
	IFS=, read -ra variant_list <<<"$VARIANTS"
	IFS=, read -ra rate_list <<<"$RATES"
	local rep v rate
	for ((rep = 1; rep <= REPS; rep++)); do
		for v in "${variant_list[@]}"; do
			[ -z "${broken[$v]:-}" ] || continue
			# none-cross starts no relay, as none does; run_point moves its generator.
			if ! start_variant "${v/#none-cross/none}" 1; then
				log "skip $v: $why"
				skipped+=("$v: $why")
				broken[$v]=1
				stop_variant "$v"
				continue
			fi
			log "== $v, repetition $rep of $REPS"
			sleep 1 # let joins, routes and workers settle
			for rate in "${rate_list[@]}"; do
				if ! relay_alive; then
					log "  $v died; skipping its remaining points (logs in $OUT/logs)"
					skipped+=("$v: died in repetition $rep (logs in $OUT/logs)")
					broken[$v]=1
					break
				fi
				measure "$v" "$rate" "$rep"
				sleep 0.5
			done
			stop_variant "$v"
		done
	done

	report | tee "$OUT/summary.md"
	charts -latency
	log "results: $OUT/summary.md (these tables), $OUT/summary.csv (medians), $OUT/points.csv (every point); logs: $OUT/logs"
}

main "$@"
