#!/usr/bin/env bash
# Unauthenticated abuse: what the bounds on traffic no credential vouches for
# (docs/api.md, "Limits on every connection") cost a legitimate client, against
# nginx with its own equivalent protections, under the same load, in this run.
# Everything runs on 127.0.0.x: the legitimate client on 127.0.0.2, the guesser on
# 127.0.0.3, the large bodies from 127.0.0.4, attacker hosts on 127.0.0.10 and up.
#
# Both servers speak TLS 1.2 with berth's own certificate and hold at most
# MAXCONN connections (berth --max-connections, nginx worker_connections, 1
# worker), so that 8 attacker hosts can reach that cap on this machine. berth
# runs with --limit-loopback (loopback is otherwise exempt from the per-address
# bounds) and every other limit at its default; LIMIT_LOOPBACK=0 runs it without,
# that is with no per-address bound at all, to show what the bench measures.
# The phases and the load are described in bench/unauth_flood.py.
#
# nginx (one worker): limit_conn 32 per address (it counts connections whose
# request headers have arrived, not ones in their handshake or before their
# first request), client_header_timeout and client_body_timeout 10s (its TLS
# handshake is bounded by the first too), client_max_body_size 8k (for every
# request: nginx cannot make it depend on the credentials), and limit_req at
# 10 a minute, 10 at once, per address, over requests whose Authorization is not
# the right token (requests without one are not counted, as in berth). It
# answers GET /v1/clusters with berth's own answer, read beforehand, when the
# header carries the admin token, and 401 otherwise.
#
# Measures only; never fails on a timing. Exits non-zero if something broke.
# Last line: berth_legit_ok_pct= berth_legit_p50_ms= berth_legit_p99_ms= nginx_legit_ok_pct= nginx_legit_p50_ms=
#   nginx_legit_p99_ms= ratio_legit_p99= (berth / nginx) berth_base_p99_ms= nginx_base_p99_ms= (the client alone)
#   attacker_conns_refused= attacker_conns_accepted= attacker_held_max_s= attacker_tcp_only_held_max_s= nginx_...
#   berth_peak_fds= nginx_peak_fds= berth_attack_cpu_pct= nginx_attack_cpu_pct= guess_401= guess_429= nginx_guess_...
#   berth_guess_legit_p99_ms= nginx_guess_legit_p99_ms= berth_body_api_status= berth_body_open_status=
#   berth_body_open_read_kib= nginx_body_open_read_kib= berth_stream_read_s= berth_stream_read_mib= nginx_stream_...
#
#   bench/unauth.sh                      # uses build/berth (built if missing)
#   BERTH=/tmp/berth LIMIT_LOOPBACK=0 bench/unauth.sh

source "$(dirname "$0")/common.bash"

ensure_tools nginx:nginx-light curl:curl python3:python3
ensure_berth
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
MAXCONN=${MAXCONN:-512}
LIMIT_LOOPBACK=${LIMIT_LOOPBACK:-1}
FLOOD_ARGS=${FLOOD_ARGS:-}   # e.g. "--slots 40 --attack-seconds 15" to experiment

# The attacker hosts' connections, the legitimate client's and the servers' own.
[ "$(ulimit -Sn)" -ge 4096 ] || ulimit -Sn 4096 2>/dev/null || true

