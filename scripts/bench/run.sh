#!/usr/bin/env bash
# Side-by-side multicast relay benchmark: mcr (uring and mmsg backends), socat,
# kernel multicast routing (smcroute), a tc eBPF redirect (the kernel path where
# multicast routing is not built in), a batched Go relay, and no relay at all,
# in one invocation on one namespace topology. Method and results:
# docs/PERFORMANCE.md.
#
# The topology, the variants and the clean-up are in lib.sh, shared with
# latency.sh.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: scripts/bench/run.sh [options]   (root; Linux network namespaces)

  --variants LIST  mcr-uring,mcr-mmsg,socat,kernel,tc-redirect,go-batched,none (default: all);
                   an mcr variant may name another build after an @ (a
                   directory, or one under $BUILDS, default /tmp/mcr-builds)
                   and carry extra flags after a colon, mcrd's as they are
                   and `mcrctl add`'s as add:FLAG:
                   "mcr-uring@main:--rx-ring-blocks 0 add:--preserve-source"
  --rates LIST     offered rates in pps, "max" = as fast as the generator can
                   for the duration, "burstN" = N datagrams as fast as the
                   generator can, into an idle relay: the burst regression
                   point (burst4000 is 20 ms at 200k pps)
                   (default 50000,100000,200000,300000,max)
  --sizes LIST     UDP payload bytes (default 1024,64)
  --fanouts LIST   outputs per input, 1 and/or 4 (default 1,4)
  --reps N         repetitions per point; the table shows median (min–max) (default 3)
  --duration S     seconds of traffic per point at the offered rate (default 5)
  --quick          rates 50000,200000,max, 1 repetition, 3 s (options given
                   after --quick override it)
  --out DIR        results directory (default /tmp/mcr-bench-YYYYmmdd-HHMMSS)
  --gen-cpu N      core for the generator and sinks (default 0)
  --relay-cpu N    core for the relay under test (default 1)
  --no-build       use bin/ as it is instead of running `make build` first
  --report DIR     measure nothing: print the tables again from DIR/points.csv
                   (for example after appending the rows of another run)

environment: BIN (mcrd, mcrctl, mcrgen; default <repo>/bin), MCRGEN (default
$BIN/mcrgen),
NOISE_PCT / NOISE_RETRIES / QUIET_WAIT (when other processes took more than
NOISE_PCT % of the relay core during a point, wait up to QUIET_WAIT s for a
quiet second and measure it again, up to NOISE_RETRIES times; default 5 / 2 / 20)
EOF
}

repo=$(cd "$(dirname "$0")/../.." && pwd)
tag="mcrb$$"
# shellcheck source=scripts/bench/lib.sh
. "$repo/scripts/bench/lib.sh"
VARIANTS=mcr-uring,mcr-mmsg,socat,kernel,tc-redirect,go-batched,none
RATES=50000,100000,200000,300000,max
SIZES=1024,64
FANOUTS=1,4
REPS=3
DURATION=5
OUT=""
GEN_CPU=0
SINK_CPU="" # the generator's core
RELAY_CPU=1
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
		--rates) RATES=$2; shift ;;
		--sizes) SIZES=$2; shift ;;
		--fanouts) FANOUTS=$2; shift ;;
		--reps) REPS=$2; shift ;;
		--duration) DURATION=$2; shift ;;
		--quick) RATES=50000,200000,max REPS=1 DURATION=3 ;;
		--out) OUT=$2; shift ;;
		--gen-cpu) GEN_CPU=$2; shift ;;
		--relay-cpu) RELAY_CPU=$2; shift ;;
		--no-build) BUILD=0 ;;
		--report) REPORT=$2; shift ;;
		-h | --help) usage; exit 0 ;;
		*) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
		esac
		shift
	done
	OUT=${OUT:-/tmp/mcr-bench-$(date +%Y%m%d-%H%M%S)}
}

# ------------------------------------------------------------------ point --

