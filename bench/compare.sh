#!/usr/bin/env bash
# bench/compare.sh: hlas against Kamailio, side by side, on the four
# workloads of issue 11, with ../shared/bench (sipp on loopback; CPU per
# operation of each server measured in the same run, A B B A order).
# Prints each workload's RATIO line (b = hlas over a = Kamailio): below 1
# means hlas spends less CPU per operation.
#
# usage: bench/compare.sh [workload ...]
#   workloads: register register-auth call-stateful call-stateless
#              (default: all four, at 10 000/s, 3 000/s, 2 000/s, 2 000/s)
# Environment: DURATION [10] seconds per run; ROUNDS [2] (2 = A B B A);
#   SHARED [../shared] where the shared bench lives; HLAS_BIN [built here];
#   RATE_<WORKLOAD> overrides a rate (RATE_REGISTER=20000, RATE_CALL_STATEFUL=3000 ...);
#   HLAS_ACCOUNTING [false] call detail records in the proxy roles.
# Needs: sipp (sip-tester) and kamailio from Debian. Loopback only; every run
# is bounded by its call count; every server started here is stopped by PID.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SHARED=${SHARED:-../shared}
B=$SHARED/bench
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
if [ -z "${HLAS_BIN:-}" ]; then
	HLAS_BIN=$(mktemp -d)/hlas
	go build -o "$HLAS_BIN" ./cmd/hlas
fi
export HLAS_BIN
command -v sipp >/dev/null && command -v kamailio >/dev/null || {
	echo "needs sipp and kamailio: apt-get install sip-tester kamailio" >&2
	exit 2
}

# workload -> role, sipp workload, default rate
declare -A ROLE=([register]=registrar [register-auth]=registrar-auth [call-stateful]=proxy-stateful [call-stateless]=proxy-stateless)
declare -A SIPP_WL=([register]=register [register-auth]=register-auth [call-stateful]=call-proxy [call-stateless]=call-proxy)
declare -A RATE=([register]=10000 [register-auth]=3000 [call-stateful]=2000 [call-stateless]=2000)

started=()
stop_all() {
	for s in "${started[@]}"; do
		# shellcheck disable=SC2086
		set -- $s
		"$B/$1.sh" stop "$2" "$3" >/dev/null 2>&1 || true
	done
	started=()
}
trap stop_all EXIT

workloads=("$@")
[ ${#workloads[@]} -gt 0 ] || workloads=(register register-auth call-stateful call-stateless)
for wl in "${workloads[@]}"; do
	role=${ROLE[$wl]:-}
	[ -n "$role" ] || { echo "unknown workload $wl" >&2; exit 2; }
	var=RATE_$(tr 'a-z-' 'A-Z_' <<<"$wl")
	rate=${!var:-${RATE[$wl]}}
	"$B/kamailio.sh" start "$role" 25064 >/dev/null
	started+=("kamailio $role 25064")
	"$B/hlas.sh" start "$role" 25164 >/dev/null
	started+=("hlas $role 25164")
	echo "== $wl at $rate/s, ${DURATION}s x $((ROUNDS * 2)) runs"
	LABEL_A=kamailio LABEL_B=hlas "$B/compare.sh" "${SIPP_WL[$wl]}" "$rate" "$DURATION" "$ROUNDS" \
		127.0.0.1:25064 127.0.0.1:25164 | grep -E '^(SUMMARY|RATIO)'
	stop_all
	sleep 1
done
