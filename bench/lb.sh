#!/usr/bin/env bash
# The proxy's data plane (berth proxy, 1 worker thread) against HAProxy
# (nbthread 1, balance leastconn, http mode), side by side in the same run: four
# nginx backends (1 worker each) on loopback behind both, the same wrk loads,
# iperf3 for TCP. Each figure is the median of 3 runs, alternating berth and
# HAProxy run by run.
#
#   l7     keep-alive req/s (wrk -t2 -c64)                       berth / HAProxy
#   p99    p99 latency at half of HAProxy's keep-alive peak       berth / HAProxy
#          (wrk paced by a delay() script: 64 connections, each waiting so that
#          the total offered rate is half the peak; closed-loop, so p99 is
#          without coordinated-omission correction)
#   close  req/s with a new connection per request (Connection: close)
#   l4     iperf3 throughput through a TCP listener (5 s)
#   tls    keep-alive req/s over TLS 1.2 (wrk -t2 -c64 https://), an HTTPS
#          listener against HAProxy's `bind ... ssl crt` (same P-256
#          certificate, TLS 1.2 only, ECDHE-ECDSA AEAD ciphers)
#   tls_hs TLS handshakes/s: the same with Connection: close, a new TLS
#          connection per request. wrk's OpenSSL client may offer its last
#          session again, so these mix full and resumed (ticket) handshakes;
#          the proxy CPU printed per run tells which dominates
#   added_p50_us  proxy p50 minus direct-to-nginx p50 at one connection (wrk -c1)
#   idle_conn_kib RSS growth per idle client connection (5,000 of them)
#
# Measures only; never fails on a timing. Exits non-zero if something broke.
# Last line: l7_vs_haproxy= p99_vs_haproxy= close_vs_haproxy= l4_vs_haproxy=
#   tls_vs_haproxy= tls_hs_vs_haproxy= added_p50_us= haproxy_added_p50_us= idle_conn_kib= haproxy_idle_conn_kib=
# (targets: l7 >= 0.9, close >= 0.8, l4 >= 0.9, p99 <= 1.25)
#
#   bench/lb.sh                                  # uses build/berth
#   BERTH=build/release/src/berth bench/lb.sh

source "$(dirname "$0")/common.bash"

ensure_tools wrk:wrk nginx:nginx-light curl:curl python3:python3 haproxy:haproxy iperf3:iperf3 openssl:openssl
ensure_berth
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
RUNS=${RUNS:-3}
IDLE_CONNS=${IDLE_CONNS:-5000}
ulimit -n "$(ulimit -Hn)"  # 5,000 idle connections need more than the usual 1,024

