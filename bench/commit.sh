#!/usr/bin/env bash
# Acknowledged cluster creates per second through the API (POST /v1/clusters,
# each answered 201 only after its SQLite transaction commits: WAL,
# synchronous=FULL), with group commit (the default) and without it
# (--no-group-commit, one transaction and fsync per command), and with group
# commit through a cluster of three servers on loopback (the leader takes the
# load; an entry commits once two of the three logs hold it), in the same run.
# Load: wrk -t2 -c64 -d10s, keep-alive, 64 concurrent connections, every request
# a unique name (bench/create-cluster.lua). Each mode gets a fresh server and data
# dir on the same filesystem, a short warm-up, then the measured run.
#
# Creates/s = the server's own berth_store_commands_total{outcome="applied"}
# (from /metrics, after minus before) / wrk's measured duration. The mean commit
# batch size is (sum/count) of the berth_store_commit_batch_size histogram over
# the measured run; the mean time per transaction (BEGIN..COMMIT, fsync
# included) comes from berth_store_commit_duration_seconds. wrk's non-2xx count should be ~0 (names are unique).
#
# Measures only; never fails on a timing. Exits non-zero if something broke.
# Last line: grouped_per_s=<n> single_per_s=<n> ratio=<grouped/single> three_per_s=<n> three_vs_one=<three/grouped>
#   (target ratio >= 5; three_vs_one is what replication costs)
#
#   bench/commit.sh
#   BERTH=build-bench/berth bench/commit.sh

source "$(dirname "$0")/common.bash"

ensure_tools wrk:wrk curl:curl python3:python3
ensure_berth
LUA=bench/create-cluster.lua

metric() {  # metric TEXTFILE NAME-WITH-LABELS
  awk -v n="$2" '$1 == n {print $2; found = 1} END {if (!found) print "MISSING"}' "$1"
}
scrape() {  # scrape OUT
  curl -fsS --max-time 10 -H "Authorization: Bearer $BERTH_TOKEN" "$BERTH_URL/metrics" >"$1" ||
    die "GET /metrics failed"
  local m
  for m in 'berth_store_commands_total{outcome="applied"}' berth_store_commit_batch_size_sum berth_store_commit_batch_size_count; do
    [ "$(metric "$1" "$m")" != MISSING ] || die "/metrics has no $m"
  done
}

machine_note
[ -z "$SERVER_CPUS$WRK_CPUS" ] || echo "pinned: servers on CPUs ${SERVER_CPUS:-all}, wrk on CPUs ${WRK_CPUS:-all}"
echo "data dirs on: $(df -T "$BENCH_TMP" | awk 'NR == 2 {print $2 " (" $1 ")"}')  ($BENCH_TMP)"
echo "load: wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECONDS}s -s $LUA (keep-alive), POST /v1/clusters with unique names"
echo "berth: $BERTH"

