#!/usr/bin/env bash
# Deploying 50 replicas on this host's Docker engine, side by side, same engine,
# same image, clean state between runs:
#   (a) berth: `POST /v1/services` with desiredCount 50 (a server and one
#       `berth agent` process, so the agent's own RSS can be read);
#   (b) Docker Swarm: `docker service create --replicas 50` after
#       `docker swarm init --advertise-addr 127.0.0.1`;
#   (c) the engine's own floor: 50 `docker run -d`, 8 at a time.
# Each time runs from the request until `docker ps` shows all 50 running. The
# three run ROUNDS times (default 3), their order turned by one each round so no
# one always goes first on a cold engine; the figures are the medians.
# The bench inits its own swarm and leaves it after; on an engine that is in a
# swarm already it stops without touching it.
#
# Last line: berth_s=<median s> swarm_s=<s> raw_s=<s> vs_swarm=<berth/swarm> vs_raw=<berth/raw>
#            agent_rss_mb=<m> rounds=<n> berth_all=<s,s,s> swarm_all=... raw_all=...
source "$(dirname "$0")/common.bash"

REPLICAS=${REPLICAS:-50}
ROUNDS=${ROUNDS:-3}
DEADLINE_S=${DEADLINE_S:-300}

ensure_tools curl:curl python3:python3 docker:docker.io
ensure_berth
IMAGE=$(python3 tests/integration/dockerd.py)   # starts dockerd if needed; builds the busybox image

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
running_count() { docker ps -q --filter "$1" | wc -l; }

# wait_running FILTER: until `docker ps` shows REPLICAS running containers matching FILTER.
wait_running() {
  local deadline=$((SECONDS + DEADLINE_S))
  while [ "$(running_count "$1")" -lt "$REPLICAS" ]; do
    [ $SECONDS -lt $deadline ] || die "only $(running_count "$1") of $REPLICAS running after ${DEADLINE_S}s ($1)"
    sleep 0.05
  done
}

# remove_all FILTER: removes every container matching FILTER and waits until none is left.
remove_all() {
  local ids
  ids=$(docker ps -aq --filter "$1")
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
  for _ in $(seq 600); do [ -z "$(docker ps -aq --filter "$1")" ] && return 0; sleep 0.1; done
  die "containers matching $1 were not removed"
}

SWARM_OURS=0
cleanup_engine() {
  if [ "$SWARM_OURS" = 1 ]; then
    docker service rm bench-swarm >/dev/null 2>&1 || true
    docker swarm leave --force >/dev/null 2>&1 || true
    SWARM_OURS=0
  fi
  remove_all label=bench.raw=1
  remove_all label=berth.service=bench-deploy
  remove_all label=com.docker.swarm.service.name=bench-swarm
}
swarm_state=$(docker info --format '{{.Swarm.LocalNodeState}}')
[ "$swarm_state" = inactive ] ||
  die "this engine is in a swarm already ($swarm_state); the bench makes and leaves its own, so it stops here"
trap 'cleanup_engine; bench_cleanup' EXIT
cleanup_engine

machine_note
echo "engine: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'), image $IMAGE, $REPLICAS replicas"

# --- (c) the engine's own floor ---
run_raw() {
  t0=$(now)
  seq "$REPLICAS" | xargs -P 8 -I{} docker run -d --label bench.raw=1 --name "bench-raw-{}" "$IMAGE" sleep 3600 >/dev/null
  wait_running label=bench.raw=1
  raw_s=$(elapsed "$t0" "$(now)")
  echo "raw docker run: ${raw_s}s"
  remove_all label=bench.raw=1
  raw_all+=("$raw_s")
}

