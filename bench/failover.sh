#!/usr/bin/env bash
# Leader failover: how fast a three-server berth cluster on 127.0.0.1 acknowledges
# writes again after kill -9 of its leader, and whether an acknowledged write is
# ever lost; beside it, in the same run, a three-member etcd cluster (Debian's
# etcd-server, its default heartbeat 100 ms and election timeout 1000 ms; berth
# at its default --election-timeout 500ms).
#
# One writer (bench/failover.py) sends one write at a time, each a unique name,
# REQUEST_TIMEOUT each, to the leader: POST /v1/clusters to berth over TLS (its
# 307 followed to the leader; a refusal, a timeout or 503 NoLeader moves on to
# the next server), POST /v3/kv/put through etcd's HTTP gateway (plain HTTP; a
# follower forwards to its leader). CYCLES times: once the leader and its term
# have held for SETTLE_SECONDS, kill -9 it; failover = the time from the kill to
# the first acknowledgement, by another server, of a write sent after the kill;
# restart the killed server on its data dir and port, wait until it is within
# LAG_OK entries. At the end, acked_lost = acknowledged names (201) that the
# leader's GET /v1/clusters lacks.
#
# Measures only; never fails on a timing. Exits non-zero if something broke (a
# server did not start or died, no leader or no acknowledged write within 30 s
# of a kill, a restarted server that did not catch up in 60 s), and exits 1 too
# when berth lost an acknowledged write (acked_lost > 0): a correctness failure,
# not a timing. etcd's own lost writes are printed, not judged.
# Last line: failover_p50_s= failover_max_s= acked_lost= cycles= acked=
#   etcd_failover_p50_s= etcd_failover_max_s= ratio_p50_etcd_over_berth=
#   (etcd figures `na` when etcd-server is not installable, or ETCD=0;
#    targets: failover_p50_s <= 1, failover_max_s <= 2, acked_lost = 0)
#
# NETNS=1 runs each server in a network namespace of its own on a bridge (real
# addresses, port 7070 for berth, 2379/2380 for etcd; tests/integration/netns.py),
# where the machine allows it (root, iproute2, iptables); the last line then
# also says netns=1.
#
#   bench/failover.sh                    # uses build/berth (built if missing)
#   CYCLES=3 BERTH=/tmp/berth bench/failover.sh
#   NETNS=1 bench/failover.sh

source "$(dirname "$0")/common.bash"

CYCLES=${CYCLES:-10}
ETCD_CYCLES=${ETCD_CYCLES:-$CYCLES}
ETCD=${ETCD:-1}                         # 0: berth alone
REQUEST_TIMEOUT=${REQUEST_TIMEOUT:-0.25} # per write; a longer one rounds etcd's figure up (README)
SETTLE_SECONDS=${SETTLE_SECONDS:-1}     # leader and term unchanged this long before a kill
LAG_OK=${LAG_OK:-10}                    # entries a restarted server may trail by and be caught up
LOG_LEVEL=${LOG_LEVEL:-info}
NETNS=${NETNS:-0}
netns_flag=()
[ "$NETNS" = 1 ] && netns_flag=(--netns)

ensure_tools python3:python3
ensure_berth
etcd_note=""
if [ "$ETCD" != 1 ]; then
  etcd_note="etcd skipped (ETCD=$ETCD)"
elif ! (ensure_tools etcd:etcd-server); then
  etcd_note="etcd-server is not installable here"
fi

# The servers are the driver's children; should the driver itself be killed,
# the pids it keeps listed go here.
end_listed() {
  cat "$BENCH_TMP"/*.pids 2>/dev/null | while read -r pid; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap 'end_listed; bench_cleanup' EXIT

# run_driver NAME BIN CYCLES: runs bench/failover.py against one kind of cluster;
# sets RC (0 fine, 1 an acked write lost) and dies if something broke.
run_driver() {
  local name=$1 bin=$2 cycles=$3
  mkdir -p "$BENCH_TMP/$name"
  echo "--- $name: $cycles cycles ($bin)"
  python3 bench/failover.py --name "$name" --bin "$bin" --dir "$BENCH_TMP/$name" --cycles "$cycles" \
    --timeout "$REQUEST_TIMEOUT" --settle "$SETTLE_SECONDS" --lag-ok "$LAG_OK" --log-level "$LOG_LEVEL" \
    --prefix "fo-$$-" --pidfile "$BENCH_TMP/$name.pids" --result "$BENCH_TMP/$name.result" "${netns_flag[@]}" &
  local pid=$!
  BENCH_PIDS+=("$pid")
  RC=0
  wait "$pid" || RC=$?
  forget_pid "$pid"
  # What the servers logged at warn or above (etcd: error and above; its warn
  # level is chatty about peer connections), the most frequent first.
  local logs
  logs=$(grep -h -E 'level=(warn|error)|"level":"(error|fatal|panic)"' "$BENCH_TMP/$name"/s*/stderr 2>/dev/null |
    sed -E 's/^ts=[^ ]* //; s/"ts":"[^"]*",//' | cut -c1-200 | sort | uniq -c | sort -rn | head -5 || true)
  if [ -n "$logs" ]; then echo "$name server logs, warn/error lines:"; echo "$logs"; else echo "$name server logs: no warn or error line"; fi
  if [ $RC -ge 2 ]; then
    for f in "$BENCH_TMP/$name"/s*/stderr; do echo "== $f"; tail -n 15 "$f"; done >&2
    die "$name: something broke (driver exit $RC)"
  fi
}
res() { awk -F= -v k="$2" '$1 == k {print $2}' "$1"; }

machine_note
echo "data dirs on: $(df -T "$BENCH_TMP" | awk 'NR == 2 {print $2 " (" $1 ")"}')  ($BENCH_TMP)"
echo "writer: one write at a time, ${REQUEST_TIMEOUT}s timeout each; caught up = within $LAG_OK entries; leader held ${SETTLE_SECONDS}s before each kill"

run_driver berth "$BERTH" "$CYCLES"
berth_rc=$RC
b=$BENCH_TMP/berth.result
e_p50=na e_max=na ratio=na
if [ -z "$etcd_note" ]; then
  echo "etcd: $(etcd --version 2>/dev/null | head -1)"
  run_driver etcd "$(command -v etcd)" "$ETCD_CYCLES"
  e=$BENCH_TMP/etcd.result
  e_p50=$(res "$e" p50) e_max=$(res "$e" max) e_elect=$(res "$e" elect_p50)
  ratio=$(awk -v a="$e_p50" -v b="$(res "$b" p50)" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "na"}')
  echo "etcd:  failover per cycle $(res "$e" all) s; acked $(res "$e" acked), lost $(res "$e" lost)"
else
  echo "note: $etcd_note; etcd figures are na"
fi
echo "berth: failover per cycle $(res "$b" all) s; acked $(res "$b" acked), lost $(res "$b" lost)"
echo "new leader seen by a survivor, p50: berth $(res "$b" elect_p50) s, etcd ${e_elect:-na} s"
echo "target: failover_p50_s <= 1, failover_max_s <= 2 (measured, not enforced); acked_lost = 0 (enforced)"
echo "failover_p50_s=$(res "$b" p50) failover_max_s=$(res "$b" max) acked_lost=$(res "$b" lost) cycles=$(res "$b" cycles) acked=$(res "$b" acked) etcd_failover_p50_s=$e_p50 etcd_failover_max_s=$e_max ratio_p50_etcd_over_berth=$ratio netns=$NETNS"
exit $berth_rc
