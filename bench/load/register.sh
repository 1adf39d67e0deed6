#!/usr/bin/env bash
# Load test: sipp registers <users> subscribers at a fixed rate against a
# freshly built `hlas serve` on loopback (embedded SQLite store, every
# binding written through before its 200 OK), with digest authentication
# (401, then the answer: two transactions per registration) or to an open
# domain (one transaction). Reports the achieved rate, failed calls and the
# server's CPU use and peak RSS. Bounded in count and time; loopback only.
#
# usage: bench/load/register.sh [rate/s] [users] [auth|noauth] [sipp transport: u1|t1]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

rate=${1:-2000}
users=${2:-20000}
mode=${3:-auth}
transport=${4:-u1}
port=${HLAS_LOAD_PORT:-25070}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

go build -o "$work/hlas" ./cmd/hlas

# Subscribers (for hlas user import) and the matching sipp injection file.
awk -v n="$users" -v mode="$mode" -v users="$work/users.csv" -v inf="$work/sipp.csv" 'BEGIN {
	print "user,password" > users
	print "SEQUENTIAL" > inf
	for (i = 1; i <= n; i++) {
		u = sprintf("load%06d", i); p = sprintf("pw-%06d-x", i)
		print u "@example.test," p > users
		if (mode == "auth") print u ";example.test;[authentication username=" u " password=" p "]" > inf
		else print u ";example.test;" > inf
	}
}'
config=()
if [ "$mode" = auth ]; then
	scenario=test/interop/testdata/reg_auth.xml
	"$work/hlas" user import "$work/users.csv" --data "$work/data"
else
	scenario=test/interop/testdata/reg_noauth.xml
	printf 'auth:\n  open_domains: [example.test]\n' >"$work/hlas.yaml"
	config=(--config "$work/hlas.yaml")
fi

"$work/hlas" serve "${config[@]}" --listen "udp:127.0.0.1:$port,tcp:127.0.0.1:$port" --domain example.test \
	--data "$work/data" --log-level warn &
pid=$!
sleep 1

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
cpu0=$(cpu)
t0=$(date +%s.%N)
status=0
sipp -sf "$scenario" -inf "$work/sipp.csv" -t "$transport" -r "$rate" -m "$users" -l 20000 \
	-p $((port + 10)) -timeout 300s -timeout_error -nostdin -trace_stat -stf "$work/stat.csv" \
	127.0.0.1:"$port" >"$work/sipp.out" 2>&1 || status=$?
t1=$(date +%s.%N)
cpu1=$(cpu)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
failed=$(tail -n1 "$work/stat.csv" | awk -F';' '{print $18}') # FailedCall(C)
ok=$(tail -n1 "$work/stat.csv" | awk -F';' '{print $16}')     # SuccessfulCall(C)
bindings=$("$work/hlas" reg list --data "$work/data" | tail -n +2 | wc -l)
awk -v c="$users" -v ok="$ok" -v f="$failed" -v a="$t0" -v b="$t1" -v u0="$cpu0" -v u1="$cpu1" -v hz="$ticks" \
	-v r="$rate" -v tr="$transport" -v st="$status" -v rss="$rss" -v m="$mode" -v nb="$bindings" 'BEGIN {
	el = b - a; cpu = (u1 - u0) / hz
	printf "mode=%s transport=%s target_rate=%d registrations=%d successful=%s failed=%s elapsed=%.2fs achieved=%.0f/s server_cpu=%.2fs (%.0f%% of one core) peak_rss=%.0fMiB bindings_in_store=%d sipp_exit=%d\n",
		m, tr, r, c, ok, f, el, ok / el, cpu, 100 * cpu / el, rss / 1024, nb, st }'