# run_point VARIANT FANOUT SIZE RATE REP — one measurement; appends a CSV row.
run_point() {
	local v=$1 fan=$2 size=$3 rate=$4 rep=$5
	local group=$OUT_GROUP port=$OUT_PORT gen_if=s0 i
	local -a sns=() sifs=()
	if [ "$v" = kernel ] || [ "$v" = none ]; then group=$IN_GROUP port=$IN_PORT; fi
	if [ "$v" = none ]; then
		gen_if=n0 sns=("${sinks[0]}") sifs=(n1)
	else
		for ((i = 1; i <= fan; i++)); do sns+=("${sinks[i - 1]}") sifs+=("k$i"); done
	fi
	# A paced point sends rate×duration datagrams and its sinks stop once they
	# have them all; "max" sends as fast as it can for the duration.
	local -a gen_args=(--rate 0 --duration "${DURATION}s") sink_args=()
	if [[ $rate =~ ^burst([0-9]+)$ ]]; then
		gen_args=(--rate 0 --count "${BASH_REMATCH[1]}") sink_args=(--count "${BASH_REMATCH[1]}")
	elif [ "$rate" != max ]; then
		gen_args=(--rate "$rate" --count "$((rate * DURATION))") sink_args=(--count "$((rate * DURATION))")
	fi

	sink_pids=()
	for i in "${!sns[@]}"; do
		ip netns exec "${sns[i]}" taskset -c "$SINK_CPU" "$MCRGEN" recv --interface "${sifs[i]}" --group "$group" \
			--port "$port" "${sink_args[@]}" --timeout "$((DURATION * 10 + 60))s" \
			>"$tmp/recv$i.json" 2>"$tmp/recv$i.err" &
		sink_pids+=($!)
	done
	for i in "${!sns[@]}"; do
		wait_for 5 joined "${sns[i]}" "${sifs[i]}" "$group" || log "  warning: sink on ${sifs[i]} did not join $group"
	done

	local s0_tx0 rb0=0 r_tx0=0 k_rx0=0
	s0_tx0=$(netdev "$src" "$gen_if" tx_packets)
	for i in "${!sns[@]}"; do
		rb0=$((rb0 + $(udp_rcvbuf_errors "${sns[i]}")))
		k_rx0=$((k_rx0 + $(netdev "${sns[i]}" "${sifs[i]}" rx_packets)))
		[ "$v" = none ] || r_tx0=$((r_tx0 + $(netdev "$relay" "r$((i + 1))" tx_packets)))
	done

	# The measured window is exactly the generator's run.
	local p0 a0 q0 idle_r0 idle_g0 t0 gen_rc=0
	p0=$(ns_runtime "$relay") a0=$(all_tasks_runtime "$RELAY_CPU") q0=$(task_runtime "$ksoftirqd")
	idle_r0=$(cpu_idle "$RELAY_CPU") idle_g0=$(cpu_idle "$GEN_CPU") t0=$(now_ns)
	ip netns exec "$src" taskset -c "$GEN_CPU" "$MCRGEN" send --interface "$gen_if" --group "$IN_GROUP" --port "$IN_PORT" \
		"${gen_args[@]}" --size "$size" --ttl "$TTL" >"$tmp/send.out" 2>"$tmp/send.err" || gen_rc=$?
	local t1 idle_r1 idle_g1 p1 a1 q1
	t1=$(now_ns) idle_r1=$(cpu_idle "$RELAY_CPU") idle_g1=$(cpu_idle "$GEN_CPU")
	a1=$(all_tasks_runtime "$RELAY_CPU") q1=$(task_runtime "$ksoftirqd") p1=$(ns_runtime "$relay")

	# Sinks stop by themselves once they have every datagram; give stragglers
	# two seconds, then ask the rest for their report.
	wait_for 2 gone "${sink_pids[@]}" || true
	stop_pids INT "${sink_pids[@]}"
	sink_pids=()

	local s0_tx1 rb1=0 r_tx1=0 k_rx1=0 recv=0 dups=0 glost=0 note="" r d l c
	s0_tx1=$(netdev "$src" "$gen_if" tx_packets)
	for i in "${!sns[@]}"; do
		rb1=$((rb1 + $(udp_rcvbuf_errors "${sns[i]}")))
		k_rx1=$((k_rx1 + $(netdev "${sns[i]}" "${sifs[i]}" rx_packets)))
		[ "$v" = none ] || r_tx1=$((r_tx1 + $(netdev "$relay" "r$((i + 1))" tx_packets)))
		r=$(json_num received "$tmp/recv$i.json") d=$(json_num duplicates "$tmp/recv$i.json")
		l=$(json_num lost "$tmp/recv$i.json") c=$(json_num corrupt "$tmp/recv$i.json")
		[ "${c:-0}" = 0 ] || note+="${sifs[i]}: $c corrupt datagrams; "
		if [ -z "$r" ]; then
			note+="no sink report on ${sifs[i]}; "
			cat "$tmp/recv$i.err" >>"$OUT/logs/sink.log"
		fi
		recv=$((recv + ${r:-0} - ${d:-0})) dups=$((dups + ${d:-0})) glost=$((glost + ${l:-0}))
	done
	[ "$gen_rc" = 0 ] || note+="generator exit $gen_rc: $(head -c 200 "$tmp/send.err" | tr '\n,' '  '); "
	relay_alive || note+="relay died; "

	# Foreign time: what tasks other than the relay's (and the relay core's
	# ksoftirqd) ran on the relay core during the window — other work on a
	# shared machine. Empty where cpuacct is not available.
	local foreign=""
	if [ -n "$a0" ] && [ -n "$a1" ]; then
		foreign=$(((a1 - a0) - (p1 - p0) - (q1 - q0)))
		[ "$foreign" -gt 0 ] || foreign=0
	fi
	last_foreign_pct=$([ -n "$foreign" ] && echo $((foreign * 100 / (t1 - t0))) || echo 0)

	# Sent = datagrams that left the generator's interface (IPv6 is off, so
	# nothing else leaves it); the generator's own count is the fallback.
	local sent=$((s0_tx1 - s0_tx0))
	[ "$sent" -gt 0 ] || sent=$(json_num sent "$tmp/send.out")
	[ "${sent:-0}" -gt 0 ] || sent=1
	# Busy time of a core = wall time − its idle and iowait time (/proc/stat, USER_HZ).
	awk -v v="$v" -v fan="$fan" -v size="$size" -v rate="$rate" -v rep="$rep" -v sent="$sent" \
		-v t0="$t0" -v t1="$t1" -v ir0="$idle_r0" -v ir1="$idle_r1" -v ig0="$idle_g0" -v ig1="$idle_g1" \
		-v hz="$HZ" -v recv="$recv" -v dups="$dups" -v proc=$((p1 - p0)) -v foreign="$foreign" \
		-v rtx=$((r_tx1 - r_tx0)) -v krx=$((k_rx1 - k_rx0)) -v rb=$((rb1 - rb0)) -v glost="$glost" \
		-v attempt="$attempt" -v note="$note" 'BEGIN {
		el = (t1 - t0) / 1e9
		busy = el - (ir1 - ir0) / hz; if (busy < 0) busy = 0
		gbusy = el - (ig1 - ig0) / hz; if (gbusy < 0) gbusy = 0
		fs = (foreign == "") ? 0 : foreign / 1e9; if (fs > busy) fs = busy
		want = sent * fan
		loss = 100 * (want - recv) / want; if (loss < 0) loss = 0
		relayed = recv / fan # input datagrams, counting each once per output it reached
		nsp = nsn = nsd = ""
		if (recv > 0 && v != "none") {
			nsp = sprintf("%.0f", busy * 1e9 / relayed)
			nsn = sprintf("%.0f", (busy - fs) * 1e9 / relayed)
			nsd = sprintf("%.0f", busy * 1e9 / recv)
		}
		printf "%s,%d,%d,%s,%d,%d,%.3f,%.0f,%d,%d,%.0f,%.4f,%.1f,%s,%s,%s,%s,%.1f,%.1f,%d,%d,%d,%d,%d,%s\n",
			v, fan, size, rate, rep, sent, el, sent / el, recv, dups, recv / el, loss,
			100 * busy / el, (foreign == "" ? "" : sprintf("%.1f", 100 * fs / el)), nsp, nsn, nsd,
			100 * proc / 1e9 / el, 100 * gbusy / el, rtx, krx, rb, glost, attempt, note
	}' >"$tmp/row.csv"
	awk -F, '{
		printf "  %-10s 1→%s %4sB %7s #%s: offered %7.0f  delivered %7.0f pps  loss %7.3f%%  relay core %5.1f%% (foreign %s%%)  %s ns/pkt %s\n",
			$1, $2, $3, $4, $5, $8, $11, $12, $13, ($14 == "" ? "?" : $14), ($15 == "" ? "-" : $15), $25 }' "$tmp/row.csv" >&2
}

