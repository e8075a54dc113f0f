# Shared helpers for the bench/*.sh scripts. Sourced, not run (make bench runs
# only bench/*.sh). Every helper that starts a process records it so the EXIT
# trap can end it; the temp dir is removed there too.

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."    # the repo root
BERTH=${BERTH:-build/berth}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-64}
WRK_SECONDS=${WRK_SECONDS:-10}
WARMUP_SECONDS=${WARMUP_SECONDS:-2}
# Optional CPU pinning for experiments (taskset lists, e.g. SERVER_CPUS=1 WRK_CPUS=0);
# unset by default: everything shares all CPUs.
SERVER_CPUS=${SERVER_CPUS:-}
WRK_CPUS=${WRK_CPUS:-}
WRK=(wrk)
if [ -n "$WRK_CPUS" ]; then WRK=(taskset -c "$WRK_CPUS" wrk); fi

BENCH_PIDS=()
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/berth-bench.XXXXXX")

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    # Give each a few seconds to go, then force it.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$BENCH_TMP"
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop_pid PID: ends a process this script started and forgets it.
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}
forget_pid() {
  local p keep=()
  for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
}

# pin_server PID: pins all of the process's threads to SERVER_CPUS, if set.
pin_server() {
  [ -z "$SERVER_CPUS" ] || taskset -a -p -c "$SERVER_CPUS" "$1" >/dev/null || die "taskset failed"
}

die() { echo "bench: $*" >&2; exit 1; }

# start_nginx NAME WORKERS [CERT KEY]: Debian's nginx under its own prefix in
# $BENCH_TMP/NAME, serving the 15-byte {"status":"ok"} answer at /healthz; with a
# certificate and key, over TLS 1.2 with the ECDHE-ECDSA AEAD suites berth offers
# and a shared session cache (clients trust it through $CURL_CA_BUNDLE). Sets
# NGX_URL, NGX_MASTER and NGX_WORKERS (the worker pids, whose CPU is measured).
start_nginx() {
  local name=$1 workers=$2 cert=${3:-} key=${4:-}
  local ngx="$BENCH_TMP/$name" port tls_conf="" listen_opts="" scheme=http
  NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
  mkdir -p "$ngx/logs" "$ngx/tmp"
  port=$(free_port)
  if [ -n "$cert" ]; then
    scheme=https listen_opts=" ssl"
    tls_conf="ssl_protocols TLSv1.2;
  ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;
  ssl_session_cache shared:tls:10m;
  ssl_certificate $cert;
  ssl_certificate_key $key;"
  fi
  cat >"$ngx/nginx.conf" <<CONF
worker_processes $workers;
daemon off;
master_process on;
pid $ngx/nginx.pid;
error_log $ngx/logs/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  server_tokens off;
  keepalive_requests 1000000;
  client_body_temp_path $ngx/tmp/body;
  proxy_temp_path $ngx/tmp/proxy;
  fastcgi_temp_path $ngx/tmp/fastcgi;
  uwsgi_temp_path $ngx/tmp/uwsgi;
  scgi_temp_path $ngx/tmp/scgi;
  $tls_conf
  server {
    listen 127.0.0.1:$port$listen_opts;
    location = /healthz { default_type application/json; return 200 '{"status":"ok"}'; }
  }
}
CONF
  NGX_URL="$scheme://127.0.0.1:$port/healthz"
  launch_nginx "$ngx" "$NGX_URL" "$name"
  for _ in $(seq 50); do
    [ "$(pgrep -P "$NGX_MASTER" | wc -l)" -ge "$workers" ] && break
    sleep 0.1
  done
  NGX_WORKERS=$(pgrep -P "$NGX_MASTER" | tr '\n' ' ')
  [ "$(echo $NGX_WORKERS | wc -w)" -eq "$workers" ] || die "nginx ($name) has workers '$NGX_WORKERS', not $workers"
  local w
  for w in $NGX_WORKERS; do pin_server "$w"; done
}

