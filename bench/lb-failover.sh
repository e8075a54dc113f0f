#!/usr/bin/env bash
# A target lost under load: four busybox httpd containers on this host's Docker
# engine (fixed loopback host ports) behind berth's proxy (1 worker; passive
# ejection, connect retries) and behind HAProxy 2.6 (nbthread 1, leastconn,
# active checks every 1 s, retries 2 with redispatch), side by side, the same
# containers, the same load: wrk at about RATE (default 1,000) requests/s,
# paced by a delay() script, PHASE_S (default 12) seconds per phase, berth and
# HAProxy taking turns for ROUNDS (default 3) rounds. The pacing is closed-loop
# (each of CONNS connections waits CONNS/RATE s on average between requests),
# so a slow machine offers less: the rate reached is printed (rate=).
#   kill       3 s into the phase a container is killed (docker kill); it is
#              started again after the phase
#   blackhole  3 s into the phase SYNs to a container's host port are dropped
#              (iptables on lo: connects hang); the rule goes after the phase
# Counted per phase: failed requests (non-2xx answers, socket errors and
# timeouts at 5 s). Berth's ejection delay is read from its log: from the event
# to the "target ejected" line.
#
# Measures only; never fails on a timing. Last line:
#   kill_failed= haproxy_kill_failed= blackhole_failed= haproxy_blackhole_failed=
#   kill_eject_ms= blackhole_eject_ms= requests= rate=
# (targets: kill_failed=0, kill_eject_ms <= 1000, blackhole_failed <= haproxy's)
#
#   bench/lb-failover.sh                                 # uses build/berth
#   BERTH=build/release/src/berth ROUNDS=1 bench/lb-failover.sh

source "$(dirname "$0")/common.bash"

RATE=${RATE:-1000}
PHASE_S=${PHASE_S:-12}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}

ensure_tools wrk:wrk curl:curl python3:python3 haproxy:haproxy docker:docker.io iptables:iptables
ensure_berth
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
IMAGE=$(python3 tests/integration/dockerd.py)

# --- the four targets
ports=() names=()
cleanup_targets() {
  for n in "${names[@]}"; do docker rm -f "$n" >/dev/null 2>&1 || true; done
  for p in "${ports[@]}"; do
    while iptables -D INPUT -i lo -p tcp --dport "$p" --syn -j DROP 2>/dev/null; do :; done
  done
}
trap 'cleanup_targets; bench_cleanup' EXIT
for i in 0 1 2 3; do
  p=$(free_port)
  n="bench-failover-$i-$$"
  docker run -d --name "$n" -p "127.0.0.1:$p:8080" "$IMAGE" \
    sh -c "mkdir -p /www && echo target $i > /www/index.html && exec httpd -f -p 8080 -h /www" >/dev/null
  ports+=("$p") names+=("$n")
done
for p in "${ports[@]}"; do
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$p/" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$p/" >/dev/null || die "target on $p does not answer"
done

# --- berth proxy
b_port=$(free_port)
targets=""
for i in 0 1 2 3; do
  targets+="${targets:+,}{\"id\":\"t$i\",\"address\":\"127.0.0.1\",\"port\":${ports[$i]},\"state\":\"healthy\"}"
done
cat >"$BENCH_TMP/proxy.json" <<JSON
{"version": 1,
 "listeners": [{"port": $b_port, "protocol": "HTTP", "address": "127.0.0.1", "defaultTargetGroup": "web"}],
 "targetGroups": [{"name": "web", "protocol": "HTTP", "algorithm": "least_outstanding_requests",
                   "targets": [$targets]}]}
JSON
"$BERTH" proxy --config "$BENCH_TMP/proxy.json" --proxy-threads 1 >"$BENCH_TMP/berth.log" 2>&1 &
BENCH_PIDS+=($!)

# --- HAProxy
h_port=$(free_port)
{
  echo "global"
  echo "  nbthread 1"
  echo "defaults"
  echo "  mode http"
  echo "  timeout connect 3s"
  echo "  timeout client 60s"
  echo "  timeout server 60s"
  echo "  retries 2"
  echo "  option redispatch 1"
  echo "  retry-on conn-failure empty-response"
  echo "frontend web"
  echo "  bind 127.0.0.1:$h_port"
  echo "  default_backend web"
  echo "backend web"
  echo "  balance leastconn"
  echo "  option httpchk GET /"
  for i in 0 1 2 3; do echo "  server t$i 127.0.0.1:${ports[$i]} check inter 1s fall 3 rise 2"; done
} >"$BENCH_TMP/haproxy.cfg"
"$HAPROXY" -db -f "$BENCH_TMP/haproxy.cfg" >"$BENCH_TMP/haproxy.log" 2>&1 &
BENCH_PIDS+=($!)
for u in "http://127.0.0.1:$b_port/" "http://127.0.0.1:$h_port/"; do
  for _ in $(seq 100); do curl -fsS "$u" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "$u" >/dev/null || die "$u does not answer"
