#!/usr/bin/env bash
# The dashboard in headless Chromium (Debian's, driven by playwright-core from
# tests/browser) against a server with NODES simulated nodes and TASKS tasks
# (default 10,000 and 100,000): the figures of issue 16, measured by
# bench/dashboard.mjs.
#   first_render_ms  navigation to the overview showing its numbers, cold cache
#                    (the browser signed in before, through the login form),
#                    median of RUNS (target <= 1000)
#   transfer_kib     compressed bytes of a cold load (target <= 200)
#   sse_lag_ms       a task's state change as the API shows it to the open
#                    overview showing it (target <= 1000)
#   server_cpu_per_viewer  percent of one core one idle open dashboard costs the
#                    server, from VIEWERS (default 50) open at once against none
#                    (target: 50 cost under 5%, so <= 0.1 each)
# Side by side: nginx serves the same files (index and assets, gzip) over TLS;
# static_load_ms is the time to a loaded page from it, the floor the browser and
# the network set, and render_vs_static the ratio.
#
# Measures only; never fails on a timing. Exits non-zero if something broke.
# Last line: first_render_ms= transfer_kib= sse_lag_ms= server_cpu_per_viewer= static_load_ms= render_vs_static= ...
#
#   bench/dashboard.sh
#   NODES=1000 TASKS=10000 VIEWERS=10 bench/dashboard.sh   # a quick run
source "$(dirname "$0")/common.bash"

NODES=${NODES:-10000}
TASKS=${TASKS:-100000}
SERVICES=${SERVICES:-10}
RUNS=${RUNS:-5}
VIEWERS=${VIEWERS:-50}
IDLE_SECONDS=${IDLE_SECONDS:-30}
DEADLINE_S=${DEADLINE_S:-600}

ensure_tools curl:curl python3:python3 nginx:nginx-light openssl:openssl node:nodejs
ensure_berth
tests/browser/setup.sh >&2 || die "tests/browser/setup.sh failed"

start_berth dash --node-lost-after 120s --max-connections $((NODES + 5000)) ${SERVER_ARGS:-}
auth=(-H "Authorization: Bearer $BERTH_TOKEN")
api() { curl -fsS --max-time 60 "${auth[@]}" "$@"; }

agent_token=$(api -X POST "$BERTH_URL/v1/tokens" -d '{"role":"agent"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"]["secret"])')
"$BERTH" agent --simulate "$NODES" --server "$BERTH_URL" --token "$agent_token" --log-level warn --zones 3 \
  >"$BENCH_TMP/sim.out" 2>"$BENCH_TMP/sim.err" &
SIM_PID=$!
BENCH_PIDS+=("$SIM_PID")
echo "waiting for $NODES simulated nodes..."
for _ in $(seq 600); do
  connected=$(api "$BERTH_URL/v1/overview?cluster=default" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["nodes"]["total"])')
  [ "$connected" -ge "$NODES" ] && break
  kill -0 "$SIM_PID" 2>/dev/null || die "the simulator died: $(tail -3 "$BENCH_TMP/sim.err")"
  sleep 1
done
[ "$connected" -ge "$NODES" ] || die "only $connected of $NODES nodes registered"