# --- backends
backend_ports=()
for i in 1 2 3 4; do
  start_nginx "nginx$i" 1
  p=${NGX_URL#http://127.0.0.1:}
  backend_ports+=("${p%%/*}")
done
direct_url=$NGX_URL
iperf_port=$(free_port)
iperf3 -s -p "$iperf_port" >"$BENCH_TMP/iperf3.log" 2>&1 &
BENCH_PIDS+=($!)

# --- one certificate for both proxies' TLS listeners (a self-signed P-256 leaf)
openssl ecparam -name prime256v1 -genkey -noout -out "$BENCH_TMP/site.key" 2>/dev/null
openssl req -x509 -new -key "$BENCH_TMP/site.key" -subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
  -days 2 -out "$BENCH_TMP/site.crt" 2>/dev/null
cat "$BENCH_TMP/site.crt" "$BENCH_TMP/site.key" >"$BENCH_TMP/site.pem"  # HAProxy's crt: both in one file
json_file() { python3 -c 'import json, sys; print(json.dumps(open(sys.argv[1]).read()))' "$1"; }

# --- berth proxy
b_http=$(free_port) b_tcp=$(free_port) b_https=$(free_port)
targets=""
for i in 0 1 2 3; do
  targets+="${targets:+,}{\"id\":\"n$i\",\"address\":\"127.0.0.1\",\"port\":${backend_ports[$i]},\"state\":\"healthy\"}"
done
cat >"$BENCH_TMP/proxy.json" <<JSON
{"version": 1,
 "listeners": [{"port": $b_http, "protocol": "HTTP", "address": "127.0.0.1", "defaultTargetGroup": "web"},
               {"port": $b_tcp, "protocol": "TCP", "address": "127.0.0.1", "defaultTargetGroup": "iperf"},
               {"port": $b_https, "protocol": "HTTPS", "address": "127.0.0.1", "defaultTargetGroup": "web",
                "certificates": ["site"]}],
 "certificates": [{"name": "site", "certPem": $(json_file "$BENCH_TMP/site.crt"),
                   "keyPem": $(json_file "$BENCH_TMP/site.key")}],
 "targetGroups": [{"name": "web", "protocol": "HTTP", "targets": [$targets]},
                  {"name": "iperf", "protocol": "TCP",
                   "targets": [{"id": "i", "address": "127.0.0.1", "port": $iperf_port, "state": "healthy"}]}]}
JSON
"$BERTH" proxy --config "$BENCH_TMP/proxy.json" --proxy-threads 1 --log-level warn >"$BENCH_TMP/berth.log" 2>&1 &
berth_pid=$!
BENCH_PIDS+=("$berth_pid")
pin_server "$berth_pid"

# --- HAProxy
h_http=$(free_port) h_tcp=$(free_port) h_https=$(free_port)
{
  echo "global"
  echo "  nbthread 1"
  echo "  maxconn 9000"
  echo "defaults"
  echo "  timeout connect 3s"
  echo "  timeout client 60s"
  echo "  timeout server 60s"
  echo "frontend web"
  echo "  mode http"
  echo "  bind 127.0.0.1:$h_http"
  echo "  default_backend web"
  echo "backend web"
  echo "  mode http"
  echo "  balance leastconn"
  echo "  option forwardfor"
  for i in 0 1 2 3; do echo "  server n$i 127.0.0.1:${backend_ports[$i]}"; done
  echo "frontend web_tls"
  echo "  mode http"
  echo "  bind 127.0.0.1:$h_https ssl crt $BENCH_TMP/site.pem ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.2" \
    "ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305" \
    "curves X25519:P-256:P-384"
  echo "  default_backend web"
  echo "frontend tcp"
  echo "  mode tcp"
  echo "  bind 127.0.0.1:$h_tcp"
  echo "  default_backend iperf"
  echo "backend iperf"
  echo "  mode tcp"
  echo "  server i 127.0.0.1:$iperf_port"
} >"$BENCH_TMP/haproxy.cfg"
"$HAPROXY" -db -f "$BENCH_TMP/haproxy.cfg" >"$BENCH_TMP/haproxy.log" 2>&1 &
haproxy_pid=$!
BENCH_PIDS+=("$haproxy_pid")
pin_server "$haproxy_pid"

declare -A url pid
url[berth]="http://127.0.0.1:$b_http/healthz" pid[berth]=$berth_pid
url[haproxy]="http://127.0.0.1:$h_http/healthz" pid[haproxy]=$haproxy_pid
declare -A tcp_port=([berth]=$b_tcp [haproxy]=$h_tcp)
declare -A tls_url=([berth]="https://127.0.0.1:$b_https/healthz" [haproxy]="https://127.0.0.1:$h_https/healthz")
for who in berth haproxy; do
  for _ in $(seq 50); do curl -fsS --max-time 1 "${url[$who]}" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS --max-time 5 "${url[$who]}" >/dev/null || { cat "$BENCH_TMP/$who.log" >&2; die "$who does not answer"; }
  curl -fsS -k --tlsv1.2 --max-time 5 "${tls_url[$who]}" >/dev/null || die "$who does not answer over TLS"
done

machine_note
echo "berth: $BERTH proxy, 1 thread (pid $berth_pid); haproxy: $($HAPROXY -v | head -1) (pid $haproxy_pid)"
echo "backends: 4 x nginx $(nginx -v 2>&1 | sed 's/.*: //'), 1 worker each; iperf3 $(iperf3 --version | head -1 | cut -d' ' -f2)"

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b == 0) print "n/a"; else printf "%.2f", a / b}'; }
# wrk's latency figure ("812.00us", "1.20ms", "2.1s") in microseconds.
to_us() { awk -v v="$1" 'BEGIN {n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else print n * 1e6}'; }
wrk_pct() { to_us "$(awk -v p="$2" '$1 == p {print $2}' "$1")"; }

