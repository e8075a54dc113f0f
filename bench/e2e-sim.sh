#!/usr/bin/env bash
# End to end with everything real but the containers: the server, and
# `berth agent --simulate NODES` speaking the real agent protocol over loopback.
# One service is scaled from 0 to TASKS; the clock runs from the scale request
# until the server reports every task RUNNING — reported by the agents and
# committed to disk. Prints the server's peak RSS too.
#
# Peer figures for scale (not run here: they need their own clusters): Nomad's C1M
# placed 1,000,000 containers at about 3,750 per second on 5 servers; kube-scheduler's
# CI floor is about 700 pods per second at 5,000 nodes.
#
# SERVERS=3 (or 5) runs the same through a cluster of servers on loopback: the
# first bootstraps, the others join it (berth server --join) before the nodes
# connect; every server applies every entry, so on one machine they share its
# cores. The leader's and the followers' peak RSS are printed. CLUSTER_ARGS
# (default --election-timeout 3s) go to every server of such a cluster: while
# 10,000 agents register, the leader's loop stalls past the default 500 ms
# (issue 18), the followers elect another leader, and the simulator, which
# talks to one server, stops there.
#
# SERVER_ARGS and SIM_ARGS add flags to `berth server` and to the simulator
# (e.g. SERVER_ARGS=--no-write-thread, SIM_ARGS="--report-connections 4000");
# VERBOSE=1 prints RUNNING and PENDING at every poll.
#
# While the scale-up runs, bench/api_probe.py polls `GET /healthz` and
# `GET /v1/services/e2e` every 100 ms from two clients (one kept-alive connection,
# one new TLS connection per request) and times every answer; a failed request is
# counted in api_errors, not in the latencies. Its per-client figures are printed
# before the last line, with the kernel's listen-queue overflows over the
# scale-up and the benchmark's own failed polls of the service (retried).
# bytes_per_task is the growth of the server's VmRSS from the scale request to
# the end, divided by TASKS. API_PROBE_SAMPLES=<path> keeps every request's start
# time and latency there.
#
# Last line: nodes=<n> tasks=<n> servers=<n> seconds=<s> tasks_per_s=<r> server_rss_mb=<m>
#   api_p50_ms=<ms> api_p99_ms=<ms> api_max_ms=<ms> api_errors=<n> bytes_per_task=<b>
# (server_rss_mb is the peak, VmHWM; the api_* figures cover both probe clients,
# nearest-rank percentiles.)
source "$(dirname "$0")/common.bash"

NODES=${NODES:-10000}
TASKS=${TASKS:-100000}
SERVERS=${SERVERS:-1}
CLUSTER_ARGS=${CLUSTER_ARGS---election-timeout 3s}
[ "$SERVERS" -gt 1 ] || CLUSTER_ARGS=""

DEADLINE_S=${DEADLINE_S:-600}

ensure_tools curl:curl python3:python3
ensure_berth

start_berth e2e --node-lost-after 120s --max-connections $((NODES + 5000)) $CLUSTER_ARGS ${SERVER_ARGS:-}
auth=(-H "Authorization: Bearer $BERTH_TOKEN")
api() { curl -fsS --max-time 60 "${auth[@]}" "$@"; }

PEER_PIDS=()
if [ "$SERVERS" -gt 1 ]; then
  # shellcheck disable=SC2086 # CLUSTER_ARGS and SERVER_ARGS are flag lists
  join_peers $((SERVERS - 1)) $CLUSTER_ARGS ${SERVER_ARGS:-}
  echo "a cluster of $SERVERS servers: $(api "$BERTH_URL/v1/servers" |
    python3 -c 'import json,sys; v = json.load(sys.stdin); print(", ".join(s["role"] + (" (leader)" if s["leader"] else "") for s in v["servers"]))')"
fi

agent_token=$(api -X POST "$BERTH_URL/v1/tokens" -d '{"role":"agent"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["token"]["secret"])')

"$BERTH" agent --simulate "$NODES" --server "$BERTH_URL" --token "$agent_token" --log-level warn ${SIM_ARGS:-} \
  >"$BENCH_TMP/sim.out" 2>"$BENCH_TMP/sim.err" &
SIM_PID=$!
BENCH_PIDS+=("$SIM_PID")

echo "waiting for $NODES simulated nodes to connect..."
t_nodes=$(date +%s.%N)
for _ in $(seq 600); do
  # While thousands of agents connect, the server may drop a new connection in
  # its handshake (curl: SSL_ERROR_SYSCALL): that poll counts none, the next one retries.
  connected=$(api "$BERTH_URL/v1/nodes?cluster=default" 2>/dev/null |
    python3 -c 'import json,sys; print(sum(n["agentConnected"] for n in json.load(sys.stdin)["containerInstances"]))' \
      2>/dev/null) || connected=0
  [ "$connected" -ge "$NODES" ] && break
  kill -0 "$SIM_PID" 2>/dev/null || die "the simulator died: $(tail -3 "$BENCH_TMP/sim.err")"
  sleep 1
done
[ "$connected" -ge "$NODES" ] || die "only $connected of $NODES nodes connected"
echo "nodes connected in $(python3 -c "import time; print(round(time.time() - $t_nodes, 1))") s"

