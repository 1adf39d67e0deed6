#!/usr/bin/env bash
# bench/rtp/compare.sh: hlas's built-in media relay (bench/rtp/relayd,
# media/relay on media/plane) against rtpengine in userspace, side by side
# on this machine, with the same load (bench/rtp/load: N G.711 calls set
# up over NG, 50 packets/s of 172-byte RTP each way per call), A B B A at
# each call count. Prints every run's RESULT line, then per call count the
# means and the ratio hlas/rtpengine (below 1: hlas spends less CPU per
# forwarded packet).
#
# usage: bench/rtp/compare.sh [calls ...]        (default: 250 500 750 1000)
# Environment: DURATION [10s] measured time per run; WARMUP [3s];
#   ROUNDS [2] (2 = A B B A); RTPENGINE [rtpengine on PATH];
#   HLAS_PORTS [18000-31999] and RTPENGINE_PORTS [4000-17999] (both below
#   Linux's ephemeral range, where the driver's sockets live);
#   PROFILE=DIR writes a CPU profile of every relayd run there.
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
CALLS=("$@")
[ ${#CALLS[@]} -gt 0 ] || CALLS=(250 500 750 1000)
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

# run RELAY CALLS: one relay process, one load run; appends RESULT.
run() {
	local relay=$1 calls=$2 ng
	case $relay in
	hlas)
		ng=$NG_HLAS
		local prof=()
		[ -n "${PROFILE:-}" ] && prof=(-cpuprofile "$PROFILE/relayd-$calls-$RANDOM.pprof")
		"$TMP/relayd" -ng "$ng" -ports "$HLAS_PORTS" "${prof[@]}" 2>"$TMP/relay.log" &
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
	"$TMP/load" -ng "$ng" -pid "$relay_pid" -calls "$calls" -duration "$DURATION" -warmup "$WARMUP" \
		-label "$relay" | tee -a "$TMP/results"
	kill "$relay_pid"
	wait "$relay_pid" 2>/dev/null || true
	relay_pid=
}

for calls in "${CALLS[@]}"; do
	for ((r = 0; r < ROUNDS; r++)); do
		if ((r % 2 == 0)); then order=(rtpengine hlas); else order=(hlas rtpengine); fi
		for relay in "${order[@]}"; do run "$relay" "$calls"; done
	done
done

echo
echo "calls streams relay        lost    loss%   us/pkt  cpu%(1core) rss/stream(kB) driver_cpu%"
awk '
/^RESULT/ {
	delete kv
	for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
	k = kv["calls"] SUBSEP kv["relay"]
	n[k]++; lost[k] += kv["lost"]; sent[k] += kv["sent"]; us[k] += kv["relay_us_per_pkt"]
	cpu[k] += kv["relay_cpu_pct"]; rss[k] += kv["rss_per_stream_kb"]; drv[k] += kv["driver_cpu_pct"]
	if (!(kv["calls"] in seen)) { seen[kv["calls"]] = 1; order[++m] = kv["calls"] }
}
END {
	for (j = 1; j <= m; j++) {
		c = order[j]
		for (ri = 1; ri <= 2; ri++) {
			r = ri == 1 ? "rtpengine" : "hlas"; k = c SUBSEP r
			if (!n[k]) continue
			printf "%5d %7d %-10s %7d %8.4f %8.3f %10.1f %12.2f %10.1f\n", c, 2*c, r, lost[k], 100*lost[k]/sent[k],
				us[k]/n[k], cpu[k]/n[k], rss[k]/n[k], drv[k]/n[k]
		}
		a = c SUBSEP "rtpengine"; b = c SUBSEP "hlas"
		if (n[a] && n[b])
			printf "RATIO calls=%d hlas/rtpengine: cpu_per_pkt=%.2f rss_per_stream=%.2f\n", c,
				(us[b]/n[b])/(us[a]/n[a]), (rss[b]/n[b])/(rss[a]/n[a])
	}
}' "$TMP/results"