# ---------------------------------------------------------------- report --

# summarize — one row per point (median and spread over repetitions) in
# summary.csv, and the markdown tables on stdout. Column numbers refer to
# points.csv.
summarize() {
	awk -F, -v variants="$VARIANTS" -v rates="$RATES" -v sizes="$SIZES" -v fanouts="$FANOUTS" '
	function sortn(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }
	# stat(k, c): median m, minimum lo, maximum hi of column c over the repetitions of point k.
	function stat(k, c,   a, n, i, parts) {
		n = cnt[k]; for (i = 1; i <= n; i++) { split(row[k, i], parts, ","); a[i] = parts[c] + 0 }
		sortn(a, n); m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2; lo = a[1]; hi = a[n]
		return n
	}
	function cell(fmt, scale) { return (lo == hi) ? sprintf(fmt, m / scale) : sprintf(fmt " (" fmt "–" fmt ")", m / scale, lo / scale, hi / scale) }
	NR > 1 { k = $1 SUBSEP $2 SUBSEP $3 SUBSEP $4; row[k, ++cnt[k]] = $0; if ($15 == "") nocpu[k] = 1; if ($14 == "") noforeign[k] = 1 }
	END {
		nv = split(variants, V, ","); nr = split(rates, R, ","); ns = split(sizes, S, ","); nf = split(fanouts, F, ",")
		print "variant,fanout,size,rate,reps,offered_pps,delivered_pps,delivered_min,delivered_max,loss_pct,loss_min,loss_max,relay_busy_pct,foreign_pct,ns_per_pkt,ns_min,ns_max,ns_per_pkt_net" > summary
		for (f = 1; f <= nf; f++) for (s = 1; s <= ns; s++) {
			printf "\n### 1→%s fan-out, %s-byte payloads\n\n", F[f], S[s]
			print "| variant | asked pps | offered pps | delivered pps | loss % | relay core busy % | foreign % | µs/pkt | µs/pkt net |"
			print "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
			for (v = 1; v <= nv; v++) {
				best = ""; bestoff = 0; lossy = 0; at50 = "–"; any = 0
				for (r = 1; r <= nr; r++) {
					k = V[v] SUBSEP F[f] SUBSEP S[s] SUBSEP R[r]
					if (!(k in cnt)) continue
					any = 1
					n = stat(k, 8); off = m
					stat(k, 11); dmed = m; dlo = lo; dhi = hi; dcell = cell("%.0f", 1)
					stat(k, 12); lmed = m; llo = lo; lhi = hi; lcell = cell("%.2f", 1)
					stat(k, 13); bmed = m
					fmed = ""; if (!(k in noforeign)) { stat(k, 14); fmed = m }
					ccell = "–"; ncell = "–"; nmed = ""; nlo = ""; nhi = ""; netmed = ""
					if (!(k in nocpu)) {
						stat(k, 15); nmed = m; nlo = lo; nhi = hi; ccell = cell("%.1f", 1000)
						stat(k, 16); netmed = m; ncell = cell("%.1f", 1000)
					}
					printf "| %s | %s | %.0f | %s | %s | %.0f | %s | %s | %s |\n", V[v], R[r], off, dcell, lcell, bmed, (fmed == "" ? "?" : sprintf("%.0f", fmed)), ccell, ncell
					printf "%s,%s,%s,%s,%d,%.0f,%.0f,%.0f,%.0f,%.4f,%.4f,%.4f,%.1f,%s,%s,%s,%s,%s\n", V[v], F[f], S[s], R[r], n, off, dmed, dlo, dhi, lmed, llo, lhi, bmed, fmed, nmed, nlo, nhi, netmed > summary
					if (lmed < 0.1 && off > bestoff) { bestoff = off; best = sprintf("%.0f", off) }
					if (lmed >= 0.1) lossy = 1
					if (R[r] == "50000" && nmed != "") at50 = sprintf("%.1f", nmed / 1000)
				}
				if (!any) continue
				# Without a single lossy point the true limit is above what was offered.
				zl[V[v], F[f], S[s]] = (best == "") ? "< lowest rate" : (lossy ? best : "≥ " best " (no loss seen)")
				cpu50[V[v], F[f], S[s]] = at50
			}
		}
		print "\n### Highest offered rate with < 0.1 % loss (median), and relay-core µs/pkt at 50k pps\n"
		print "| variant | fan-out | payload | zero-loss pps | µs/pkt @ 50k |"
		print "| --- | --- | ---: | ---: | ---: |"
		for (f = 1; f <= nf; f++) for (s = 1; s <= ns; s++) for (v = 1; v <= nv; v++)
			if ((V[v], F[f], S[s]) in zl) printf "| %s | 1→%s | %s B | %s | %s |\n", V[v], F[f], S[s], zl[V[v], F[f], S[s]], cpu50[V[v], F[f], S[s]]
	}' summary="$OUT/summary.csv" "$OUT/points.csv"
}

