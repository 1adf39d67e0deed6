#!/usr/bin/env bash
# compare.sh — presence NOTIFY load, hlas against Kamailio's presence module (issue 14 item 7).
#
# For each server in ORDER (default "kamailio hlas hlas kamailio", so a drift of the shared
# machine hits both alike), on loopback, each run with a freshly started server:
#   1. SUBS = PRESENTITIES x WATCHERS_PER presence subscriptions (watcher w%05d -> presentity
#      p(i mod PRESENTITIES)), made by WATCHER_PROCS sipp processes (scenarios/watcher.xml, one
#      call per subscription, held; every NOTIFY answered 200) at SUB_RATE/s in all;
#   2. a PUBLISH storm: one sipp call per presentity (scenarios/publisher.xml.in): an initial
#      PUBLISH, then a modify (SIP-If-Match) every second alternating closed/open, i.e.
#      PRESENTITIES PUBLISH/s, each a change that every watcher of the presentity must hear of;
#   3. a steady window of STORM_S seconds inside the storm (after RAMP_S): server CPU
#      (/proc/PID/stat utime+stime, Kamailio = main process + all its children), sipp CPU,
#      NOTIFYs received per second by the watchers (sipp -trace_counts rows, 1 s apart);
#   4. memory: sum of PSS (/proc/PID/smaps_rollup; Kamailio's shared memory is counted once)
#      before the subscriptions and after them -> bytes per subscription; also the
#      allocator's view of live memory (Kamailio shm real_used via kamcmd, Go heap after a
#      forced collection via /debug/pprof/heap?gc=1 and /metrics).
# Prints one RUN line per run, a SUMMARY per server (mean of its runs) and RATIO lines
# (hlas / Kamailio): cpu_us_per_notify and bytes_per_sub below 1 mean hlas spends less.
#
# Rate control: hlas limits NOTIFYs per subscription to one per
# events.subscriptions.min_notify_interval (HLAS_MIN_NOTIFY_INTERVAL, default 500ms here; the
# server's default is 5s) and one in flight; Kamailio (subs_db_mode 0) has no per-subscription
# limit: every PUBLISH notifies all watchers at once from the worker that handled it.
#
# Environment (defaults in brackets):
#   PRESENTITIES [1000] WATCHERS_PER [10] SUB_RATE [2000] WATCHER_PROCS [2]
#   STORM_S [20] (measured window) RAMP_S [4] (storm seconds before the window)
#   SETTLE_S [8] SETTLE2_S [35]  seconds after the last subscription when memory is read
#                (transactions gone: Kamailio's after ~5 s, hlas's after 32 s)
#   ORDER ["kamailio hlas hlas kamailio"]  HLAS_BIN [/tmp/hlas; built if missing]
#   KAM_CHILDREN [2] UDP workers, as ../../../shared/bench/kamailio.sh; KAM_SHM_MB [2048]
#   KAM_RCVBUF [262144] Kamailio's largest socket receive buffer (-b), as ../../../shared/bench;
#                4194304 gives it hlas's default (transport ReadBuffer 4 MiB), so that a burst
#                drops no 200s at its socket and it retransmits no NOTIFYs
#   KAM_STATE [memory]  memory: publications and subscriptions in shared memory only (db_text
#                for the watchers table); sqlite: publications in a SQLite presentity table,
#                written before each PUBLISH's 200 as hlas does (needs kamailio-sqlite-modules
#                and sqlite3), subscriptions in memory; postgres: the same in PostgreSQL
#                (127.0.0.1, database hlas_bench_kam, made per run), and hlas's store there too
#                (database hlas_bench_hlas), so both commit each PUBLISH to one server
#   HLAS_EXTRA [""]  more top-level YAML for hlas's configuration (one line, e.g. "workers: 2")
#   A/B runs: ORDER may name "hlasB", a second hlas variant reported on its own SUMMARY line:
#   HLAS_BIN_B [HLAS_BIN] HLAS_EXTRA_B [HLAS_EXTRA] HLAS_ENV_B [""] (environment, e.g.
#   "GOGC=200"); e.g. ORDER="hlas hlasB hlasB hlas" HLAS_BIN_B=/tmp/hlas.new
#   PROFILE [""]  when set, hlas's CPU profile of the steady window and its allocation profiles
#                at the window's start and end are written to OUT_DIR/<run>/server/cpu.pprof,
#                allocs0.pprof and allocs.pprof (and the subscriptions' setup to cpu-setup.pprof) (the window's allocations: go tool pprof
#                -sample_index=alloc_objects -diff_base allocs0.pprof allocs.pprof)
#   HLAS_MIN_NOTIFY_INTERVAL [500ms]  KAM_PORT [25264] HLAS_PORT [25364] SIPP_PORT0 [26001]
#   OUT_DIR [/tmp/hlas-bench-presence]  work files and logs (emptied at start)
# Needs: sipp 3.6, kamailio 5.6 + kamailio-presence-modules (presence, presence_xml, db_text,
# ctl), kamcmd, curl, awk, ss. Bounded: every wait has a deadline; whole script < 10 min with
# the defaults. Stops only the processes it started, by PID.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PRESENTITIES=${PRESENTITIES:-1000}
WATCHERS_PER=${WATCHERS_PER:-10}
SUB_RATE=${SUB_RATE:-2000}
WATCHER_PROCS=${WATCHER_PROCS:-2}
STORM_S=${STORM_S:-20}
RAMP_S=${RAMP_S:-4}
SETTLE_S=${SETTLE_S:-8}
SETTLE2_S=${SETTLE2_S:-35}
ORDER=${ORDER:-kamailio hlas hlas kamailio}
HLAS_BIN=${HLAS_BIN:-/tmp/hlas}
HLAS_EXTRA=${HLAS_EXTRA:-}
HLAS_BIN_B=${HLAS_BIN_B:-$HLAS_BIN}
HLAS_EXTRA_B=${HLAS_EXTRA_B:-$HLAS_EXTRA}
HLAS_ENV_B=${HLAS_ENV_B:-}
PROFILE=${PROFILE:-}
KAM_CHILDREN=${KAM_CHILDREN:-2}
KAM_RCVBUF=${KAM_RCVBUF:-262144}
KAM_SHM_MB=${KAM_SHM_MB:-2048}
KAM_STATE=${KAM_STATE:-memory}
HLAS_MIN_NOTIFY_INTERVAL=${HLAS_MIN_NOTIFY_INTERVAL:-500ms}
KAM_PORT=${KAM_PORT:-25264}
HLAS_PORT=${HLAS_PORT:-25364}
SIPP_PORT0=${SIPP_PORT0:-26001}
OUT_DIR=${OUT_DIR:-/tmp/hlas-bench-presence}
KAMAILIO=${KAMAILIO:-/usr/sbin/kamailio}
SUBS=$((PRESENTITIES * WATCHERS_PER))
HZ=$(getconf CLK_TCK)
BUFF=4194304

