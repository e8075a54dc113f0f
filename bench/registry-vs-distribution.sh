#!/usr/bin/env bash
# The built-in registry against Debian's docker-registry (CNCF distribution 2.8),
# both on this machine in this run, driven by the same docker client: an image of
# about 200 MB in 5 layers of random data (built locally FROM scratch) is pushed
# to each, then pulled from each after every local copy was removed. Push and
# pull are timed with the wall clock; peak RSS is each server's VmHWM at the end.
# Runs ROUNDS rounds (default 2), alternating which server goes first, with a fresh
# image per round; the figure per server is the mean over rounds.
#
# Measures only; never fails on a timing. Exits non-zero if something broke.
# Last line: push_ratio=<berth/dist> pull_ratio=<berth/dist> rss_ratio=<berth/dist>
# (targets: push and pull ratios <= 1.0, rss ratio <= 0.5)
#
#   bench/registry-vs-distribution.sh
#   BERTH=build-reg/release/src/berth bench/registry-vs-distribution.sh

source "$(dirname "$0")/common.bash"

ROUNDS=${ROUNDS:-2}
LAYERS=${LAYERS:-5}
LAYER_MB=${LAYER_MB:-40}

ensure_tools docker:docker.io docker-registry:docker-registry curl:curl python3:python3
ensure_berth
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd first)"
DIST=$(command -v docker-registry || echo /usr/bin/docker-registry)

# A docker client configuration of our own: the login stays out of ~/.docker.
export DOCKER_CONFIG="$BENCH_TMP/docker-config"
mkdir -p "$DOCKER_CONFIG"

# --- distribution, no auth, filesystem storage
dist_port=$(free_port)
mkdir -p "$BENCH_TMP/dist/data"
cat >"$BENCH_TMP/dist/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $BENCH_TMP/dist/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$dist_port
EOF
"$DIST" serve "$BENCH_TMP/dist/config.yml" >"$BENCH_TMP/dist/log" 2>&1 &
dist_pid=$!
BENCH_PIDS+=("$dist_pid")
pin_server "$dist_pid"
for _ in $(seq 100); do
  curl -fsS --max-time 1 "http://127.0.0.1:$dist_port/v2/" >/dev/null 2>&1 && break
  kill -0 "$dist_pid" 2>/dev/null || break
  sleep 0.1
done
curl -fsS --max-time 5 "http://127.0.0.1:$dist_port/v2/" >/dev/null || { cat "$BENCH_TMP/dist/log" >&2; die "docker-registry did not start"; }

# --- berth
# Plain HTTP, as Debian's docker-registry here is (the peer is measured without
# TLS, so berth is too; bench/tls.sh measures what TLS costs).
start_berth registry --no-agent --registry-gc-interval 0 --no-tls
berth_pid=$BERTH_PID
berth_host=$BERTH_HOST
echo "$BERTH_TOKEN" | docker login "$berth_host" -u bench --password-stdin >/dev/null 2>&1 || die "docker login to berth failed"

declare -A hosts=([berth]="$berth_host" [dist]="127.0.0.1:$dist_port")
declare -A push_sum=([berth]=0 [dist]=0) pull_sum=([berth]=0 [dist]=0)

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
add() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a + b}'; }

# drop_local REF: removes the image REF names and every other name it has, so a
# pull must fetch every layer.
drop_local() {
  local id
  id=$(docker image inspect --format '{{.Id}}' "$1" 2>/dev/null) || return 0
  docker rmi -f "$id" >/dev/null 2>&1 || true
}

machine_note
echo "image: $LAYERS layers of ${LAYER_MB} MB of random data, FROM scratch; $ROUNDS round(s)"
for round in $(seq "$ROUNDS"); do
  ctx="$BENCH_TMP/ctx$round"
  mkdir -p "$ctx"
  echo "FROM scratch" >"$ctx/Dockerfile"
  for i in $(seq "$LAYERS"); do
    head -c $((LAYER_MB * 1024 * 1024)) /dev/urandom >"$ctx/layer$i"
    echo "COPY layer$i /layer$i" >>"$ctx/Dockerfile"
  done
  src="berth-bench/registry:$round-$$"
  docker build -q -t "$src" "$ctx" >/dev/null 2>&1 || die "docker build failed"
  rm -rf "$ctx"
  order=(berth dist)
  [ $((round % 2)) = 0 ] && order=(dist berth)
  for who in "${order[@]}"; do
    ref="${hosts[$who]}/bench/app:$round"
    docker tag "$src" "$ref"
    t0=$(now)
    docker push "$ref" >"$BENCH_TMP/push-$who.log" 2>&1 || { cat "$BENCH_TMP/push-$who.log" >&2; die "push to $who failed"; }
    t1=$(now)
    push_sum[$who]=$(add "${push_sum[$who]}" "$(elapsed "$t0" "$t1")")
    echo "round $round: push to $who $(elapsed "$t0" "$t1") s"
  done
  drop_local "$src"
  for who in "${order[@]}"; do
    ref="${hosts[$who]}/bench/app:$round"
    drop_local "$ref"
    t0=$(now)
    docker pull "$ref" >"$BENCH_TMP/pull-$who.log" 2>&1 || { cat "$BENCH_TMP/pull-$who.log" >&2; die "pull from $who failed"; }
    t1=$(now)
    pull_sum[$who]=$(add "${pull_sum[$who]}" "$(elapsed "$t0" "$t1")")
    echo "round $round: pull from $who $(elapsed "$t0" "$t1") s"
    drop_local "$ref"
  done
done
kill -0 "$berth_pid" 2>/dev/null || die "berth died during the run"
kill -0 "$dist_pid" 2>/dev/null || die "docker-registry died during the run"

hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
berth_rss=$(hwm "$berth_pid")
dist_rss=$(hwm "$dist_pid")
mean() { awk -v s="$1" -v n="$ROUNDS" 'BEGIN {printf "%.2f", s / n}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
bp=$(mean "${push_sum[berth]}"); dp=$(mean "${push_sum[dist]}")
bl=$(mean "${pull_sum[berth]}"); dl=$(mean "${pull_sum[dist]}")
echo "berth: push ${bp} s, pull ${bl} s, peak RSS ${berth_rss} KiB"
echo "distribution: push ${dp} s, pull ${dl} s, peak RSS ${dist_rss} KiB"
docker logout "$berth_host" >/dev/null 2>&1 || true
echo "push_ratio=$(ratio "$bp" "$dp") pull_ratio=$(ratio "$bl" "$dl") rss_ratio=$(ratio "$berth_rss" "$dist_rss")"
