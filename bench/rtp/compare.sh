#!/usr/bin/env bash
# bench/rtp/compare.sh: hlas's built-in media relay (bench/rtp/relayd,
# media/relay on media/plane) against rtpengine in userspace, side by side
# on this machine, with the same load (bench/rtp/load: N G.711 calls set
# up over NG, 50 packets/s of 172-byte RTP each way per call). At each
# call count, in alternating order over ROUNDS rounds:
#   direct       no relay: the parties send to each other (the driver's
#                own cost, subtracted from the others' machine CPU);
#   hlas-kernel  relayd with the plane's kernel path (kernel: on);
#   hlas         relayd in userspace only (kernel: off);
#   rtpengine    rtpengine in userspace (--table=-1).
# Prints every run's RESULT line, then per call count the means: the
# relay process's CPU per forwarded packet, the whole machine's, and the
# machine's less the direct run's ("net": what the relay adds, kernel
# work included, which is the only figure for the kernel path), with the
# streams of 50 packets/s one core carries at that cost, and the ratios
# against rtpengine.
#
# usage: bench/rtp/compare.sh [calls ...]        (default: 250 500 1000 2500)
# Environment: DURATION [10s] measured time per run; WARMUP [3s];
#   ROUNDS [2] (2 = A B B A); RTPENGINE [rtpengine on PATH];
#   HLAS_PORTS [18000-31999] and RTPENGINE_PORTS [4000-17999] (both below
#   Linux's ephemeral range, where the driver's sockets live);
#   PROFILE=DIR writes a CPU profile of every relayd run there;
#   SHARED [2]: the driver's parties share 2*SHARED sockets and send with
#   sendmmsg (0: a socket per party, the driver of earlier figures, which
#   cannot offer thousands of calls on two cores);
#   RELAYS [direct hlas-kernel hlas rtpengine]: the variants to run.
# Loopback only; each relay started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
ROUNDS=${ROUNDS:-2}
HLAS_PORTS=${HLAS_PORTS:-18000-31999}
RTPENGINE_PORTS=${RTPENGINE_PORTS:-4000-17999}
RTPENGINE=${RTPENGINE:-$(command -v rtpengine || echo /usr/bin/rtpengine)}
[ -x "$RTPENGINE" ] || { echo "needs rtpengine: apt-get install rtpengine-daemon" >&2; exit 2; }
SHARED=${SHARED:-2}
read -r -a RELAYS <<<"${RELAYS:-direct hlas-kernel hlas rtpengine}"
CALLS=("$@")
[ ${#CALLS[@]} -gt 0 ] || CALLS=(250 500 1000 2500)
ulimit -n 20000 2>/dev/null || true

TMP=$(mktemp -d)
relay_pid=
cleanup() {
	if [ -n "$relay_pid" ]; then kill "$relay_pid" 2>/dev/null || true; fi
	rm -rf "$TMP"
}
trap cleanup EXIT
go build -o "$TMP/relayd" ./bench/rtp/relayd
go build -o "$TMP/load" ./bench/rtp/load
NG_HLAS=127.0.0.1:22240
NG_RTPE=127.0.0.1:22230

# wait_bound PORT: until a UDP socket is bound on 127.0.0.1:PORT (5 s).
wait_bound() {
	for _ in $(seq 100); do
		ss -Huln "sport = :$1" | grep -q . && return 0
		sleep 0.05
	done
	echo "nothing listens on $1" >&2
	return 1
}

# run RELAY CALLS: one relay process (none for direct), one load run;
# appends RESULT.
run() {
	local relay=$1 calls=$2 ng
	case $relay in
	direct)
		"$TMP/load" -direct -shared "$SHARED" -calls "$calls" -duration "$DURATION" -warmup "$WARMUP" \
			-label direct | tee -a "$TMP/results"
		return
		;;
	hlas | hlas-kernel)
		ng=$NG_HLAS
		local prof=() kernel=off
		[ "$relay" = hlas-kernel ] && kernel=on
		[ -n "${PROFILE:-}" ] && prof=(-cpuprofile "$PROFILE/relayd-$relay-$calls-$RANDOM.pprof")
		"$TMP/relayd" -ng "$ng" -ports "$HLAS_PORTS" -kernel "$kernel" "${prof[@]}" 2>"$TMP/relay.log" &
		;;
	rtpengine)
		ng=$NG_RTPE
		"$RTPENGINE" --config-file=none --table=-1 --interface=127.0.0.1 --listen-ng="$ng" \
			--port-min="${RTPENGINE_PORTS%-*}" --port-max="${RTPENGINE_PORTS#*-}" \
			--foreground --log-stderr --log-level=4 2>"$TMP/relay.log" &
		;;
	esac
	relay_pid=$!
	wait_bound "${ng##*:}"
	"$TMP/load" -ng "$ng" -pid "$relay_pid" -shared "$SHARED" -calls "$calls" -duration "$DURATION" -warmup "$WARMUP" \
		-label "$relay" | tee -a "$TMP/results"
	kill "$relay_pid"
	wait "$relay_pid" 2>/dev/null || true
	relay_pid=
}