# --- berth, over TLS (its default)
berth_flags=(--max-connections "$MAXCONN")
[ "$LIMIT_LOOPBACK" = 1 ] && berth_flags+=(--limit-loopback)
start_berth unauth "${berth_flags[@]}"
berth_pid=$BERTH_PID
berth_port=${BERTH_HOST##*:}
data="$BENCH_TMP/unauth/data"
token=$BERTH_TOKEN

# --- nginx, 1 worker, the same certificate, the same answer
ngx="$BENCH_TMP/nginx"
mkdir -p "$ngx/logs" "$ngx/tmp" "$ngx/www"
curl -fsS -H "Authorization: Bearer $token" "$BERTH_URL/v1/clusters" >"$ngx/www/clusters1.json" ||
  die "berth did not answer GET /v1/clusters"
ngx_port=$(free_port)
# The worker runs as this user, not nobody: the temp dir is private to us.
cat >"$ngx/nginx.conf" <<CONF
user $(id -un);
worker_processes 1;
worker_rlimit_nofile 16384;
daemon off;
master_process on;
pid $ngx/nginx.pid;
error_log $ngx/logs/error.log warn;
events { worker_connections $MAXCONN; }
http {
  access_log off;
  server_tokens off;
  client_body_temp_path $ngx/tmp/body;
  proxy_temp_path $ngx/tmp/proxy;
  fastcgi_temp_path $ngx/tmp/fastcgi;
  uwsgi_temp_path $ngx/tmp/uwsgi;
  scgi_temp_path $ngx/tmp/scgi;
  ssl_protocols TLSv1.2;
  ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;
  ssl_certificate $data/server.crt;
  ssl_certificate_key $data/server.key;

  client_header_timeout 10s;
  client_body_timeout 10s;
  client_max_body_size 8k;
  keepalive_timeout 60s;
  send_timeout 30s;

  map_hash_bucket_size 256;
  map \$http_authorization \$authorized { "Bearer $token" 1; default 0; }
  map \$http_authorization \$guess_key { "" ""; "Bearer $token" ""; default \$binary_remote_addr; }
  limit_conn_zone \$binary_remote_addr zone=peraddr:10m;
  limit_req_zone \$guess_key zone=guesses:10m rate=10r/m;
  limit_conn peraddr 32;
  limit_conn_status 429;
  limit_req zone=guesses burst=9 nodelay;
  limit_req_status 429;

  server {
    listen 127.0.0.1:$ngx_port ssl;
    root $ngx/www;
    default_type application/json;
    location = /healthz { return 200 '{"status":"ok"}'; }
    # try_files runs after limit_req (a return would run before it): 401 unless
    # the header carried the token.
    location = /v1/clusters { try_files /clusters\$authorized.json =401; }
  }
}
CONF
ngx_url="https://127.0.0.1:$ngx_port"
launch_nginx "$ngx" "$ngx_url/healthz" unauth
ngx_master=$NGX_MASTER
ngx_worker=$(pgrep -P "$ngx_master" | head -1)
[ -n "$ngx_worker" ] || die "nginx has no worker"

# The same answers from both: the cluster list with the token, 401 with a wrong one.
for url in "$BERTH_URL" "$ngx_url"; do
  body=$(curl -fsS -H "Authorization: Bearer $token" "$url/v1/clusters") || die "$url: GET /v1/clusters failed"
  [ "$body" = "$(cat "$ngx/www/clusters1.json")" ] || die "$url answered another cluster list"
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer wrong" "$url/v1/clusters")
  [ "$code" = 401 ] || die "$url answered $code to a wrong token"
done

machine_note
echo "berth: $BERTH (pid $berth_pid) --max-connections $MAXCONN$([ "$LIMIT_LOOPBACK" = 1 ] && echo " --limit-loopback" || echo ", WITHOUT --limit-loopback: no per-address bound"); other limits at their defaults"
echo "nginx: $($NGINX -v 2>&1 | sed 's/.*: //'), 1 worker (pid $ngx_worker), worker_connections $MAXCONN, limit_conn 32, limit_req 10r/m burst 9, client_header_timeout 10s, client_max_body_size 8k"

# run_flood NAME PORT PIDS [flags...]: one run of every phase; its output goes to
# the terminal and to $BENCH_TMP/NAME.out, whose last line holds the figures.
run_flood() {
  local name=$1 port=$2 pids=$3; shift 3
  # In the background, so that a signal to this script is handled at once.
  python3 bench/unauth_flood.py --name "$name" --port "$port" --ca "$data/ca.crt" --token "$token" \
    --pids "$pids" $FLOOD_ARGS "$@" >"$BENCH_TMP/$name.out" 2>&1 &
  local fpid=$!
  BENCH_PIDS+=("$fpid")
  wait "$fpid" || { cat "$BENCH_TMP/$name.out" >&2; die "the load against $name failed"; }
  forget_pid "$fpid"
  sed '$d' "$BENCH_TMP/$name.out"
  kill -0 "${pids%% *}" 2>/dev/null || die "$name died during the run"
}
run_flood berth "$berth_port" "$berth_pid" --metrics
run_flood nginx "$ngx_port" "$ngx_worker"
log="$ngx/logs/error.log"
echo "nginx   its error log: $(grep -c 'reusing connections' "$log" || true) times 'worker_connections are not enough," \
  "reusing connections' (it closed connections waiting for a first request), $(grep -c 'limiting requests' "$log" || true)" \
  "limit_req and $(grep -c 'limiting connections' "$log" || true) limit_conn refusals"

# fig NAME KEY: a figure from a run's last line.
fig() { tail -1 "$BENCH_TMP/$1.out" | tr ' ' '\n' | sed -n "s/^$1_$2=//p"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "nan"}'; }

echo "differences: berth refuses a connection over its per-address bound with 429 after the TLS handshake; nginx's"
echo "  limit_conn never sees a connection before its request headers, so only its timeouts and worker_connections"
echo "  bound the attackers. berth answers 429 to every request with credentials from a throttled address, the right"
echo "  token included; nginx only to wrong tokens. nginx's 8k body bound holds for authenticated requests too."
echo "berth_legit_ok_pct=$(fig berth legit_ok_pct) berth_legit_p50_ms=$(fig berth legit_p50_ms)" \
  "berth_legit_p99_ms=$(fig berth legit_p99_ms) nginx_legit_ok_pct=$(fig nginx legit_ok_pct)" \
  "nginx_legit_p50_ms=$(fig nginx legit_p50_ms) nginx_legit_p99_ms=$(fig nginx legit_p99_ms)" \
  "ratio_legit_p99=$(ratio "$(fig berth legit_p99_ms)" "$(fig nginx legit_p99_ms)")" \
  "berth_base_p99_ms=$(fig berth base_p99_ms) nginx_base_p99_ms=$(fig nginx base_p99_ms)" \
  "attacker_conns_refused=$(fig berth attacker_refused) attacker_conns_accepted=$(fig berth attacker_accepted)" \
  "attacker_held_max_s=$(fig berth attacker_held_max_s) attacker_tcp_only_held_max_s=$(fig berth silent_held_max_s)" \
  "nginx_attacker_conns_refused=$(fig nginx attacker_refused) nginx_attacker_conns_accepted=$(fig nginx attacker_accepted)" \
  "nginx_attacker_held_max_s=$(fig nginx attacker_held_max_s)" \
  "berth_peak_fds=$(fig berth peak_fds) nginx_peak_fds=$(fig nginx peak_fds)" \
  "berth_attack_cpu_pct=$(fig berth attack_cpu_pct) nginx_attack_cpu_pct=$(fig nginx attack_cpu_pct)" \
  "guess_401=$(fig berth guess_401) guess_429=$(fig berth guess_429)" \
  "nginx_guess_401=$(fig nginx guess_401) nginx_guess_429=$(fig nginx guess_429)" \
  "berth_guess_legit_p99_ms=$(fig berth guess_legit_p99_ms) nginx_guess_legit_p99_ms=$(fig nginx guess_legit_p99_ms)" \
  "berth_body_api_status=$(fig berth body_api_cl_status) berth_body_open_status=$(fig berth body_open_cl_status)" \
  "berth_body_open_read_kib=$(fig berth body_open_chunked_read_kib) nginx_body_open_read_kib=$(fig nginx body_open_chunked_read_kib)" \
  "berth_stream_read_s=$(fig berth stream_read_s) berth_stream_read_mib=$(fig berth stream_read_mib)" \
  "nginx_stream_read_s=$(fig nginx stream_read_s) nginx_stream_read_mib=$(fig nginx stream_read_mib)"