die() { echo "compare.sh: $*" >&2; exit 1; }
for c in sipp kamcmd curl awk ss "$KAMAILIO"; do command -v "$c" >/dev/null || die "$c not found"; done
[ -f /usr/lib/x86_64-linux-gnu/kamailio/modules/presence.so ] ||
	die "Kamailio presence module missing: apt-get install kamailio-presence-modules"
[ $((SUBS % WATCHER_PROCS)) -eq 0 ] || die "SUBS=$SUBS not divisible by WATCHER_PROCS"
if [ ! -x "$HLAS_BIN" ]; then
	(cd "$REPO" && go build -o "$HLAS_BIN" ./cmd/hlas) || die "go build failed"
fi
case $OUT_DIR in /tmp/*) ;; *) die "OUT_DIR must be under /tmp" ;; esac
rm -rf "$OUT_DIR"; mkdir -p "$OUT_DIR"

# ---- processes this script started (stopped by PID on exit) ----
SERVER_PID="" WATCHER_PIDS="" PUB_PID=""
stop_pids() {
	local p
	for p in "$@"; do kill -0 "$p" 2>/dev/null && kill "$p" 2>/dev/null; done
	for p in "$@"; do
		for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null
	done
	return 0
}
cleanup() {
	# shellcheck disable=SC2086
	stop_pids $PUB_PID $WATCHER_PIDS
	stop_server
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { ss -Hlun "sport = :$1" 2>/dev/null | grep -q .; }

# ---- server start/stop ----
KIDS=""
start_kamailio() {
	local d=$1
	mkdir -p "$d/db" "$d/run"
	local dburl="text://$d/db" defs=()
	if [ "$KAM_STATE" = postgres ]; then
		# A database of its own per run on the machine's PostgreSQL.
		psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS hlas_bench_kam" -c "CREATE DATABASE hlas_bench_kam" >/dev/null ||
			die "psql: create database"
		for f in standard presence; do
			psql -q -h 127.0.0.1 -U postgres -d hlas_bench_kam -f "/usr/share/kamailio/postgres/$f-create.sql" >/dev/null ||
				die "psql: $f schema"
		done
		dburl="postgres://postgres@127.0.0.1/hlas_bench_kam"
		defs=(-A KAM_POSTGRES)
	elif [ "$KAM_STATE" = sqlite ]; then
		sqlite3 "$d/db/kamailio.db" </usr/share/kamailio/db_sqlite/standard-create.sql ||
			die "sqlite3: standard schema"
		sqlite3 "$d/db/kamailio.db" </usr/share/kamailio/db_sqlite/presence-create.sql ||
			die "sqlite3: presence schema"
		sqlite3 "$d/db/kamailio.db" "PRAGMA journal_mode=WAL;" >/dev/null
		dburl="sqlite:///$d/db/kamailio.db" # db_sqlite drops one slash
		defs=(-A KAM_SQLITE)
	else
		for t in version watchers presentity active_watchers xcap; do
			cp "/usr/share/kamailio/dbtext/kamailio/$t" "$d/db/"
		done
	fi
	"$KAMAILIO" -f "$HERE/kamailio-presence.cfg" -DD -E -l "udp:127.0.0.1:$KAM_PORT" \
		-n "$KAM_CHILDREN" -m "$KAM_SHM_MB" -M 16 -x tlsf -b "$KAM_RCVBUF" -Y "$d/run" -w "$d/run" "${defs[@]}" \
		-A "DBTEXT_URL=\"$dburl\"" -A "SERVER_ADDR=\"sip:127.0.0.1:$KAM_PORT\"" \
		-A "CTL_SOCK=\"unix:$d/run/ctl.sock\"" >"$d/server.log" 2>&1 </dev/null &
	SERVER_PID=$!
	for _ in $(seq 1 100); do
		kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$d/server.log" >&2; die "kamailio exited"; }
		ss -Hlunp "sport = :$KAM_PORT" 2>/dev/null | grep -q "pid=$SERVER_PID," && [ -S "$d/run/ctl.sock" ] && break
		sleep 0.1
	done
	sleep 1
	KIDS=$(pgrep -P "$SERVER_PID" | tr '\n' ' ')
}
start_hlas() {
	local d=$1 bin=$HLAS_BIN extra=$HLAS_EXTRA env=""
	[ "$2" = hlasB ] && bin=$HLAS_BIN_B extra=$HLAS_EXTRA_B env=$HLAS_ENV_B
	mkdir -p "$d"
	local storeline=""
	if [ "$KAM_STATE" = postgres ]; then
		psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS hlas_bench_hlas" -c "CREATE DATABASE hlas_bench_hlas" >/dev/null ||
			die "psql: create database"
		storeline="store: postgres://postgres@127.0.0.1:5432/hlas_bench_hlas?sslmode=disable"
	fi
	cat >"$d/hlas.yaml" <<-EOF
	listen: ["udp:127.0.0.1:$HLAS_PORT"]
	data: $d/data
	$storeline
	log_level: warn
	metrics_listen: 127.0.0.1:$((HLAS_PORT + 1))
	debug: { pprof: true }
	stun: { enabled: false }
	auth: { open_domains: ["*"] }
	events:
	  subscriptions:
	    min_notify_interval: $HLAS_MIN_NOTIFY_INTERVAL
	    max_expires: 1h
	$extra
	EOF
	# shellcheck disable=SC2086
	env $env "$bin" serve --config "$d/hlas.yaml" >"$d/server.log" 2>&1 </dev/null &
	SERVER_PID=$!
	for _ in $(seq 1 100); do
		kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$d/server.log" >&2; die "hlas exited"; }
		ss -Hlunp "sport = :$HLAS_PORT" 2>/dev/null | grep -q "pid=$SERVER_PID," && break
		sleep 0.1
	done
	sleep 1
	KIDS=""
}
stop_server() {
	[ -n "$SERVER_PID" ] || return 0
	# shellcheck disable=SC2086
	stop_pids "$SERVER_PID" $KIDS
	SERVER_PID="" KIDS=""
}

# ---- measurements ----
# cpu_ticks PID... : utime+stime summed (fields 14, 15 after the "(comm)" field)
cpu_ticks() {
	local p s=0 t
	for p in "$@"; do
		t=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }')
		s=$((s + ${t:-0}))
	done
	echo "$s"
}
# pss_kb PID... : summed proportional set size
pss_kb() {
	local p s=0 t
	for p in "$@"; do
		t=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
		s=$((s + ${t:-0}))
	done
	echo "$s"
}
# alloc_bytes NAME DIR : the allocator's view of live memory (Kamailio shm real_used, hlas Go
# heap after a forced collection); read after pss_kb, as the collection may change the PSS
alloc_bytes() {
	if [ "$1" = kamailio ]; then
		kamcmd -s "unix:$2/run/ctl.sock" core.shmmem 2>/dev/null | awk '/real_used:/ { print $2 }'
	else
		# a heap profile with gc=1 runs a collection first: what is left is live
		curl -s --max-time 5 -o /dev/null "http://127.0.0.1:$((HLAS_PORT + 1))/debug/pprof/heap?gc=1"
		curl -s --max-time 3 "http://127.0.0.1:$((HLAS_PORT + 1))/metrics" |
			awk '/^go_memstats_heap_alloc_bytes / { printf "%d\n", $2 }'
	fi
}
now() { date +%s.%N; }
# udp_drops PORT... : datagrams the kernel dropped at these loopback UDP sockets (receive
# buffer full: the socket's owner did not keep up), since each socket was opened
udp_drops() {
	local want="" p
	for p in "$@"; do want="$want $(printf '%04X' "$p")"; done
	awk -v want="$want" 'NR > 1 { split($2, a, ":"); if (index(" " want " ", " " a[2] " ")) d += $NF }
		END { print d + 0 }' /proc/net/udp
}

# counts FILE REGEX [DEDUP] : last row of a sipp -trace_counts file, sum of the columns whose name
# matches REGEX; prints "unix_time sum"
counts() {
	awk -F';' -v re="$2" -v dedup="${3:-0}" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i ~ re) c[i] = 1
		# distinct NOTIFYs: all received minus those answered by the last 200 step (duplicates)
		if (dedup) { for (i = 1; i <= NF; i++) if ($i ~ /_200_Sent$/) l = i; c[l] = -1 }; next }
		{ last = $0 } END { n = split(last, f, ";"); s = 0; for (i in c) s += c[i] * f[i]
			split(f[1], t, "\t"); printf "%s %d\n", t[3], s }' "$1" 2>/dev/null
}
# sum of "counts" over the watchers' files
wsum() {
	local f s=0 v
	for f in "$RUN_DIR"/watcher_*_counts.csv; do
		v=$(counts "$f" "$1" "${2:-0}" | cut -d' ' -f2); s=$((s + ${v:-0}))
	done
	echo "$s"
}
# rows_rate FILE REGEX T0 T1 [DEDUP] : rate of the summed columns between the first row at/after T0 and
# the last row at/before T1 (unix seconds): prints "count seconds"
rows_rate() {
	awk -F';' -v re="$2" -v t0="$3" -v t1="$4" -v dedup="${5:-0}" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i ~ re) c[i] = 1
			if (dedup) { for (i = 1; i <= NF; i++) if ($i ~ /_200_Sent$/) l = i; c[l] = -1 }; next }
		{ split($1, t, "\t"); ts = t[3] + 0; s = 0; for (i in c) s += c[i] * $i
		  if (ts >= t0 && !have0) { a = s; ta = ts; have0 = 1 }
		  if (ts <= t1) { b = s; tb = ts } }
		END { if (have0 && tb > ta) printf "%d %.3f\n", b - a, tb - ta; else print "0 0" }' "$1"
}

# ---- one run ----
RESULTS=$OUT_DIR/results.txt
run_one() {
	local name=$1 idx=$2 port sdir wdir i n from pids all c0 c1 t0 t1 m0 m1 m2 a0 a1
	RUN_DIR=$OUT_DIR/run$idx-$name; sdir=$RUN_DIR/server; mkdir -p "$sdir"
	if [ "$name" = kamailio ]; then port=$KAM_PORT; else port=$HLAS_PORT; fi
	port_busy "$port" && die "port $port/udp busy"
	for i in $(seq 0 "$WATCHER_PROCS"); do port_busy $((SIPP_PORT0 + i)) && die "port $((SIPP_PORT0 + i)) busy"; done
	if [ "$name" = kamailio ]; then start_kamailio "$sdir"; else start_hlas "$sdir" "$name"; fi
	all="$SERVER_PID $KIDS"
	sleep 1
	# shellcheck disable=SC2086
	m0=$(pss_kb $all); a0=$(alloc_bytes "$name" "$sdir")
	# shellcheck disable=SC2086
	local cs0; cs0=$(cpu_ticks $all)

	# 1. subscriptions
	n=$((SUBS / WATCHER_PROCS)); WATCHER_PIDS=""
	local ts0; ts0=$(now)
	for i in $(seq 0 $((WATCHER_PROCS - 1))); do
		from=$((i * n))
		{ echo SEQUENTIAL
		  awk -v f="$from" -v n="$n" -v p="$PRESENTITIES" 'BEGIN { for (k = f; k < f + n; k++)
			printf "w%05d;p%04d\n", k, k % p }'; } >"$RUN_DIR/watchers$i.csv"
		(cd "$RUN_DIR" && exec sipp "127.0.0.1:$port" -sf "$HERE/scenarios/watcher.xml" \
			-inf "$RUN_DIR/watchers$i.csv" -i 127.0.0.1 -p $((SIPP_PORT0 + i)) -t u1 -nd -nostdin \
			-m "$n" -l "$n" -r $((SUB_RATE / WATCHER_PROCS)) -buff_size $BUFF \
			-trace_counts -fd 1 -trace_err >"$RUN_DIR/watcher$i.out" 2>&1) &
		WATCHER_PIDS="$WATCHER_PIDS $!"
	done
	local deadline=$(( $(date +%s) + SUBS / SUB_RATE + 40 )) ok=0 nt=0
	if [ "$name" != kamailio ] && [ -n "$PROFILE" ]; then
		curl -s --max-time $((SUBS / SUB_RATE + 10)) -o "$sdir/cpu-setup.pprof" \
			"http://127.0.0.1:$((HLAS_PORT + 1))/debug/pprof/profile?seconds=$((SUBS / SUB_RATE))" &
	fi
	while [ "$(date +%s)" -lt "$deadline" ]; do
		sleep 1
		ok=$(wsum '^[0-9]+_200_Recv$'); nt=$(wsum '^[0-9]+_NOTIFY_Recv$')
		[ "$ok" -ge "$SUBS" ] && [ "$nt" -ge "$SUBS" ] && break
	done
	local sub_s; sub_s=$(awk -v a="$ts0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
	# memory read twice: SETTLE_S after the last subscription, when Kamailio's tm has freed
	# the SUBSCRIBE and first NOTIFY transactions (it keeps each ~5 s after its final reply),
	# and SETTLE2_S after, when hlas has too (RFC 3261 Timer J: 64*T1 = 32 s for a non-INVITE
	# server transaction over UDP): what is left then is the subscriptions' state
	sleep "$SETTLE_S"
	# shellcheck disable=SC2086
	local m1e; m1e=$(pss_kb $all); local a1e; a1e=$(alloc_bytes "$name" "$sdir")
	sleep $((SETTLE2_S - SETTLE_S))
	# shellcheck disable=SC2086
	m1=$(pss_kb $all); a1=$(alloc_bytes "$name" "$sdir")
	ok=$(wsum '^[0-9]+_200_Recv$'); local nt_subs; nt_subs=$(wsum '^[0-9]+_NOTIFY_Recv$')
	# shellcheck disable=SC2086
	local csub; csub=$(cpu_ticks $all)

	# 2. PUBLISH storm: RAMP_S + STORM_S + 4 s of modifies (2 per round)
	local rounds=$(( (RAMP_S + STORM_S + 4 + 1) / 2 ))
	sed "s/@ROUNDS@/$rounds/g" "$HERE/scenarios/publisher.xml.in" >"$RUN_DIR/publisher.xml"
	{ echo SEQUENTIAL; awk -v p="$PRESENTITIES" 'BEGIN { for (k = 0; k < p; k++) printf "p%04d\n", k }'; } \
		>"$RUN_DIR/presentities.csv"
	(cd "$RUN_DIR" && exec sipp "127.0.0.1:$port" -sf "$RUN_DIR/publisher.xml" \
		-inf "$RUN_DIR/presentities.csv" -i 127.0.0.1 -p $((SIPP_PORT0 + WATCHER_PROCS)) -t u1 -nd -nostdin \
		-m "$PRESENTITIES" -l "$PRESENTITIES" -r "$PRESENTITIES" -buff_size $BUFF \
		-trace_counts -fd 1 -trace_err >"$RUN_DIR/publisher.out" 2>&1) &
	PUB_PID=$!
	sleep "$RAMP_S"
	# 3. steady window
	local sipp_pids="$WATCHER_PIDS $PUB_PID"
	t0=$(now)
	# shellcheck disable=SC2086
	c0=$(cpu_ticks $all); local g0; g0=$(cpu_ticks $sipp_pids)
	local busy0; busy0=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
	if [ "$name" != kamailio ] && [ -n "$PROFILE" ]; then
		# the profile covers the steady window; it costs hlas a little CPU (~1%), so runs
		# with PROFILE set are for finding where time goes, not for the ratio
		curl -s --max-time 10 -o "$sdir/allocs0.pprof" "http://127.0.0.1:$((HLAS_PORT + 1))/debug/pprof/allocs"
		curl -s --max-time $((STORM_S + 10)) -o "$sdir/cpu.pprof" \
			"http://127.0.0.1:$((HLAS_PORT + 1))/debug/pprof/profile?seconds=$((STORM_S - 1))" &
		local prof_pid=$!
	fi
	sleep "$STORM_S"
	[ -z "${prof_pid:-}" ] || { wait "$prof_pid"; curl -s --max-time 10 -o "$sdir/allocs.pprof" \
		"http://127.0.0.1:$((HLAS_PORT + 1))/debug/pprof/allocs"; }
	t1=$(now)
	# shellcheck disable=SC2086
	c1=$(cpu_ticks $all); local g1; g1=$(cpu_ticks $sipp_pids)
	local busy1; busy1=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5 + $6 }' /proc/stat)
	local drop_srv drop_sipp
	drop_srv=$(udp_drops "$port")
	drop_sipp=$(udp_drops $(seq "$SIPP_PORT0" $((SIPP_PORT0 + WATCHER_PROCS))))
	# rows land once a second: wait for the row after t1
	sleep 1.2
	local wn=0 ws=0 f r
	for f in "$RUN_DIR"/watcher_*_counts.csv; do
		r=$(rows_rate "$f" '^[0-9]+_NOTIFY_Recv$' "$t0" "$t1" 1)
		wn=$(awk -v a="$wn" -v b="${r% *}" -v s="${r#* }" 'BEGIN { print a + (s > 0 ? b / s : 0) }')
	done
	local pf; pf=$(ls "$RUN_DIR"/publisher_*_counts.csv 2>/dev/null | head -1)
	r=$(rows_rate "$pf" '^[0-9]+_PUBLISH_Sent$' "$t0" "$t1")
	local pub_rate; pub_rate=$(awk -v b="${r% *}" -v s="${r#* }" 'BEGIN { print (s > 0 ? b / s : 0) }')

	# wait for the storm to end (bounded), then for the NOTIFYs to drain
	for _ in $(seq 1 $((rounds * 2 - RAMP_S - STORM_S + 30))); do
		kill -0 "$PUB_PID" 2>/dev/null || break; sleep 1
	done
	stop_pids "$PUB_PID"; wait "$PUB_PID" 2>/dev/null; PUB_PID=""
	sleep 4
	# shellcheck disable=SC2086
	m2=$(pss_kb $all)
	local nt_end; nt_end=$(wsum '^[0-9]+_NOTIFY_Recv$' 1)
	local w_dup; w_dup=$(( $(wsum '^[0-9]+_NOTIFY_Recv$') - nt_end ))
	local w_unexp; w_unexp=$(wsum '_Unexp$'); local w_tmo; w_tmo=$(wsum '_Timeout$')
	local w_retr; w_retr=$(wsum 'NOTIFY_Retrans$')
	local p_sent p_ok p_unexp
	p_sent=$(counts "$pf" '^[0-9]+_PUBLISH_Sent$' | cut -d' ' -f2)
	p_ok=$(counts "$pf" '^[0-9]+_200_Recv$' | cut -d' ' -f2)
	p_unexp=$(counts "$pf" '_Unexp$' | cut -d' ' -f2)
	local p_failed; p_failed=$(awk -F'|' '/Failed call/ { gsub(/ /, "", $3); print $3 }' "$RUN_DIR/publisher.out" | tail -1)
	local diag=""
	if [ "$name" != kamailio ]; then
		diag=$(curl -s --max-time 3 "http://127.0.0.1:$((HLAS_PORT + 1))/metrics" | awk '
			/^hlas_event_notifies_total\{package="presence"\}/ { s = s " srv_notifies=" $2 }
			/^hlas_event_coalesced_total\{package="presence"\}/ { s = s " srv_coalesced=" $2 }
			/^hlas_event_notify_failures_total/ { f += $2 }
			/^hlas_event_subscriptions\{package="presence",state="active"\}/ { s = s " srv_active_subs=" $2 }
			/^hlas_server_messages_dropped_total\{/ { r = $1; sub(/.*reason="/, "", r); sub(/".*/, "", r)
				s = s " srv_dropped_" r "=" $2 }
			END { print s " srv_notify_failures=" f + 0 }')
	else
		diag=$(kamcmd -s "unix:$sdir/run/ctl.sock" tm.stats 2>/dev/null | awk '
			/created:/ { c = $2 } /2xx:/ { x = $2 } /6xx:|5xx:|4xx:/ { e += $2 }
			END { printf " tm_created=%d tm_2xx=%d tm_4xx_6xx=%d", c, x, e }')
	fi
	# shellcheck disable=SC2086
	stop_pids $WATCHER_PIDS; WATCHER_PIDS=""
	stop_server

	awk -v name="$name" -v idx="$idx" -v subs="$SUBS" -v ok="$ok" -v nts="$nt_subs" -v sub_s="$sub_s" \
		-v m0="$m0" -v m1="$m1" -v m2="$m2" -v a0="${a0:-0}" -v a1="${a1:-0}" -v csub="$csub" -v cs0="$cs0" -v m1e="$m1e" -v a1e="${a1e:-0}" \
		-v c0="$c0" -v c1="$c1" -v g0="$g0" -v g1="$g1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" \
		-v wn="$wn" -v pr="$pub_rate" -v ntend="$nt_end" -v psent="$p_sent" -v pok="$p_ok" \
		-v punexp="${p_unexp:-0}" -v pfail="${p_failed:-NA}" -v wunexp="$w_unexp" -v wtmo="$w_tmo" \
		-v wretr="$w_retr" -v wdup="$w_dup" -v dsrv="$drop_srv" -v dsipp="$drop_sipp" -v b0="$busy0" -v b1="$busy1" -v wp="$WATCHERS_PER" -v diag="$diag" 'BEGIN {
		dt = t1 - t0; cpu = (c1 - c0) / hz; sipp = (g1 - g0) / hz
		split(b0, x0, " "); split(b1, x1, " ")
		busy = (x1[1] - x0[1]) / ((x1[1] - x0[1]) + (x1[2] - x0[2])) * 100
		expect = (pok - 0) * wp
		printf "RUN %s run=%d subs_ok=%d/%d initial_notifies=%d sub_setup_s=%s", name, idx, ok, subs, nts, sub_s
		printf " window_s=%.1f publish_per_s=%.0f notify_per_s=%.0f", dt, pr, wn
		printf " server_cpu_pct=%.1f cpu_us_per_notify=%.2f sipp_cpu_pct=%.1f host_busy_pct=%.0f", \
			cpu / dt * 100, (wn > 0 ? cpu / (wn * dt) * 1e6 : 0), sipp / dt * 100, busy
		printf " pss_kb_idle=%d pss_kb_subs=%d pss_kb_after_storm=%d bytes_per_sub=%.0f alloc_bytes_per_sub=%.0f", \
			m0, m1, m2, (ok > 0 ? (m1 - m0) * 1024 / ok : 0), (ok > 0 ? (a1 - a0) / ok : 0)
		printf " bytes_per_sub_at_settle1=%.0f alloc_bytes_per_sub_at_settle1=%.0f", \
			(ok > 0 ? (m1e - m0) * 1024 / ok : 0), (ok > 0 ? (a1e - a0) / ok : 0)
		printf " sub_cpu_us_per_sub=%.0f", (ok > 0 ? (csub - cs0) / hz / ok * 1e6 : 0)
		printf " udp_drops_server=%d udp_drops_sipp=%d", dsrv, dsipp
		printf " publish_sent=%d publish_200=%d publish_unexp=%d publish_failed_calls=%s", psent, pok, punexp, pfail
		printf " notifies_total=%d notifies_expected=%d delivered_pct=%.2f watcher_unexp=%d watcher_timeouts=%d notify_retrans=%d notify_late_dups=%d%s\n", \
			ntend - nts, expect, (expect > 0 ? (ntend - nts) / expect * 100 : 0), wunexp, wtmo, wretr, wdup, diag
	}' | tee -a "$RESULTS"
}