# report — the markdown results: a header from machine.txt, skipped variants,
# the tables.
report() {
	local cpu commit date
	cpu=$(machine cpu) commit=$(machine commit) date=$(machine date)
	echo "## Results ${date:0:10} — ${cpu:-unknown CPU}"
	echo
	echo "Command: \`$(machine command)\` at ${commit:-unknown commit}. $(sed -n 's/^generator/Generator/p' "$OUT/machine.txt" 2>/dev/null); load average before: $(machine "load before"). Cells are median (min–max) over repetitions. µs/pkt = relay-core busy time (wall − idle) per input datagram delivered to every output; foreign % = share of the relay core other processes used; µs/pkt net = the same without it."
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
	if [ -n "$REPORT" ]; then reprint VARIANTS FANOUTS SIZES RATES; return; fi
	HZ=$(getconf CLK_TCK)
	setup
	header=variant,fanout,size,rate,rep,sent,elapsed_s,offered_pps,received,duplicates,delivered_pps,loss_pct
	header+=,relay_busy_pct,foreign_pct,ns_per_pkt,ns_per_pkt_net,ns_per_dgram,relay_proc_pct,gen_busy_pct
	header+=,relay_tx,sink_link_rx,sink_rcvbuf_errors,gen_reported_lost,attempt,note
	echo "$header" >"$OUT/points.csv"
	echo "$header" >"$OUT/noisy.csv"

	IFS=, read -ra variant_list <<<"$VARIANTS"
	IFS=, read -ra fanout_list <<<"$FANOUTS"
	IFS=, read -ra size_list <<<"$SIZES"
	IFS=, read -ra rate_list <<<"$RATES"
	for fan in "${fanout_list[@]}"; do
		for v in "${variant_list[@]}"; do
			if ! start_variant "$v" "$fan"; then
				log "skip $v 1→$fan: $why"
				skipped+=("$v 1→$fan: $why")
				stop_variant "$v"
				continue
			fi
			log "== $v 1→$fan"
			sleep 1 # let joins, routes and workers settle
			for size in "${size_list[@]}"; do
				for rate in "${rate_list[@]}"; do
					for ((rep = 1; rep <= REPS; rep++)); do
						if ! relay_alive; then
							log "  $v died; skipping its remaining points (logs in $OUT/logs)"
							break 3
						fi
						measure "$v" "$fan" "$size" "$rate" "$rep"
						sleep 0.5
					done
				done
			done
			stop_variant "$v"
		done
	done

	report | tee "$OUT/summary.md"
	charts -run
	log "raw data: $OUT/points.csv, $OUT/summary.csv; logs: $OUT/logs"
}

main "$@"