for calls in "${CALLS[@]}"; do
	for ((r = 0; r < ROUNDS; r++)); do
		order=("${RELAYS[@]}")
		if ((r % 2 == 1)); then
			order=()
			for ((i = ${#RELAYS[@]} - 1; i >= 0; i--)); do order+=("${RELAYS[i]}"); done
		fi
		for relay in "${order[@]}"; do run "$relay" "$calls"; done
	done
done

echo
echo "calls streams relay        lost   loss%  proc_us/pkt  proc_cpu%  machine_us/pkt  net_us/pkt  streams/core  rss/stream(kB)  late>=20ms%"
awk '
/^RESULT/ {
	delete kv
	for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
	k = kv["calls"] SUBSEP kv["relay"]
	n[k]++; lost[k] += kv["lost"]; sent[k] += kv["sent"]; us[k] += kv["relay_us_per_pkt"]
	cpu[k] += kv["relay_cpu_pct"]; rss[k] += kv["rss_per_stream_kb"]; mus[k] += kv["machine_us_per_pkt"]
	late[k] += kv["delay_ge20ms"]
	if (!(kv["calls"] in seen)) { seen[kv["calls"]] = 1; order[++m] = kv["calls"] }
}
END {
	split("direct hlas-kernel hlas rtpengine", names, " ")
	for (j = 1; j <= m; j++) {
		c = order[j]; d = c SUBSEP "direct"
		base = n[d] ? mus[d]/n[d] : 0
		for (ri = 1; ri <= 4; ri++) {
			r = names[ri]; k = c SUBSEP r
			if (!n[k]) continue
			net[k] = mus[k]/n[k] - base
			per = (r != "direct" && n[d] && net[k] > 0) ? sprintf("%12.0f", 1e6/(net[k]*50)) : sprintf("%12s", "-")
			printf "%5d %7d %-11s %6d %7.4f %12.3f %10.1f %15.3f %11.3f %s %15.2f %12.3f\n", c, 2*c, r, lost[k], 100*lost[k]/sent[k],
				us[k]/n[k], cpu[k]/n[k], mus[k]/n[k], (n[d] ? net[k] : 0), per, rss[k]/n[k], 100*late[k]/sent[k]
		}
		a = c SUBSEP "rtpengine"
		if (!n[a]) continue
		b = c SUBSEP "hlas"
		if (n[b])
			printf "RATIO calls=%d hlas/rtpengine: cpu_per_pkt(process)=%.2f net_per_pkt=%s rss_per_stream=%.2f\n", c,
				(us[b]/n[b])/(us[a]/n[a]), (n[d] && net[a] > 0) ? sprintf("%.2f", net[b]/net[a]) : "-", (rss[b]/n[b])/(rss[a]/n[a])
		b = c SUBSEP "hlas-kernel"
		if (n[b] && n[d] && net[a] > 0)
			printf "RATIO calls=%d hlas-kernel/rtpengine: net_per_pkt=%.2f\n", c, net[b]/net[a]
	}
}' "$TMP/results"