# Warm-up: fill both proxies' target pools.
for who in berth haproxy; do "${WRK[@]}" -t2 -c64 -d2s "${url[$who]}" >/dev/null; done

# --- keep-alive peak
declare -A rps close p99 p50 l4
for run in $(seq "$RUNS"); do
  for who in berth haproxy; do
    run_wrk "$BENCH_TMP/ka-$who-$run" "${pid[$who]}" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECONDS}s" "${url[$who]}"
    [ "$WRK_NON2XX" = 0 ] || die "$who: $WRK_NON2XX non-2xx answers"
    rps[$who]+=" $WRK_RPS"
    echo "keep-alive run $run $who: $WRK_RPS req/s (proxy CPU ${SERVER_CPU}%)"
  done
done
b_rps=$(median ${rps[berth]}) h_rps=$(median ${rps[haproxy]})

# --- p99 at half of HAProxy's peak, offered by 64 paced connections
half=$(awk -v r="$h_rps" 'BEGIN {printf "%d", r / 2}')
cat >"$BENCH_TMP/pace.lua" <<LUA
-- Each of the 64 connections waits so that together they offer $half req/s;
-- a random part spreads the sends instead of bunching them.
local mean_ms = 64 * 1000 / $half
function delay() return mean_ms * (0.5 + math.random()) end
LUA
for run in $(seq "$RUNS"); do
  for who in berth haproxy; do
    run_wrk "$BENCH_TMP/p99-$who-$run" "${pid[$who]}" -t2 -c64 -d"${WRK_SECONDS}s" --latency \
      -s "$BENCH_TMP/pace.lua" "${url[$who]}"
    v=$(wrk_pct "$BENCH_TMP/p99-$who-$run" 99%)
    p99[$who]+=" $v"
    echo "paced run $run $who: offered $half req/s, got $WRK_RPS req/s, p99 ${v}us"
  done
done

# --- a connection per request
for run in $(seq "$RUNS"); do
  for who in berth haproxy; do
    run_wrk "$BENCH_TMP/close-$who-$run" "${pid[$who]}" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECONDS}s" \
      -H "Connection: close" "${url[$who]}"
    close[$who]+=" $WRK_RPS"
    echo "connection-per-request run $run $who: $WRK_RPS req/s"
  done
done

# --- TLS: keep-alive, then a full handshake per request
declare -A tls tls_hs
for who in berth haproxy; do "${WRK[@]}" -t2 -c64 -d2s "${tls_url[$who]}" >/dev/null; done
for run in $(seq "$RUNS"); do
  for who in berth haproxy; do
    run_wrk "$BENCH_TMP/tls-$who-$run" "${pid[$who]}" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECONDS}s" \
      "${tls_url[$who]}"
    [ "$WRK_NON2XX" = 0 ] || die "$who: $WRK_NON2XX non-2xx answers over TLS"
    tls[$who]+=" $WRK_RPS"
    echo "TLS keep-alive run $run $who: $WRK_RPS req/s (proxy CPU ${SERVER_CPU}%)"
  done
done
for run in $(seq "$RUNS"); do
  for who in berth haproxy; do
    run_wrk "$BENCH_TMP/tlshs-$who-$run" "${pid[$who]}" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECONDS}s" \
      -H "Connection: close" "${tls_url[$who]}"
    tls_hs[$who]+=" $WRK_RPS"
    echo "TLS handshake per request run $run $who: $WRK_RPS handshakes/s (proxy CPU ${SERVER_CPU}%)"
  done
done