# --- (a) berth ---
run_berth() {
  start_berth "deploy-${#berth_all[@]}"
  auth=(-H "Authorization: Bearer $BERTH_TOKEN")
  api() { curl -fsS --max-time 60 "${auth[@]}" "$@"; }
  agent_token=$(api -X POST "$BERTH_URL/v1/tokens" -d '{"role":"agent"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"]["secret"])')
  "$BERTH" agent --server "$BERTH_URL" --token "$agent_token" --state-dir "$BENCH_TMP/agent-${#berth_all[@]}" --log-level warn \
    >"$BENCH_TMP/agent.out" 2>"$BENCH_TMP/agent.err" &
  AGENT_PID=$!
  BENCH_PIDS+=("$AGENT_PID")
  for _ in $(seq 300); do
    n=$(api "$BERTH_URL/v1/nodes" | python3 -c 'import json,sys; print(sum(n["agentConnected"] for n in json.load(sys.stdin)["containerInstances"]))')
    [ "$n" -ge 1 ] && break
    sleep 0.1
  done
  [ "$n" -ge 1 ] || die "the agent did not connect: $(tail -3 "$BENCH_TMP/agent.err")"
  api -X POST "$BERTH_URL/v1/taskdefinitions" -d "{\"family\":\"bench-deploy\",\"containerDefinitions\":[{\"name\":\"main\",\"image\":\"$IMAGE\",\"memory\":16,\"command\":[\"sleep\",\"3600\"],\"stopTimeout\":1}]}" >/dev/null
  t0=$(now)
  api -X POST "$BERTH_URL/v1/services" -d "{\"serviceName\":\"bench-deploy\",\"taskDefinition\":\"bench-deploy\",\"desiredCount\":$REPLICAS}" >/dev/null
  wait_running label=berth.service=bench-deploy
  berth_s=$(elapsed "$t0" "$(now)")
  echo "berth service create: ${berth_s}s"
  sleep 2  # let reports settle before reading the agent's memory
  agent_rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT_PID/status")
  agent_rss_mb=$(awk -v k="$agent_rss_kb" 'BEGIN {printf "%.1f", k / 1024}')
  echo "berth agent RSS with $REPLICAS tasks: ${agent_rss_mb} MB"
  stop_pid "$AGENT_PID"
  stop_pid "$BERTH_PID"
  remove_all label=berth.service=bench-deploy
  berth_all+=("$berth_s")
  rss_all+=("$agent_rss_mb")
}

# --- (b) Docker Swarm ---
run_swarm() {
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
  SWARM_OURS=1
  t0=$(now)
  docker service create --detach --name bench-swarm --replicas "$REPLICAS" "$IMAGE" sleep 3600 >/dev/null
  wait_running label=com.docker.swarm.service.name=bench-swarm
  swarm_s=$(elapsed "$t0" "$(now)")
  echo "docker service create: ${swarm_s}s"
  cleanup_engine
  swarm_all+=("$swarm_s")
}

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
joined() { local IFS=,; echo "$*"; }

raw_all=() berth_all=() swarm_all=() rss_all=()
parts=(run_raw run_berth run_swarm)
for round in $(seq "$ROUNDS"); do
  echo "-- round $round"
  for i in 0 1 2; do "${parts[$(((round - 1 + i) % 3))]}"; done
done
berth_s=$(median "${berth_all[@]}")
swarm_s=$(median "${swarm_all[@]}")
raw_s=$(median "${raw_all[@]}")
agent_rss_mb=$(median "${rss_all[@]}")

vs_swarm=$(awk -v a="$berth_s" -v b="$swarm_s" 'BEGIN {printf "%.2f", a / b}')
vs_raw=$(awk -v a="$berth_s" -v b="$raw_s" 'BEGIN {printf "%.2f", a / b}')
echo "berth_s=$berth_s swarm_s=$swarm_s raw_s=$raw_s vs_swarm=$vs_swarm vs_raw=$vs_raw agent_rss_mb=$agent_rss_mb rounds=$ROUNDS berth_all=$(joined "${berth_all[@]}") swarm_all=$(joined "${swarm_all[@]}") raw_all=$(joined "${raw_all[@]}")"
