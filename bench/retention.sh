#!/usr/bin/env bash
# Retention: a service that crash-loops for LIFETIMES task lifetimes (every task
# fails as it starts: `berth agent --simulate --fail-rate 1`), run twice side by
# side on this machine: berth with a short retention (RETENTION, and the default
# bound of 100 stopped tasks per service), and berth keeping everything (the
# behaviour before retention existed: a retention of 10000h and no bound per
# service). Samples, every few seconds, the tasks the server holds, its RSS and
# the size of state.db with its WAL; then keeps the retained server running
# for RETENTION more, with the loop stopped, to show everything goes.
#
# What flat means: on the retained side, the tasks held, RSS and state.db stop
# growing once the retention is reached, however many more lifetimes follow;
# on the keep-all side they grow with every lifetime.
#
# Last line: lifetimes= tasks_held_end= tasks_held_keepall= rss_mb_end= rss_mb_keepall= db_mb_end=
#            db_mb_keepall= wal_mb_end= wal_mb_keepall= rss_growth_second_half_mb= db_growth_second_half_mb=
#            tasks_held_after_retention= (growth: of the retained side, between the middle and the end of
#            its run; db: state.db itself, wal: its write-ahead log, whose size follows the write rate)
#
#   bench/retention.sh                      # LIFETIMES=100000 RETENTION=20s
#   LIFETIMES=20000 bench/retention.sh
source "$(dirname "$0")/common.bash"

LIFETIMES=${LIFETIMES:-100000}
RETENTION=${RETENTION:-20s}
NODES=${NODES:-20}
DESIRED=${DESIRED:-200}
SAMPLE_S=${SAMPLE_S:-5}

ensure_tools curl:curl python3:python3
ensure_berth

metric() { curl -fsS --max-time 30 -H "Authorization: Bearer $BERTH_TOKEN" "$BERTH_URL/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
rss_mb() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
file_mb() { awk -v b="$( [ -f "$1" ] && stat -c %s "$1" || echo 0)" 'BEGIN {printf "%.1f", b / 1048576}'; }

# run NAME SERVER_FLAGS...: the crash loop until LIFETIMES tasks were placed;
# prints samples and sets HELD, RSS, DB (at the end) and MID_RSS, MID_DB (half way).
run() {
  local name=$1; shift
  start_berth "$name" --node-lost-after 120s "$@"
  local data="$BENCH_TMP/$name/data"
  local auth=(-H "Authorization: Bearer $BERTH_TOKEN")
  local token
  token=$(curl -fsS "${auth[@]}" -X POST "$BERTH_URL/v1/tokens" -d '{"role":"agent"}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"]["secret"])')
  "$BERTH" agent --simulate "$NODES" --fail-rate 1 --start-delay-ms 10 --server "$BERTH_URL" --token "$token" \
    --id-prefix "$name" --log-level error >"$BENCH_TMP/$name/sim.out" 2>&1 &
  SIM_PID=$!
  BENCH_PIDS+=("$SIM_PID")
  for _ in $(seq 120); do
    n=$(curl -fsS "${auth[@]}" "$BERTH_URL/v1/nodes" |
      python3 -c 'import json,sys; print(sum(n["agentConnected"] for n in json.load(sys.stdin)["containerInstances"]))')
    [ "$n" -ge "$NODES" ] && break
    sleep 0.5
  done
  [ "$n" -ge "$NODES" ] || die "$name: only $n of $NODES nodes connected"
  curl -fsS "${auth[@]}" -X POST "$BERTH_URL/v1/taskdefinitions" -d '{"family":"loop","containerDefinitions":[
    {"name":"app","image":"busybox","cpu":8,"memory":8,"essential":true}]}' >/dev/null
  curl -fsS "${auth[@]}" -X POST "$BERTH_URL/v1/services" \
    -d "{\"serviceName\":\"loop\",\"taskDefinition\":\"loop\",\"desiredCount\":$DESIRED}" >/dev/null
  local t0 placed=0 mid_done=0
  t0=$(date +%s)
  printf '%-8s %8s %10s %10s %8s %8s %8s\n' "$name" seconds placed held rss_mb db_mb wal_mb
  while [ "${placed%.*}" -lt "$LIFETIMES" ]; do
    sleep "$SAMPLE_S"
    kill -0 "$BERTH_PID" 2>/dev/null || die "$name: the server died"
    placed=$(metric berth_tasks_placed)
    HELD=$(metric berth_state_tasks)
    RSS=$(rss_mb "$BERTH_PID")
    DB=$(file_mb "$data/state.db")
    WAL=$(file_mb "$data/state.db-wal")
    printf '%-8s %8s %10.0f %10.0f %8s %8s %8s\n' "$name" $(($(date +%s) - t0)) "$placed" "$HELD" "$RSS" "$DB" "$WAL"
    if [ "$mid_done" = 0 ] && [ "${placed%.*}" -ge $((LIFETIMES / 2)) ]; then
      MID_RSS=$RSS MID_DB=$DB mid_done=1
    fi
  done
  curl -fsS "${auth[@]}" -X PATCH "$BERTH_URL/v1/services/loop" -d '{"desiredCount":0}' >/dev/null
  # The nodes report the last tasks STOPPED before they go.
  for _ in $(seq 120); do
    live=$(curl -fsS "${auth[@]}" "$BERTH_URL/v1/services/loop" |
      python3 -c 'import json,sys; s=json.load(sys.stdin)["service"]; print(s["runningCount"] + s["pendingCount"])')
    [ "$live" = 0 ] && break
    sleep 0.5
  done
  stop_pid "$SIM_PID"
}

machine_note
echo "workload: $NODES simulated nodes, a service of $DESIRED tasks that all fail as they start, until $LIFETIMES tasks were placed"

run keepall --task-retention 10000h --stopped-tasks-per-service 0
held_keepall=$HELD rss_keepall=$RSS db_keepall=$DB wal_keepall=$WAL
stop_pid "$BERTH_PID"

run kept --task-retention "$RETENTION"
held_end=$HELD rss_end=$RSS db_end=$DB wal_end=$WAL
rss_growth=$(awk -v a="$MID_RSS" -v b="$RSS" 'BEGIN {printf "%.1f", b - a}')
db_growth=$(awk -v a="$MID_DB" -v b="$DB" 'BEGIN {printf "%.1f", b - a}')

# The loop is stopped: after the retention, nothing stopped is left.
secs=$(python3 -c "import re,sys; m=re.fullmatch(r'(\d+)(ms|s|m|h)', '$RETENTION'); print(int(m.group(1)) * {'ms':0.001,'s':1,'m':60,'h':3600}[m.group(2)])")
sleep "$(python3 -c "print($secs + 3)")"
held_after=$(metric berth_state_tasks)
echo "kept: $RETENTION after the loop stopped, the server holds $held_after tasks"

echo "lifetimes=$LIFETIMES tasks_held_end=$held_end tasks_held_keepall=$held_keepall rss_mb_end=$rss_end" \
  "rss_mb_keepall=$rss_keepall db_mb_end=$db_end db_mb_keepall=$db_keepall wal_mb_end=$wal_end wal_mb_keepall=$wal_keepall" \
  "rss_growth_second_half_mb=$rss_growth db_growth_second_half_mb=$db_growth tasks_held_after_retention=$held_after"
