#!/usr/bin/env bash
# Load test: sipp sends OPTIONS to a freshly built `hlas serve` on loopback
# and this script reports the achieved rate, failed calls and the server's
# CPU use. Bounded in count and time; loopback only.
#
# usage: bench/load/options.sh [rate/s] [calls] [sipp transport: u1|t1]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

rate=${1:-5000}
calls=${2:-100000}
transport=${3:-u1}
port=${HLAS_LOAD_PORT:-25060}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$work"' EXIT

go build -o "$work/hlas" ./cmd/hlas
"$work/hlas" serve --listen "udp:127.0.0.1:$port,tcp:127.0.0.1:$port" --data "$work/data" --log-level warn &
pid=$!
sleep 0.5

ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
cpu0=$(cpu)
t0=$(date +%s.%N)
status=0
sipp -sf test/interop/testdata/options.xml -t "$transport" -r "$rate" -m "$calls" -l 20000 \
	-p $((port + 10)) -timeout 300s -timeout_error -nostdin -trace_stat -stf "$work/stat.csv" \
	127.0.0.1:"$port" >"$work/sipp.out" 2>&1 || status=$?
t1=$(date +%s.%N)
cpu1=$(cpu)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
failed=$(tail -n1 "$work/stat.csv" | awk -F';' '{print $18}')   # FailedCall(C)
ok=$(tail -n1 "$work/stat.csv" | awk -F';' '{print $16}')       # SuccessfulCall(C)
awk -v c="$calls" -v ok="$ok" -v f="$failed" -v a="$t0" -v b="$t1" -v u0="$cpu0" -v u1="$cpu1" -v hz="$ticks" \
	-v r="$rate" -v tr="$transport" -v st="$status" -v rss="$rss" 'BEGIN {
	el = b - a; cpu = (u1 - u0) / hz
	printf "transport=%s target_rate=%d calls=%d successful=%s failed=%s elapsed=%.2fs achieved=%.0f/s server_cpu=%.2fs (%.0f%% of one core) peak_rss=%.0fMiB sipp_exit=%d\n",
		tr, r, c, ok, f, el, ok / el, cpu, 100 * cpu / el, rss / 1024, st }'