echo "presence NOTIFY load: $PRESENTITIES presentities x $WATCHERS_PER watchers = $SUBS subscriptions," \
	"$PRESENTITIES PUBLISH/s, window ${STORM_S}s; order: $ORDER; logs in $OUT_DIR"
echo "hlas: $HLAS_BIN (min_notify_interval $HLAS_MIN_NOTIFY_INTERVAL); kamailio: $($KAMAILIO -v | head -1) state $KAM_STATE" \
	"(children=$KAM_CHILDREN, rcvbuf $KAM_RCVBUF, subs_db_mode 0, publ_cache 2)"
idx=0
for s in $ORDER; do
	idx=$((idx + 1))
	case $s in kamailio|hlas|hlasB) ;; *) die "ORDER: unknown server $s" ;; esac
	run_one "$s" "$idx"
	sleep 2
done

# ---- summary: mean per server, ratios hlas / kamailio ----
M="publish_per_s notify_per_s delivered_pct server_cpu_pct cpu_us_per_notify sipp_cpu_pct host_busy_pct bytes_per_sub alloc_bytes_per_sub bytes_per_sub_at_settle1 alloc_bytes_per_sub_at_settle1 sub_cpu_us_per_sub"
for s in kamailio hlas hlasB; do
	grep -q "^RUN $s " "$RESULTS" || continue
	out="SUMMARY $s runs=$(grep -c "^RUN $s " "$RESULTS")"
	for m in $M; do
		out="$out $m=$(grep "^RUN $s " "$RESULTS" | grep -o " $m=[^ ]*" | cut -d= -f2 |
			awk '{ s += $1; n++ } END { if (n) printf "%.2f", s / n; else print "NA" }')"
	done
	echo "$out" | tee -a "$RESULTS"