# launch_nginx DIR URL NAME: starts nginx with DIR/nginx.conf (logs in DIR/logs,
# its output in DIR/stdout), records its master in NGX_MASTER and BENCH_PIDS, and
# waits until URL answers (dies, showing nginx's output, if it does not).
launch_nginx() {
  local ngx=$1 url=$2 name=$3
  "$NGINX" -p "$ngx" -e "$ngx/logs/error.log" -c "$ngx/nginx.conf" >"$ngx/stdout" 2>&1 &
  NGX_MASTER=$!
  BENCH_PIDS+=("$NGX_MASTER")
  for _ in $(seq 100); do
    curl -fsS --max-time 1 "$url" >/dev/null 2>&1 && break
    kill -0 "$NGX_MASTER" 2>/dev/null || break
    sleep 0.1
  done
  curl -fsS --max-time 5 "$url" >/dev/null || { cat "$ngx/stdout" "$ngx/logs/error.log" >&2; die "nginx ($name) did not start"; }
}

# ensure_tools CMD:PACKAGE... installs the Debian packages whose command is missing.
ensure_tools() {
  local missing=() spec
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${spec%%:*}" ] || missing+=("${spec#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "bench: installing ${missing[*]}" >&2
  # Don't let the package start its own service (nginx would listen on *:80).
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; } ||
    { [ $made_policy = 1 ] && rm -f "$policy"; die "could not install ${missing[*]}"; }
  [ $made_policy = 1 ] && rm -f "$policy"
  return 0
}

