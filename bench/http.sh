#!/usr/bin/env bash
# HTTP throughput of berth's GET /healthz against nginx with ONE worker process
# serving an identical 15-byte application/json answer, both driven by the same
# keep-alive wrk load (-t2 -c64 -d10s), on this machine, in this run. Each server
# is warmed up, then measured twice (interleaved: berth, nginx, berth, nginx);
# the figure per server is the mean of its two runs.
#
# Measures only; never fails on a timing. Exits non-zero if something broke.
# Last line: berth_rps=<n> nginx_rps=<n> ratio=<berth/nginx>   (target ratio >= 0.8)
#
#   bench/http.sh                        # uses build/berth (built if missing)
#   BERTH=build-bench/berth bench/http.sh

source "$(dirname "$0")/common.bash"

ensure_tools wrk:wrk nginx:nginx-light curl:curl python3:python3
ensure_berth
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# --- berth
start_berth http ${SERVER_ARGS:-}
berth_pid=$BERTH_PID
berth_url="$BERTH_URL/healthz"

# --- nginx, one worker, everything under its own prefix
ngx="$BENCH_TMP/nginx"
mkdir -p "$ngx/logs" "$ngx/tmp"
ngx_port=$(free_port)
cat >"$ngx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $ngx/nginx.pid;
error_log $ngx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  server_tokens off;
  keepalive_requests 1000000;
  client_body_temp_path $ngx/tmp/body;
  proxy_temp_path $ngx/tmp/proxy;
  fastcgi_temp_path $ngx/tmp/fastcgi;
  uwsgi_temp_path $ngx/tmp/uwsgi;
  scgi_temp_path $ngx/tmp/scgi;
  server {
    listen 127.0.0.1:$ngx_port;
    location = /healthz { default_type application/json; return 200 '{"status":"ok"}'; }
  }
}
EOF
"$NGINX" -p "$ngx" -e "$ngx/logs/error.log" -c "$ngx/nginx.conf" >"$ngx/stdout" 2>&1 &
ngx_master=$!
BENCH_PIDS+=("$ngx_master")
ngx_url="http://127.0.0.1:$ngx_port/healthz"
for _ in $(seq 100); do
  curl -fsS --max-time 1 "$ngx_url" >/dev/null 2>&1 && break
  kill -0 "$ngx_master" 2>/dev/null || break
  sleep 0.1
done
curl -fsS --max-time 5 "$ngx_url" >/dev/null || { cat "$ngx/stdout" "$ngx/logs/error.log" >&2; die "nginx did not start"; }
ngx_worker=$(pgrep -P "$ngx_master" | head -1)
[ -n "$ngx_worker" ] || die "nginx has no worker"
[ "$(pgrep -P "$ngx_master" | wc -l)" -eq 1 ] || die "nginx has more than one worker"
pin_server "$ngx_worker"

# Same answer size and type from both.
b_body=$(curl -fsS -D "$BENCH_TMP/b.h" "$berth_url"); n_body=$(curl -fsS -D "$BENCH_TMP/n.h" "$ngx_url")
[ "$b_body" = "$n_body" ] || die "bodies differ: berth '$b_body' nginx '$n_body'"
grep -qi '^content-type: application/json' "$BENCH_TMP/n.h" || die "nginx content-type is not application/json"
grep -qi '^content-type: application/json' "$BENCH_TMP/b.h" || die "berth content-type is not application/json"

machine_note
[ -z "$SERVER_CPUS$WRK_CPUS" ] || echo "pinned: servers on CPUs ${SERVER_CPUS:-all}, wrk on CPUs ${WRK_CPUS:-all}"
echo "load: wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECONDS}s (keep-alive), GET /healthz, ${#b_body}-byte body"
echo "berth: $BERTH (pid $berth_pid)   nginx: $($NGINX -v 2>&1 | sed 's/.*: //'), worker_processes 1 (worker pid $ngx_worker)"

# Warm-up.
run_wrk "$BENCH_TMP/warm-berth" "$berth_pid" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARMUP_SECONDS}s" "$berth_url"
run_wrk "$BENCH_TMP/warm-nginx" "$ngx_worker" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARMUP_SECONDS}s" "$ngx_url"

declare -A rps us
for round in 1 2; do
  for who in berth nginx; do
    if [ $who = berth ]; then url=$berth_url pid=$berth_pid; else url=$ngx_url pid=$ngx_worker; fi
    run_wrk "$BENCH_TMP/$who-$round" "$pid" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECONDS}s" --latency "$url"
    lat=$(awk '$1 == "Latency" && NF >= 4 {print $2 " avg, " $4 " max"; exit}' "$BENCH_TMP/$who-$round")
    p99=$(awk '/^ +99%/ {print $2}' "$BENCH_TMP/$who-$round")
    printf '%-5s run %d: %10.0f req/s  (%s requests in %ss, latency %s, p99 %s, non-2xx %s, socket errors %s, server CPU %s%% of one core = %s us/request)\n' \
      "$who" "$round" "$WRK_RPS" "$WRK_REQS" "$WRK_SECS" "$lat" "$p99" "$WRK_NON2XX" "$WRK_SOCKERR" "$SERVER_CPU" "$SERVER_US_PER_REQ"
    [ "$WRK_NON2XX" -le $((WRK_REQS / 100)) ] || die "$who answered $WRK_NON2XX non-2xx"
    rps[$who-$round]=$WRK_RPS
    us[$who-$round]=$SERVER_US_PER_REQ
  done
done

kill -0 "$berth_pid" 2>/dev/null || die "berth died during the run"

berth_rps=$(awk -v a="${rps[berth-1]}" -v b="${rps[berth-2]}" 'BEGIN {printf "%.0f", (a + b) / 2}')
nginx_rps=$(awk -v a="${rps[nginx-1]}" -v b="${rps[nginx-2]}" 'BEGIN {printf "%.0f", (a + b) / 2}')
ratio=$(awk -v a="$berth_rps" -v b="$nginx_rps" 'BEGIN {printf "%.2f", a / b}')
for who in berth nginx; do
  s=$(spread "${rps[$who-1]}" "${rps[$who-2]}")
  if [ "$s" -gt 10 ]; then
    echo "UNSTABLE: $who's two runs differ by $s% (${rps[$who-1]} vs ${rps[$who-2]}); the machine is probably busy"
  else
    echo "stable: $who's two runs differ by $s%"
  fi
done
# Server CPU per request: the efficiency behind the req/s, which a busy machine disturbs less.
awk -v b1="${us[berth-1]}" -v b2="${us[berth-2]}" -v n1="${us[nginx-1]}" -v n2="${us[nginx-2]}" \
  'BEGIN {b = (b1 + b2) / 2; n = (n1 + n2) / 2; printf "server CPU per request: berth %.1f us, nginx %.1f us (nginx/berth %.2f)\n", b, n, n / b}'
echo "target: berth/nginx >= 0.8 (measured, not enforced)"
echo "berth_rps=$berth_rps nginx_rps=$nginx_rps ratio=$ratio"
