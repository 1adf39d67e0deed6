#!/usr/bin/env bash
# Load test of the proxy: sipp's caller (test/interop/testdata/proxy_uac.xml:
# INVITE, 100, 180, 200, ACK, BYE, 200) calls through a freshly built
# `hlas serve` to sipp's callee (proxy_uas.xml), at a fixed rate, and this
# script reports the achieved rate, failed calls and the proxy's CPU time.
# The same with Kamailio (a minimal stateful relay with record_route) when
# the mode is "kamailio" and the Debian package is installed. Bounded in
# count and time; loopback only.
#
# Mode "dns" is the stateful proxy routing by RFC 3263: dnsmasq serves a
# NAPTR and an SRV record for example.test pointing at the callee, and a
# resolve rule sends every call through the resolver (answers cached by
# TTL after the first call).
#
# usage: bench/load/proxy.sh [stateful|stateless|dns|kamailio] [rate/s] [calls] [caller transport: u1|t1]
# HLAS_LOAD_ACCOUNTING=false turns hlas's call detail records off (default on).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

mode=${1:-stateful}
rate=${2:-500}
calls=${3:-10000}
transport=${4:-u1}
port=${HLAS_LOAD_PORT:-25060}
uas_port=$((port + 20))
uac_port=$((port + 10))
work=$(mktemp -d)
pid="" uas="" dnsmasq=""
cleanup() {
	[ -n "$uas" ] && kill "$uas" 2>/dev/null
	[ -n "$dnsmasq" ] && kill "$dnsmasq" 2>/dev/null
	if [ -f "$work/kamailio.pid" ]; then
		# Kamailio runs in a session of its own (setsid): end its whole group.
		kill -- "-$(cat "$work/kamailio.pid")" 2>/dev/null
		sleep 1
	elif [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
		kill -9 "$pid" 2>/dev/null
	fi
	[ -n "$uas" ] && kill -9 "$uas" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

sipp -sf test/interop/testdata/proxy_uas.xml -i 127.0.0.1 -p "$uas_port" -t u1 -nostdin \
	-timeout 600s >"$work/uas.out" 2>&1 &
uas=$!

case "$mode" in
stateful | stateless | dns)
	go build -o "$work/hlas" ./cmd/hlas
	routing="  mode: $mode
  locations:
    bob@example.test: [ \"sip:bob@127.0.0.1:$uas_port\" ]"
	if [ "$mode" = dns ]; then
		dns_port=$((port + 30))
		"$(command -v dnsmasq || echo /usr/sbin/dnsmasq)" --keep-in-foreground --port="$dns_port" \
			--listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts --no-poll \
			--conf-file=/dev/null --pid-file= --local=/example.test/ --local-ttl="${HLAS_LOAD_DNS_TTL:-300}" \
			--naptr-record=example.test,10,10,s,SIP+D2U,,_sip._udp.example.test \
			--srv-host=_sip._udp.example.test,callee.example.test,"$uas_port",0,10 \
			--host-record=callee.example.test,127.0.0.1,::1 >"$work/dnsmasq.out" 2>&1 &
		dnsmasq=$!
		routing="  rules: [ { domain: example.test, action: resolve } ]
dns: { servers: [ \"127.0.0.1:$dns_port\" ] }"
	fi
	cat >"$work/hlas.yaml" <<YAML
domain: [ example.test ]
auth: { open_domains: [ "*" ] }
accounting: { enabled: ${HLAS_LOAD_ACCOUNTING:-true} }
routing:
$routing
YAML
	"$work/hlas" serve --config "$work/hlas.yaml" --listen "udp:127.0.0.1:$port,tcp:127.0.0.1:$port" \
		--data "$work/data" --log-level warn &
	pid=$!
	;;
kamailio)
	command -v kamailio >/dev/null || { echo "kamailio is not installed (apt-get install kamailio)" >&2; exit 2; }
	cat >"$work/kamailio.cfg" <<KAM
#!KAMAILIO
debug=0
log_stderror=yes
fork=yes
children=2
tcp_children=2
listen=udp:127.0.0.1:$port
listen=tcp:127.0.0.1:$port
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
loadmodule "textops.so"
loadmodule "siputils.so"
request_route {
	if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
	if (has_totag()) {
		if (loose_route()) { t_relay(); exit; }
		if (is_method("ACK") && t_check_trans()) { t_relay(); }
		exit;
	}
	if (is_method("CANCEL")) { if (t_check_trans()) t_relay(); exit; }
	t_check_trans();
	record_route();
	if (\$rU == "bob") { \$ru = "sip:bob@127.0.0.1:$uas_port"; }
	t_relay();
}
KAM
	setsid kamailio -f "$work/kamailio.cfg" -P "$work/kamailio.pid" -m 1024 -M 64 -E -DD >"$work/kamailio.out" 2>&1 &
	sleep 1
	pid=$(cat "$work/kamailio.pid")
	;;
*)
	echo "mode $mode: want stateful, stateless, dns or kamailio" >&2
	exit 2
	;;
esac
sleep 1

ticks=$(getconf CLK_TCK)
# CPU of the server and, for Kamailio, of all its processes.
cpu() {
	local total=0
	for p in $pid $(pgrep -P "$pid" || true); do
		total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$total"
}
cpu0=$(cpu)
t0=$(date +%s.%N)
status=0
sipp -sf test/interop/testdata/proxy_uac.xml -s bob -i 127.0.0.1 -t "$transport" -r "$rate" -m "$calls" -l 20000 \
	-p "$uac_port" -timeout 600s -timeout_error -nostdin -trace_stat -stf "$work/stat.csv" \
	127.0.0.1:"$port" >"$work/sipp.out" 2>&1 || status=$?
t1=$(date +%s.%N)
cpu1=$(cpu)
failed=$(tail -n1 "$work/stat.csv" | awk -F';' '{print $18}')   # FailedCall(C)
ok=$(tail -n1 "$work/stat.csv" | awk -F';' '{print $16}')       # SuccessfulCall(C)
awk -v m="$mode" -v c="$calls" -v ok="$ok" -v f="$failed" -v a="$t0" -v b="$t1" -v u0="$cpu0" -v u1="$cpu1" -v hz="$ticks" \
	-v r="$rate" -v tr="$transport" -v st="$status" 'BEGIN {
	el = b - a; cpu = (u1 - u0) / hz
	printf "mode=%s transport=%s target_rate=%d calls=%d successful=%s failed=%s elapsed=%.2fs achieved=%.0f/s proxy_cpu=%.2fs (%.0f%% of one core, %.0f us/call) sipp_exit=%d\n",
		m, tr, r, c, ok, f, el, ok / el, cpu, 100 * cpu / el, 1e6 * cpu / (ok > 0 ? ok : 1), st }'
if [ "$mode" != kamailio ]; then
	# Records committed (0 with HLAS_LOAD_ACCOUNTING=false); a call whose BYE's 200 sipp saw has one.
	echo "cdrs=$("$work/hlas" cdr list --data "$work/data" | tail -n +2 | wc -l)"
fi