# --- added latency at one connection
direct_p50=()
for run in $(seq "$RUNS"); do
  run_wrk "$BENCH_TMP/lat-direct-$run" "" -t1 -c1 -d5s --latency "$direct_url"
  direct_p50+=("$(wrk_pct "$BENCH_TMP/lat-direct-$run" 50%)")
  for who in berth haproxy; do
    run_wrk "$BENCH_TMP/lat-$who-$run" "${pid[$who]}" -t1 -c1 -d5s --latency "${url[$who]}"
    p50[$who]+=" $(wrk_pct "$BENCH_TMP/lat-$who-$run" 50%)"
  done
  echo "one connection run $run: p50 direct ${direct_p50[-1]}us"
done

# --- TCP through iperf3
for run in $(seq "$RUNS"); do
  for who in berth haproxy; do
    bps=$(iperf3 -c 127.0.0.1 -p "${tcp_port[$who]}" -t 5 -J | python3 -c \
      'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
    l4[$who]+=" $bps"
    echo "iperf3 run $run $who: $(awk -v b="$bps" 'BEGIN {printf "%.2f", b / 1e9}') Gbit/s"
  done
done

# --- memory per idle client connection
idle_kib() {
  local who=$1 port=$2 before after
  before=$(awk '/^VmRSS/ {print $2}' "/proc/${pid[$who]}/status")
  python3 - "$port" "$IDLE_CONNS" "$BENCH_TMP/idle-$who" <<'PY' &
import socket, sys, time
port, n, flag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    socks.append(s)
open(flag, "w").close()
time.sleep(15)
PY
  local holder=$!
  BENCH_PIDS+=("$holder")
  for _ in $(seq 300); do [ -e "$BENCH_TMP/idle-$who" ] && break; sleep 0.1; done
  sleep 2
  after=$(awk '/^VmRSS/ {print $2}' "/proc/${pid[$who]}/status")
  stop_pid "$holder"
  rm -f "$BENCH_TMP/idle-$who"
  awk -v a="$after" -v b="$before" -v n="$IDLE_CONNS" 'BEGIN {printf "%.2f", (a - b) / n}'
}
b_idle=$(idle_kib berth "$b_http")
sleep 1
h_idle=$(idle_kib haproxy "$h_http")
echo "idle connections: berth +${b_idle} KiB each, haproxy +${h_idle} KiB each ($IDLE_CONNS connections)"

direct=$(median "${direct_p50[@]}")
b_p50=$(median ${p50[berth]}) h_p50=$(median ${p50[haproxy]})
echo "medians: keep-alive berth $b_rps haproxy $h_rps req/s; p99 berth $(median ${p99[berth]})us haproxy $(median ${p99[haproxy]})us;" \
  "close berth $(median ${close[berth]}) haproxy $(median ${close[haproxy]}) req/s; p50 direct ${direct}us berth ${b_p50}us haproxy ${h_p50}us;" \
  "tls berth $(median ${tls[berth]}) haproxy $(median ${tls[haproxy]}) req/s; handshakes berth $(median ${tls_hs[berth]}) haproxy $(median ${tls_hs[haproxy]})/s"
echo "l7_vs_haproxy=$(ratio "$b_rps" "$h_rps")" \
  "p99_vs_haproxy=$(ratio "$(median ${p99[berth]})" "$(median ${p99[haproxy]})")" \
  "close_vs_haproxy=$(ratio "$(median ${close[berth]})" "$(median ${close[haproxy]})")" \
  "l4_vs_haproxy=$(ratio "$(median ${l4[berth]})" "$(median ${l4[haproxy]})")" \
  "tls_vs_haproxy=$(ratio "$(median ${tls[berth]})" "$(median ${tls[haproxy]})")" \
  "tls_hs_vs_haproxy=$(ratio "$(median ${tls_hs[berth]})" "$(median ${tls_hs[haproxy]})")" \
  "added_p50_us=$(awk -v a="$b_p50" -v d="$direct" 'BEGIN {printf "%.0f", a - d}')" \
  "haproxy_added_p50_us=$(awk -v a="$h_p50" -v d="$direct" 'BEGIN {printf "%.0f", a - d}')" \
  "idle_conn_kib=$b_idle haproxy_idle_conn_kib=$h_idle"
