#!/usr/bin/env bash
# Load test of SIP over WebSocket: bench/ws/load opens N WebSocket
# connections to a freshly built `hlas serve --listen ws:127.0.0.1:PORT`
# (embedded SQLite store), registers user ws<i> on each, with digest
# authentication (auth: every user's password is known to the loader) or
# to an open domain (noauth), then refreshes them round robin at a fixed
# rate. Prints the loader's RESULT line: the server's RSS and goroutines
# per connection, CPU per refresh, refresh latency. Bounded in count and
# time; loopback only.
#
# usage: bench/ws/register.sh [connections] [refreshes/s] [seconds] [auth|noauth]
# HLAS_BIN=path uses that hlas binary instead of building one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

n=${1:-5000}
rate=${2:-1000}
secs=${3:-30}
mode=${4:-auth}
port=${HLAS_WS_LOAD_PORT:-25080}
metrics_port=$((port + 1))
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

if [ -n "${HLAS_BIN:-}" ]; then
	cp "$HLAS_BIN" "$work/hlas"
else
	go build -o "$work/hlas" ./cmd/hlas
fi
go build -o "$work/load" ./bench/ws/load

password=
cat >"$work/hlas.yaml" <<EOF
max_conns: $((n + 100))
max_conns_per_source: $((n + 100))
metrics_listen: 127.0.0.1:$metrics_port
debug:
  pprof: true
EOF
if [ "$mode" = auth ]; then
	password=pw-ws-load
	awk -v n="$n" -v p="$password" 'BEGIN { print "user,password"; for (i = 1; i <= n; i++) print "ws" i "@example.test," p }' >"$work/users.csv"
	"$work/hlas" user import "$work/users.csv" --data "$work/data" >/dev/null
else
	printf 'auth:\n  open_domains: [example.test]\n' >>"$work/hlas.yaml"
fi

"$work/hlas" serve --config "$work/hlas.yaml" --listen "ws:127.0.0.1:$port" --domain example.test \
	--data "$work/data" --log-level warn &
pid=$!
for _ in $(seq 50); do
	curl -sf "http://127.0.0.1:$metrics_port/metrics" >/dev/null 2>&1 && break
	sleep 0.1
done

"$work/load" -addr "127.0.0.1:$port" -pid "$pid" -metrics "http://127.0.0.1:$metrics_port" \
	-n "$n" -rate "$rate" -duration "${secs}s" -password "$password"
