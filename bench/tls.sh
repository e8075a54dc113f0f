#!/usr/bin/env bash
# TLS: berth's HTTPS listener (mbedTLS 2.28 over its own Stream seam) against
# nginx with 1 worker (OpenSSL) and lighttpd with its mbedTLS module, all three
# serving the same 15-byte application/json answer at /healthz with the same
# certificate (berth's own ECDSA P-256 server certificate and key), on this
# machine, in this run. Three figures:
#   - keep-alive requests/s: wrk -t2 -c64 over TLS (one handshake per connection),
#     each server measured twice, interleaved, after a warm-up;
#   - new handshakes/s: `openssl s_time -new` (full handshakes, no resumption),
#     two clients at once, counted over the same wall time for each server;
#   - the memory one idle TLS connection holds in berth: RSS growth over 1000
#     connections that finished their handshake and then sit idle.
#
# Measures only; never fails on a timing. Exits non-zero if something broke.
# Last line: tls_rps_vs_nginx= handshakes_vs_nginx= tls_rps_vs_lighttpd= handshakes_vs_lighttpd= idle_tls_conn_kib=
#   berth_rps= nginx_rps= lighttpd_rps= berth_hs= nginx_hs= lighttpd_hs=
#   hs_cpu_vs_nginx= (nginx's server CPU per handshake over berth's: 1.0 is as cheap)
#   berth_hs_cpu_us= nginx_hs_cpu_us= lighttpd_hs_cpu_us=
#   (targets: keep-alive >= 0.8x nginx, handshakes >= 0.5x nginx, >= 1.0x lighttpd-mbedTLS)
#
#   bench/tls.sh                         # uses build/berth (built if missing)
#   HS_SECONDS=10 IDLE_CONNS=2000 bench/tls.sh

source "$(dirname "$0")/common.bash"

ensure_tools wrk:wrk nginx:nginx-light curl:curl python3:python3 openssl:openssl lighttpd:lighttpd
[ -f /usr/lib/lighttpd/mod_mbedtls.so ] || ensure_tools lighttpd-mod-mbedtls:lighttpd-mod-mbedtls
[ -f /usr/lib/lighttpd/mod_mbedtls.so ] || die "lighttpd's mbedTLS module is missing (apt-get install lighttpd-mod-mbedtls)"
ensure_berth
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
LIGHTTPD=$(command -v lighttpd || echo /usr/sbin/lighttpd)
HS_SECONDS=${HS_SECONDS:-8}
IDLE_CONNS=${IDLE_CONNS:-1000}