done
kv() { grep "^SUMMARY $1 " "$RESULTS" | grep -o " $2=[^ ]*" | cut -d= -f2; }
if grep -q "^SUMMARY kamailio " "$RESULTS" && grep -q "^SUMMARY hlas " "$RESULTS"; then
	out="RATIO hlas_over_kamailio"
	for m in notify_per_s cpu_us_per_notify bytes_per_sub alloc_bytes_per_sub alloc_bytes_per_sub_at_settle1 sub_cpu_us_per_sub; do
		out="$out $(awk -v a="$(kv kamailio $m)" -v b="$(kv hlas $m)" -v m="$m" 'BEGIN {
			if (a + 0 == 0) print m "=NA"; else printf "%s=%.3f\n", m, b / a }')"
	done
	echo "$out (goal: cpu_us_per_notify <= 1.0; hlas bytes_per_sub <= 2048)" | tee -a "$RESULTS"
fi
if grep -q "^SUMMARY hlas " "$RESULTS" && grep -q "^SUMMARY hlasB " "$RESULTS"; then
	echo "RATIO hlasB_over_hlas cpu_us_per_notify=$(awk -v a="$(kv hlas cpu_us_per_notify)" \
		-v b="$(kv hlasB cpu_us_per_notify)" 'BEGIN { if (a + 0 == 0) print "NA"; else printf "%.3f\n", b / a }')" |
		tee -a "$RESULTS"
fi