declare -A per_s
for mode in grouped single three; do
  flags=()
  [ $mode = single ] && flags=(--no-group-commit)
  start_berth "$mode" "${flags[@]}"
  pid=$BERTH_PID
  PEER_PIDS=()
  if [ $mode = three ]; then
    join_peers 2
    echo "three: $(curl -fsS --max-time 10 -H "Authorization: Bearer $BERTH_TOKEN" "$BERTH_URL/v1/servers" |
      python3 -c 'import json,sys; v = json.load(sys.stdin); print(", ".join(s["role"] + (" (leader)" if s["leader"] else "") for s in v["servers"]))')"
    pid="$pid ${PEER_PIDS[*]}"  # CPU counted over the three servers
  fi
  run_wrk "$BENCH_TMP/warm-$mode" "$pid" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARMUP_SECONDS}s" \
    -s "$LUA" "$BERTH_URL" -- "$BERTH_TOKEN" "warm"
  scrape "$BENCH_TMP/before-$mode"
  run_wrk "$BENCH_TMP/wrk-$mode" "$pid" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECONDS}s" --latency \
    -s "$LUA" "$BERTH_URL" -- "$BERTH_TOKEN" "run"
  sleep 0.5    # let requests that were in flight when wrk stopped finish
  scrape "$BENCH_TMP/after-$mode"
  for p in $pid; do kill -0 "$p" 2>/dev/null || die "berth ($mode) died during the run"; done

  b=$BENCH_TMP/before-$mode a=$BENCH_TMP/after-$mode
  applied=$(( $(metric "$a" 'berth_store_commands_total{outcome="applied"}') - $(metric "$b" 'berth_store_commands_total{outcome="applied"}') ))
  batch=$(awk -v s0="$(metric "$b" berth_store_commit_batch_size_sum)" -v s1="$(metric "$a" berth_store_commit_batch_size_sum)" \
              -v c0="$(metric "$b" berth_store_commit_batch_size_count)" -v c1="$(metric "$a" berth_store_commit_batch_size_count)" \
              'BEGIN {c = c1 - c0; r = 0; if (c > 0) r = (s1 - s0) / c; printf "%.1f (%d commits)", r, c}')
  # Time inside transactions (BEGIN..COMMIT, fsync included; optional metric).
  commit_ms=$(awk -v s0="$(metric "$b" berth_store_commit_duration_seconds_sum)" -v s1="$(metric "$a" berth_store_commit_duration_seconds_sum)" \
                  -v c0="$(metric "$b" berth_store_commit_duration_seconds_count)" -v c1="$(metric "$a" berth_store_commit_duration_seconds_count)" \
                  -v t="$WRK_SECS" 'BEGIN {if (s0 == "MISSING" || c1 - c0 <= 0) {print "n/a"; exit}
                                           printf "%.2f ms mean, %.0f%% of the run", (s1 - s0) / (c1 - c0) * 1000, (s1 - s0) / t * 100}')
  per_s[$mode]=$(awk -v n="$applied" -v t="$WRK_SECS" 'BEGIN {printf "%.0f", n / t}')
  ok=$((WRK_REQS - WRK_NON2XX))
  p50=$(awk '/^ +50%/ {print $2}' "$BENCH_TMP/wrk-$mode")
  p99=$(awk '/^ +99%/ {print $2}' "$BENCH_TMP/wrk-$mode")
  printf '%-7s: %7s creates/s  (applied %d in %ss; wrk: %d requests, %d 2xx, non-2xx %d, socket errors %d; latency p50 %s p99 %s; mean commit batch %s; commit time %s; server CPU %s%% of one core = %s us/request)\n' \
    "$mode" "${per_s[$mode]}" "$applied" "$WRK_SECS" "$WRK_REQS" "$ok" "$WRK_NON2XX" "$WRK_SOCKERR" "$p50" "$p99" "$batch" "$commit_ms" "$SERVER_CPU" "$SERVER_US_PER_REQ"
  [ "$applied" -gt 0 ] || die "$mode: no create was applied"
  # Broken, not slow: more than 1% refused (non-2xx), e.g. name clashes or auth.
  [ "$WRK_NON2XX" -le $((WRK_REQS / 100)) ] || { cat "$BENCH_TMP/wrk-$mode" >&2; die "$mode: $WRK_NON2XX non-2xx answers"; }
  for p in $pid; do stop_pid "$p"; done
done

ratio=$(awk -v a="${per_s[grouped]}" -v b="${per_s[single]}" 'BEGIN {printf "%.2f", a / b}')
three_vs_one=$(awk -v a="${per_s[three]}" -v b="${per_s[grouped]}" 'BEGIN {printf "%.2f", a / b}')
echo "target: grouped/single >= 5 (measured, not enforced)"
echo "grouped_per_s=${per_s[grouped]} single_per_s=${per_s[single]} ratio=$ratio three_per_s=${per_s[three]} three_vs_one=$three_vs_one"