# --- berth, over TLS (its default)
start_berth tls
berth_pid=$BERTH_PID
berth_url="$BERTH_URL/healthz"
data="$BENCH_TMP/tls/data"
cert="$data/server.crt" key="$data/server.key"
berth_port=${BERTH_HOST##*:}

# --- nginx, 1 worker, OpenSSL, the same certificate
start_nginx nginx 1 "$cert" "$key"
ngx_url=$NGX_URL ngx_pid=${NGX_WORKERS%% *}
ngx_port=${ngx_url#https://127.0.0.1:}
ngx_port=${ngx_port%%/*}

# --- lighttpd with mod_mbedtls, the same certificate, the same answer (a file)
lt="$BENCH_TMP/lighttpd"
mkdir -p "$lt/www"
printf '{"status":"ok"}' >"$lt/www/healthz"
lt_port=$(free_port)
cat >"$lt/lighttpd.conf" <<CONF
server.modules = ("mod_mbedtls")
server.document-root = "$lt/www"
server.bind = "127.0.0.1"
server.port = $lt_port
server.pid-file = "$lt/lighttpd.pid"
server.errorlog = "$lt/error.log"
server.max-keep-alive-requests = 1000000
server.max-connections = 8192
server.max-fds = 16384
mimetype.assign = ("" => "application/json")
ssl.engine = "enable"
ssl.pemfile = "$cert"
ssl.privkey = "$key"
ssl.openssl.ssl-conf-cmd = ("MinProtocol" => "TLSv1.2", "MaxProtocol" => "TLSv1.2")
CONF
"$LIGHTTPD" -D -f "$lt/lighttpd.conf" >"$lt/stdout" 2>&1 &
lt_pid=$!
BENCH_PIDS+=("$lt_pid")

wait_https() {
  local url=$1 pid=$2 what=$3
  for _ in $(seq 100); do
    curl -fsS --max-time 1 --cacert "$data/ca.crt" "$url" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  curl -fsS --max-time 5 --cacert "$data/ca.crt" "$url" >/dev/null || die "$what did not start over TLS"
}
lt_url="https://127.0.0.1:$lt_port/healthz"
wait_https "$lt_url" "$lt_pid" lighttpd || { cat "$lt/stdout" "$lt/error.log" >&2; exit 1; }
pin_server "$lt_pid"

# The same answer, protocol and cipher family from all three.
declare -A url pids port
url[berth]=$berth_url pids[berth]=$berth_pid port[berth]=$berth_port
url[nginx]=$ngx_url pids[nginx]=$ngx_pid port[nginx]=$ngx_port
url[lighttpd]=$lt_url pids[lighttpd]=$lt_pid port[lighttpd]=$lt_port
who_all=(berth nginx lighttpd)
for who in "${who_all[@]}"; do
  body=$(curl -fsS --cacert "$data/ca.crt" "${url[$who]}")
  [ "$body" = '{"status":"ok"}' ] || die "$who answered '$body'"
  suite=$(openssl s_client -connect "127.0.0.1:${port[$who]}" </dev/null 2>/dev/null | awk '/Cipher is/ {print $NF; exit}')
  echo "$who: TLSv1.2 $suite"
  case "$suite" in ECDHE-ECDSA-*GCM* | ECDHE-ECDSA-CHACHA20*) ;; *) die "$who negotiated '$suite'" ;; esac
done

machine_note
echo "load: wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECONDS}s over TLS (keep-alive); handshakes: 2 x openssl s_time -new for ${HS_SECONDS}s"
echo "berth: $BERTH (pid $berth_pid); nginx $($NGINX -v 2>&1 | sed 's/.*: //') 1 worker (pid $ngx_pid); $($LIGHTTPD -v 2>&1 | head -1) with mod_mbedtls (pid $lt_pid)"

# --- keep-alive requests/s
for who in "${who_all[@]}"; do
  run_wrk "$BENCH_TMP/warm-$who" "${pids[$who]}" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARMUP_SECONDS}s" "${url[$who]}"
done
declare -A rps
for round in 1 2; do
  for who in "${who_all[@]}"; do
    run_wrk "$BENCH_TMP/$who-$round" "${pids[$who]}" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECONDS}s" "${url[$who]}"
    [ "$WRK_NON2XX" = 0 ] && [ "$WRK_SOCKERR" = 0 ] || die "$who: non-2xx $WRK_NON2XX, socket errors $WRK_SOCKERR"
    printf '%-8s run %d: %10.0f req/s over TLS (server CPU %s%% of one core = %s us/request)\n' "$who" "$round" \
      "$WRK_RPS" "$SERVER_CPU" "$SERVER_US_PER_REQ"
    rps[$who]=$(awk -v a="${rps[$who]:-0}" -v b="$WRK_RPS" 'BEGIN {printf "%.0f", a + b / 2}')
  done
done

# --- full handshakes/s: two s_time clients at once, each counting its connections;
# and the server's CPU per handshake (all its threads), which the clients sharing
# this machine's cores do not blur.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A hs hs_us
for who in "${who_all[@]}"; do
  ticks0=$(cpu_ticks "${pids[$who]}")
  clients=()
  for i in 1 2; do
    ${WRK_CPUS:+taskset -c "$WRK_CPUS"} openssl s_time -connect "127.0.0.1:${port[$who]}" -new -time "$HS_SECONDS" \
      >"$BENCH_TMP/hs-$who-$i" 2>&1 &
    clients+=($!)
  done
  wait "${clients[@]}"
  n=0
  for i in 1 2; do
    c=$(awk '/connections in [0-9.]+s/ {print $1; exit}' "$BENCH_TMP/hs-$who-$i")
    [ -n "$c" ] || { cat "$BENCH_TMP/hs-$who-$i" >&2; die "s_time against $who measured nothing"; }
    n=$((n + c))
  done
  hs[$who]=$(awk -v n="$n" -v s="$HS_SECONDS" 'BEGIN {printf "%.0f", n / s}')
  hs_us[$who]=$(awk -v t="$(($(cpu_ticks "${pids[$who]}") - ticks0))" -v hz="$(getconf CLK_TCK)" -v n="$n" \
    'BEGIN {if (n > 0) printf "%.0f", t * 1e6 / hz / n; else print "nan"}')
  printf '%-8s %8s full handshakes/s (2 clients, %ss), server CPU %s us/handshake\n' "$who" "${hs[$who]}" \
    "$HS_SECONDS" "${hs_us[$who]}"
done

# --- memory of idle TLS connections in berth
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
idle_kib=$(python3 - "$berth_port" "$IDLE_CONNS" "$berth_pid" "$data/ca.crt" <<'EOF'
import socket, ssl, sys, time
port, n, pid, ca = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def rss():
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
warm = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1") for _ in range(50)]
for c in warm: c.close()
time.sleep(1)
before = rss()
conns = [ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1") for _ in range(n)]
time.sleep(1)
after = rss()
print("%.1f" % ((after - before) / n))
for c in conns: c.close()
EOF
) || die "the idle-connection measurement failed"
echo "berth: ${idle_kib} KiB of RSS per idle TLS connection (over $IDLE_CONNS connections)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "nan"}'; }
echo "tls_rps_vs_nginx=$(ratio "${rps[berth]}" "${rps[nginx]}") handshakes_vs_nginx=$(ratio "${hs[berth]}" "${hs[nginx]}") tls_rps_vs_lighttpd=$(ratio "${rps[berth]}" "${rps[lighttpd]}") handshakes_vs_lighttpd=$(ratio "${hs[berth]}" "${hs[lighttpd]}") idle_tls_conn_kib=$idle_kib berth_rps=${rps[berth]} nginx_rps=${rps[nginx]} lighttpd_rps=${rps[lighttpd]} berth_hs=${hs[berth]} nginx_hs=${hs[nginx]} lighttpd_hs=${hs[lighttpd]} hs_cpu_vs_nginx=$(ratio "${hs_us[nginx]}" "${hs_us[berth]}") berth_hs_cpu_us=${hs_us[berth]} nginx_hs_cpu_us=${hs_us[nginx]} lighttpd_hs_cpu_us=${hs_us[lighttpd]}"