done

# CONNS connections, each waiting about CONNS/RATE s between requests.
cat >"$BENCH_TMP/pace.lua" <<LUA
local mean_ms = $CONNS * 1000 / $RATE
function delay() return mean_ms * (0.5 + math.random()) end
LUA

now_ms() { date +%s%3N; }

# phase WHO PORT EVENT: one phase against the proxy on PORT; prints "failed requests eject_ms".
phase() {
  local who=$1 port=$2 event=$3 victim=$(((RANDOM % 4))) out="$BENCH_TMP/wrk-$1-$3-$RANDOM.txt"
  local lines_before t_event eject=-1
  lines_before=$(wc -l <"$BENCH_TMP/berth.log")
  timeout $((PHASE_S + 30)) wrk -t1 -c"$CONNS" -d"${PHASE_S}s" --timeout 5s -s "$BENCH_TMP/pace.lua" \
    "http://127.0.0.1:$port/" >"$out" 2>&1 &
  local wpid=$!
  sleep 3
  t_event=$(now_ms)
  if [ "$event" = kill ]; then
    docker kill "${names[$victim]}" >/dev/null
  else
    iptables -I INPUT -i lo -p tcp --dport "${ports[$victim]}" --syn -j DROP
  fi
  wait "$wpid" || { cat "$out" >&2; die "wrk failed"; }
  if [ "$event" = kill ]; then
    docker start "${names[$victim]}" >/dev/null
    for _ in $(seq 100); do curl -fsS "http://127.0.0.1:${ports[$victim]}/" >/dev/null 2>&1 && break; sleep 0.1; done
  else
    iptables -D INPUT -i lo -p tcp --dport "${ports[$victim]}" --syn -j DROP
  fi
  if [ "$who" = berth ]; then
    local line
    line=$(tail -n +"$((lines_before + 1))" "$BENCH_TMP/berth.log" | grep -m1 'msg="target ejected"' || true)
    if [ -n "$line" ]; then
      local ts
      ts=$(sed -n 's/^ts=\([^ ]*\).*/\1/p' <<<"$line")
      eject=$(($(date -d "$ts" +%s%3N) - t_event))
    fi
  fi
  local non2xx sockerr reqs
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
  sockerr=$(awk '/Socket errors:/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}' "$out")
  reqs=$(awk '/requests in/ {print $1}' "$out")
  grep -E 'Non-2xx|Socket errors' "$out" | sed "s/^/  $who $event: /" >&2 || true
  echo "$((${non2xx:-0} + ${sockerr:-0})) $eject ${reqs:-0}"
  sleep 2  # targets back, ejections over, checks up again
}

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

machine_note
declare -A failed eject
total=0 seconds=0
for round in $(seq "$ROUNDS"); do
  order=(berth haproxy)
  [ $((round % 2)) = 0 ] && order=(haproxy berth)
  for event in kill blackhole; do
    for who in "${order[@]}"; do
      port=$b_port
      [ "$who" = haproxy ] && port=$h_port
      read -r f e r < <(phase "$who" "$port" "$event")
      failed[$who-$event]+=" $f"
      eject[$who-$event]+=" $e"
      total=$((total + r)) seconds=$((seconds + PHASE_S))
      echo "round $round $event $who: $f failed of $r$([ "$who" = berth ] && echo ", ejected after ${e} ms")"
    done
  done
done
# shellcheck disable=SC2086
echo "kill_failed=$(median ${failed[berth-kill]}) haproxy_kill_failed=$(median ${failed[haproxy-kill]})" \
  "blackhole_failed=$(median ${failed[berth-blackhole]}) haproxy_blackhole_failed=$(median ${failed[haproxy-blackhole]})" \
  "kill_eject_ms=$(median ${eject[berth-kill]}) blackhole_eject_ms=$(median ${eject[berth-blackhole]}) requests=$total" \
  "rate=$((total / seconds))"
