#!/usr/bin/env bash
# Comparison for bench/load/register.sh: the same sipp REGISTER load against
# Kamailio (Debian packages kamailio, kamailio-sqlite-modules) on loopback:
# registrar + usrloc in memory (db_mode 0), and with auth on, auth_db reading
# HA1 from a SQLite subscriber table (qop=auth challenges, MD5). Reports the
# achieved rate, failures and Kamailio's CPU (all its processes) and RSS.
#
# usage: bench/load/kamailio-register.sh [rate/s] [users] [auth|noauth] [children]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

rate=${1:-2000}
users=${2:-20000}
mode=${3:-auth}
children=${4:-4}
port=${KAMAILIO_LOAD_PORT:-25080}
work=$(mktemp -d)
trap 'pkill -F "$work/kamailio.pid" 2>/dev/null; sleep 0.5; rm -rf "$work"' EXIT
mods=$(dirname "$(dpkg -L kamailio | grep -m1 '/modules/tm.so$')")

awk -v n="$users" -v mode="$mode" -v inf="$work/sipp.csv" -v sql="$work/users.sql" 'BEGIN {
	print "SEQUENTIAL" > inf
	print "BEGIN;" > sql
	for (i = 1; i <= n; i++) {
		u = sprintf("load%06d", i); p = sprintf("pw-%06d-x", i)
		if (mode == "auth") print u ";example.test;[authentication username=" u " password=" p "]" > inf
		else print u ";example.test;" > inf
		printf "INSERT INTO subscriber (username, domain, password) VALUES (\x27%s\x27, \x27example.test\x27, \x27%s\x27);\n", u, p > sql
	}
	print "COMMIT;" > sql
}'

auth_route='
	if (!auth_check("$fd", "subscriber", "1")) { auth_challenge("$fd", "1"); exit; }
	consume_credentials();'
auth_modules='
loadmodule "db_sqlite.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("auth_db", "db_url", "sqlite:///'"$work"'/kamailio.db")
modparam("auth_db", "calculate_ha1", 1)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")'
if [ "$mode" = auth ]; then
	python3 - "$work/kamailio.db" "$work/users.sql" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript("""
CREATE TABLE version (table_name VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL);
INSERT INTO version VALUES ('subscriber', 7);
CREATE TABLE subscriber (id INTEGER PRIMARY KEY, username VARCHAR(64) DEFAULT '' NOT NULL,
  domain VARCHAR(64) DEFAULT '' NOT NULL, password VARCHAR(64) DEFAULT '' NOT NULL,
  ha1 VARCHAR(128) DEFAULT '' NOT NULL, ha1b VARCHAR(128) DEFAULT '' NOT NULL);
CREATE UNIQUE INDEX account_idx ON subscriber (username, domain);
""")
db.executescript(open(sys.argv[2]).read())
db.close()
EOF
else
	auth_route=''
	auth_modules=''
fi
cat >"$work/kamailio.cfg" <<EOF
#!KAMAILIO
debug=1
log_stderror=no
fork=yes
children=$children
listen=udp:127.0.0.1:$port
mpath="$mods"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
$auth_modules
modparam("usrloc", "db_mode", 0)
request_route {
	if (\$rm != "REGISTER") { sl_send_reply("404", "Not here"); exit; }
	$auth_route
	if (!save("location")) { sl_reply_error(); }
	exit;
}
EOF
kamailio -f "$work/kamailio.cfg" -P "$work/kamailio.pid" -m 256 -M 16 -w "$work" -u root -g root >"$work/kamailio.out" 2>&1
sleep 1.5

ticks=$(getconf CLK_TCK)
pids() { pgrep -f "kamailio -f $work/kamailio.cfg"; }
cpu() { for p in $(pids); do awk '{print $14 + $15}' "/proc/$p/stat"; done | awk '{s += $1} END {print s}'; }
rss() { for p in $(pids); do awk '/VmRSS/ {print $2}' "/proc/$p/status"; done | awk '{s += $1} END {print s}'; }
cpu0=$(cpu)
t0=$(date +%s.%N)
status=0
scenario=test/interop/testdata/reg_noauth.xml
[ "$mode" = auth ] && scenario=test/interop/testdata/reg_auth.xml
sipp -sf "$scenario" -inf "$work/sipp.csv" -t u1 -r "$rate" -m "$users" -l 20000 \
	-p $((port + 10)) -timeout 300s -timeout_error -nostdin -trace_stat -stf "$work/stat.csv" \
	127.0.0.1:"$port" >"$work/sipp.out" 2>&1 || status=$?
t1=$(date +%s.%N)
cpu1=$(cpu)
mem=$(rss)
failed=$(tail -n1 "$work/stat.csv" | awk -F';' '{print $18}')
ok=$(tail -n1 "$work/stat.csv" | awk -F';' '{print $16}')
awk -v c="$users" -v ok="$ok" -v f="$failed" -v a="$t0" -v b="$t1" -v u0="$cpu0" -v u1="$cpu1" -v hz="$ticks" \
	-v r="$rate" -v st="$status" -v rss="$mem" -v m="$mode" -v ch="$children" 'BEGIN {
	el = b - a; cpu = (u1 - u0) / hz
	printf "kamailio mode=%s children=%d target_rate=%d registrations=%d successful=%s failed=%s elapsed=%.2fs achieved=%.0f/s cpu=%.2fs (%.0f%% of one core) rss_all_processes=%.0fMiB sipp_exit=%d\n",
		m, ch, r, c, ok, f, el, ok / el, cpu, 100 * cpu / el, rss / 1024, st }'