ensure_berth() {
  if [ ! -x "$BERTH" ]; then
    echo "bench: $BERTH missing; building it" >&2
    make build BUILD="$(dirname "$BERTH")" >&2 || die "make build failed"
  fi
  [ -x "$BERTH" ] || die "$BERTH still missing after make build"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_berth NAME [extra flags...]: starts a server with data in $BENCH_TMP/NAME
# (TLS unless --no-tls is among the flags) and sets BERTH_PID, BERTH_URL
# (https://... or http://...), BERTH_HOST (127.0.0.1:PORT), BERTH_TOKEN (pinned:
# the CLI needs nothing else) and BERTH_CA (DATA/ca.crt); curl is pointed at that
# CA through CURL_CA_BUNDLE.
start_berth() {
  local name=$1; shift
  local dir="$BENCH_TMP/$name"
  mkdir -p "$dir"
  "$BERTH" server --data "$dir/data" --listen 127.0.0.1:0 --log-level warn --no-agent "$@" \
    >"$dir/stdout" 2>"$dir/stderr" &
  BERTH_PID=$!
  BENCH_PIDS+=("$BERTH_PID")
  pin_server "$BERTH_PID"
  local url=""
  for _ in $(seq 100); do
    url=$(sed -n 's|^berth: listening on \(https\{0,1\}://127\.0\.0\.1:[0-9]*\).*|\1|p' "$dir/stdout" | head -1)
    [ -n "$url" ] && break
    kill -0 "$BERTH_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$url" ] || { cat "$dir/stdout" "$dir/stderr" >&2; die "berth ($name) did not start"; }
  BERTH_URL=$url
  BERTH_HOST=${url#*://}
  BERTH_CA="$dir/data/ca.crt"
  export CURL_CA_BUNDLE=$BERTH_CA
  BERTH_TOKEN=$(cat "$dir/data/admin-token")
  curl -fsS --max-time 5 "$BERTH_URL/healthz" >/dev/null || die "berth ($name) /healthz failed"
}

# join_peers N [extra flags...]: N more servers join the one start_berth started
# (as voters up to three; standbys past them), each with the extra flags, one at
# a time; sets PEER_PIDS. Their data is in $BENCH_TMP/peerI (I from 2).
join_peers() {
  local n=$1 i token
  shift
  PEER_PIDS=()
  token=$(curl -fsS --max-time 10 -H "Authorization: Bearer $BERTH_TOKEN" -X POST "$BERTH_URL/v1/tokens" \
    -d '{"role":"server"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"]["secret"])') ||
    die "cannot make a server token"
  for i in $(seq 2 $((n + 1))); do
    mkdir -p "$BENCH_TMP/peer$i"
    "$BERTH" server --data "$BENCH_TMP/peer$i/data" --listen 127.0.0.1:0 --log-level warn --no-agent \
      --join "$BERTH_URL" --token "$token" "$@" >"$BENCH_TMP/peer$i/stdout" 2>"$BENCH_TMP/peer$i/stderr" &
    PEER_PIDS+=($!)
    BENCH_PIDS+=($!)
    pin_server "${PEER_PIDS[-1]}"
    for _ in $(seq 600); do
      grep -q "joined the cluster" "$BENCH_TMP/peer$i/stdout" && break
      kill -0 "${PEER_PIDS[-1]}" 2>/dev/null || die "server $i did not join: $(tail -3 "$BENCH_TMP/peer$i/stderr")"
      sleep 0.1
    done
    grep -q "joined the cluster" "$BENCH_TMP/peer$i/stdout" || die "server $i did not join in time"
  done
}

# cpu_ticks PID...: user+system clock ticks the processes (all threads) have used.
cpu_ticks() {
  local pid total=0 t
  for pid in "$@"; do
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# run_wrk OUT "PID..." wrk-args...: runs wrk (bounded by timeout), saves its
# output in OUT and sets WRK_RPS, WRK_REQS, WRK_SECS, WRK_NON2XX, WRK_SOCKERR and
# SERVER_CPU (percent of one core the watched processes used together during the
# run) and SERVER_US_PER_REQ (their CPU time per completed request, in
# microseconds: less sensitive than req/s to other load on the machine).
run_wrk() {
  local out=$1; shift
  local -a pids
  read -r -a pids <<<"$1"; shift
  local t0 t1 c0 c1
  c0=$(cpu_ticks "${pids[@]}"); t0=$(date +%s.%N)
  # In the background, so that a signal to this script is handled at once.
  timeout $((WRK_SECONDS + 30)) "${WRK[@]}" "$@" >"$out" 2>&1 &
  local wpid=$!
  BENCH_PIDS+=("$wpid")
  wait "$wpid" || { cat "$out" >&2; die "wrk failed"; }
  forget_pid "$wpid"
  t1=$(date +%s.%N); c1=$(cpu_ticks "${pids[@]}")
  WRK_RPS=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  WRK_REQS=$(awk '/requests in/ {print $1}' "$out")
  WRK_SECS=$(awk '/requests in/ {sub(/s,$/, "", $4); print $4}' "$out")
  case "$(awk '/requests in/ {print $4}' "$out")" in
    *ms,) WRK_SECS=$(awk -v v="$WRK_SECS" 'BEGIN {sub(/m$/, "", v); print v / 1000}') ;;
    *m,) WRK_SECS=$(awk -v v="$WRK_SECS" 'BEGIN {sub(/m$/, "", v); print v * 60}') ;;
  esac
  WRK_NON2XX=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out"); WRK_NON2XX=${WRK_NON2XX:-0}
  WRK_SOCKERR=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$out"); WRK_SOCKERR=${WRK_SOCKERR:-0}
  SERVER_CPU=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" \
    'BEGIN {printf "%.0f", (b - a) / hz / (t1 - t0) * 100}')
  if [ -z "$WRK_RPS" ] || [ "${WRK_REQS:-0}" -eq 0 ]; then cat "$out" >&2; die "wrk completed no requests"; fi
  SERVER_US_PER_REQ=$(awk -v a="$c0" -v b="$c1" -v hz="$CLK_TCK" -v n="$WRK_REQS" 'BEGIN {printf "%.1f", (b - a) / hz * 1e6 / n}')
  # Broken, not slow: more than 1% of requests failed at the socket level.
  if [ "$WRK_SOCKERR" -gt $((WRK_REQS / 100)) ]; then
    cat "$out" >&2; die "wrk: $WRK_SOCKERR socket errors in $WRK_REQS requests"
  fi
}

# spread A B: prints the relative difference |A-B|/max(A,B) in percent.
spread() { awk -v a="$1" -v b="$2" 'BEGIN {m = (a > b) ? a : b; d = a - b; if (d < 0) d = -d; r = 0; if (m > 0) r = d / m * 100; printf "%.0f", r}'; }

machine_note() {
  echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r)"
}