api -X POST "$BERTH_URL/v1/taskdefinitions" -d '{"family":"e2e","containerDefinitions":[
  {"name":"app","image":"busybox","cpu":16,"memory":32,"essential":true}]}' >/dev/null
api -X POST "$BERTH_URL/v1/services" -d '{"serviceName":"e2e","taskDefinition":"e2e","desiredCount":0}' >/dev/null

cpu_s() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }  # user + system, in seconds
server_cpu0=$(cpu_s "$BERTH_PID"); sim_cpu0=$(cpu_s "$SIM_PID")
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
rss0_kb=$(rss_kb "$BERTH_PID")
# Connections the kernel dropped because a listen queue was full (this network
# namespace's, every socket's: other processes' too).
listen_overflows() { awk '/^TcpExt:/ {if (!h) {split($0, k); h = 1} else {for (i = 2; i <= NF; i++) if (k[i] == "ListenOverflows") print $i}}' /proc/net/netstat; }
overflows0=$(listen_overflows)
BERTH_TOKEN=$BERTH_TOKEN python3 bench/api_probe.py "$BERTH_URL" e2e "$BERTH_CA" >"$BENCH_TMP/probe.out" 2>"$BENCH_TMP/probe.err" &
PROBE_PID=$!
BENCH_PIDS+=("$PROBE_PID")
for _ in $(seq 600); do grep -q started "$BENCH_TMP/probe.err" && break; sleep 0.05; done
grep -q started "$BENCH_TMP/probe.err" || die "the API probe did not start: $(tail -3 "$BENCH_TMP/probe.err")"
t0=$(date +%s.%N)
api -X PATCH "$BERTH_URL/v1/services/e2e" -d "{\"desiredCount\":$TASKS}" >/dev/null
running=0 poll_errors=0
while :; do
  # A poll that fails (the server dropped its new connection: see api_errors) is
  # counted and retried.
  if ! read -r running pending < <(api -w "" "$BERTH_URL/v1/services/e2e" 2>/dev/null |
    python3 -c 'import json,sys; s = json.load(sys.stdin)["service"]; print(s["runningCount"], s["pendingCount"])' \
      2>/dev/null); then
    poll_errors=$((poll_errors + 1))
    running=0 pending=?
  fi
  [ -n "${VERBOSE:-}" ] && echo "  $(python3 -c "import time; print(round(time.time() - $t0, 1))") s: $running RUNNING, $pending PENDING"
  [ "$running" -ge "$TASKS" ] && break
  now=$(date +%s.%N)
  python3 -c "import sys; sys.exit(0 if $now - $t0 < $DEADLINE_S else 1)" || die "only $running of $TASKS RUNNING after ${DEADLINE_S}s"
  kill -0 "$BERTH_PID" 2>/dev/null || die "the server died"
  for p in "${PEER_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || die "a follower died"; done
  sleep 0.2
done
t1=$(date +%s.%N)
rss1_kb=$(rss_kb "$BERTH_PID")
overflows=$(($(listen_overflows) - overflows0))
stop_pid "$PROBE_PID"
grep -q '^api_requests=' "$BENCH_TMP/probe.out" || die "the API probe printed no figures: $(tail -3 "$BENCH_TMP/probe.err")"
probe_figures=$(grep '^api_requests=' "$BENCH_TMP/probe.out" | sed 's/^api_requests=[0-9]* //')
bytes_per_task=$(((rss1_kb - rss0_kb) * 1024 / TASKS))
server_cpu=$(python3 -c "print(round($(cpu_s "$BERTH_PID") - $server_cpu0, 2))")
sim_cpu=$(python3 -c "print(round($(cpu_s "$SIM_PID") - $sim_cpu0, 2))")

rss_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$BERTH_PID/status")
sim_rss_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$SIM_PID/status")
seconds=$(python3 -c "print(round($t1 - $t0, 2))")
rate=$(python3 -c "print(round($TASKS / ($t1 - $t0)))")
echo "simulator peak RSS: $((sim_rss_kb / 1024)) MiB; CPU during the scale-up: server ${server_cpu} s, simulator ${sim_cpu} s"
api "$BERTH_URL/metrics" | awk '/^berth_agent_desired_(lines|bytes)_total|^berth_store_commit_(batch_size|duration_seconds)_(sum|count)/ {print "  " $0}'

for p in "${PEER_PIDS[@]}"; do
  echo "follower pid $p: peak RSS $(($(awk '/^VmHWM/ {print $2}' "/proc/$p/status") / 1024)) MiB"
done
echo "listen-queue overflows during the scale-up (kernel, whole network namespace): $overflows"
[ "$poll_errors" -eq 0 ] || echo "the benchmark's own polls of the service: $poll_errors failed"
grep '^api probe ' "$BENCH_TMP/probe.out"
echo "nodes=$NODES tasks=$TASKS servers=$SERVERS seconds=$seconds tasks_per_s=$rate server_rss_mb=$((rss_kb / 1024))" \
  "$probe_figures bytes_per_task=$bytes_per_task"