for family in dashbulk dashprobe; do
  api -X POST "$BERTH_URL/v1/taskdefinitions" -d "{\"family\":\"$family\",\"containerDefinitions\":[
    {\"name\":\"app\",\"image\":\"busybox\",\"cpu\":16,\"memory\":32,\"essential\":true}]}" >/dev/null
done
per=$((TASKS / SERVICES))
for i in $(seq 1 "$SERVICES"); do
  api -X POST "$BERTH_URL/v1/services" \
    -d "{\"serviceName\":\"svc$i\",\"taskDefinition\":\"dashbulk\",\"desiredCount\":$per}" >/dev/null
done
echo "waiting for $((per * SERVICES)) tasks to run..."
t0=$(date +%s)
while :; do
  running=$(api "$BERTH_URL/v1/overview?cluster=default" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["tasks"]["running"])')
  [ "$running" -ge $((per * SERVICES)) ] && break
  [ $(($(date +%s) - t0)) -lt "$DEADLINE_S" ] || die "only $running tasks RUNNING after ${DEADLINE_S}s"
  kill -0 "$BERTH_PID" 2>/dev/null || die "the server died"
  sleep 1
done
echo "$running tasks RUNNING on $NODES nodes"

# The peer: nginx with the same index and assets, gzip on, over TLS.
static="$BENCH_TMP/static"
mkdir -p "$static/root/ui" "$static/logs" "$static/tmp"
curl -fsS "$BERTH_URL/ui/" -o "$static/root/ui/index.html" || die "GET /ui/ failed"
assets=$(grep -o '/ui/assets/[0-9a-f]*' "$static/root/ui/index.html" | head -1)
[ -n "$assets" ] || die "/ui/ names no /ui/assets/<hash>/ path"
mkdir -p "$static/root$assets"
(cd web && find . -type f ! -name README.md -exec cp --parents {} "$static/root$assets/" \;)
# nginx's workers run as www-data: they must reach the files.
chmod a+rx "$BENCH_TMP" "$static"
chmod -R a+rX "$static/root"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$static/key.pem" -out "$static/cert.pem" 2>/dev/null
static_port=$(free_port)
cat >"$static/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $static/nginx.pid;
error_log $static/logs/error.log warn;
events { worker_connections 1024; }
http {
  include /etc/nginx/mime.types;
  types { text/javascript js mjs; }
  access_log off;
  client_body_temp_path $static/tmp/body;
  proxy_temp_path $static/tmp/proxy;
  fastcgi_temp_path $static/tmp/fastcgi;
  uwsgi_temp_path $static/tmp/uwsgi;
  scgi_temp_path $static/tmp/scgi;
  gzip on; gzip_comp_level 9; gzip_types text/css text/javascript image/svg+xml application/json;
  server {
    listen 127.0.0.1:$static_port ssl;
    ssl_protocols TLSv1.2;
    ssl_certificate $static/cert.pem;
    ssl_certificate_key $static/key.pem;
    root $static/root;
    location = /ui/ { try_files /ui/index.html =404; }
  }
}
CONF
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
CURL_CA_BUNDLE="$static/cert.pem" launch_nginx "$static" "https://127.0.0.1:$static_port/ui/" static-ui

machine_note
figures=$(BERTH_URL=$BERTH_URL BERTH_TOKEN=$BERTH_TOKEN BERTH_CA=$BERTH_CA BERTH_PID=$BERTH_PID CLK_TCK=$CLK_TCK \
  RUNS=$RUNS VIEWERS=$VIEWERS IDLE_SECONDS=$IDLE_SECONDS STATIC_URL="https://127.0.0.1:$static_port" \
  node bench/dashboard.mjs) || die "bench/dashboard.mjs failed"
echo "$figures"
echo "server peak RSS: $(($(awk '/^VmHWM/ {print $2}' "/proc/$BERTH_PID/status") / 1024)) MiB"
python3 - "$figures" "$NODES" "$running" <<'PY'
import json, sys
f = json.loads(sys.argv[1])
ratio = f["first_render_ms"] / f["static_load_ms"] if f.get("static_load_ms") else 0
print(f"nodes={sys.argv[2]} tasks={sys.argv[3]} first_render_ms={f['first_render_ms']} "
      f"transfer_kib={f['transfer_kib']} sse_lag_ms={f['sse_lag_ms']} "
      f"server_cpu_per_viewer={f['server_cpu_per_viewer']} server_cpu_{f['viewers']}_viewers_pct={f['server_cpu_viewers_pct']} "
      f"static_load_ms={f.get('static_load_ms', 'n/a')} render_vs_static={ratio:.2f}")
PY
