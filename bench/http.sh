#!/usr/bin/env bash
# HTTP throughput of berth's GET /healthz against nginx serving an identical
# 15-byte application/json answer, all driven by the same keep-alive wrk load
# (-t2 -c64 -d10s), on this machine, in this run. Berth answers on its loop
# thread and writes on a second one (net::WriteThread), so the fair peer is nginx
# with 2 workers (`ratio`); nginx with 1 worker is measured too (`ratio_1w`, the
# figure of earlier runs), with every server's CPU time per request (all its
# threads or workers summed). Each server is warmed up, then measured twice
# (interleaved: berth, nginx2, nginx1, berth, nginx2, nginx1); the figure per
# server is the mean of its two runs.
#
# Measures only; never fails on a timing. Exits non-zero if something broke.
# Last line: berth_rps= nginx2_rps= ratio= nginx1_rps= ratio_1w= berth_us= nginx2_us= nginx1_us=
#   (target: ratio >= 0.8)
#
#   bench/http.sh                        # uses build/berth (built if missing)
#   BERTH=build-bench/berth bench/http.sh
#   SERVER_ARGS=--no-write-thread bench/http.sh

source "$(dirname "$0")/common.bash"

ensure_tools wrk:wrk nginx:nginx-light curl:curl python3:python3
ensure_berth
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# --- berth: plain HTTP, as the nginx it is compared with (bench/tls.sh measures
# the same over TLS, against nginx and lighttpd over TLS).
start_berth http --no-tls ${SERVER_ARGS:-}
berth_pid=$BERTH_PID
berth_url="$BERTH_URL/healthz"

berth_threads=$(ls "/proc/$berth_pid/task" | wc -l)
start_nginx nginx2 2
ngx2_url=$NGX_URL ngx2_pids=$NGX_WORKERS
start_nginx nginx1 1
ngx1_url=$NGX_URL ngx1_pids=$NGX_WORKERS

# Same answer size and type from all.
b_body=$(curl -fsS -D "$BENCH_TMP/b.h" "$berth_url")
for u in "$ngx2_url" "$ngx1_url"; do
  n_body=$(curl -fsS -D "$BENCH_TMP/n.h" "$u")
  [ "$b_body" = "$n_body" ] || die "bodies differ: berth '$b_body' nginx '$n_body'"
  grep -qi '^content-type: application/json' "$BENCH_TMP/n.h" || die "nginx content-type is not application/json"
done
grep -qi '^content-type: application/json' "$BENCH_TMP/b.h" || die "berth content-type is not application/json"

machine_note
[ -z "$SERVER_CPUS$WRK_CPUS" ] || echo "pinned: servers on CPUs ${SERVER_CPUS:-all}, wrk on CPUs ${WRK_CPUS:-all}"
echo "load: wrk -t$WRK_THREADS -c$WRK_CONNS -d${WRK_SECONDS}s (keep-alive), GET /healthz, ${#b_body}-byte body"
echo "berth: $BERTH (pid $berth_pid, $berth_threads threads)"
echo "nginx: $($NGINX -v 2>&1 | sed 's/.*: //'): 2 workers (pids $ngx2_pids), 1 worker (pid $ngx1_pids)"

declare -A url pids
url[berth]=$berth_url pids[berth]=$berth_pid
url[nginx2]=$ngx2_url pids[nginx2]=$ngx2_pids
url[nginx1]=$ngx1_url pids[nginx1]=$ngx1_pids
who_all=(berth nginx2 nginx1)

# Warm-up.
for who in "${who_all[@]}"; do
  run_wrk "$BENCH_TMP/warm-$who" "${pids[$who]}" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WARMUP_SECONDS}s" "${url[$who]}"
done

declare -A rps us
for round in 1 2; do
  for who in "${who_all[@]}"; do
    run_wrk "$BENCH_TMP/$who-$round" "${pids[$who]}" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${WRK_SECONDS}s" --latency \
      "${url[$who]}"
    lat=$(awk '$1 == "Latency" && NF >= 4 {print $2 " avg, " $4 " max"; exit}' "$BENCH_TMP/$who-$round")
    p99=$(awk '/^ +99%/ {print $2}' "$BENCH_TMP/$who-$round")
    printf '%-6s run %d: %10.0f req/s  (%s requests in %ss, latency %s, p99 %s, non-2xx %s, socket errors %s, server CPU %s%% of one core = %s us/request)\n' \
      "$who" "$round" "$WRK_RPS" "$WRK_REQS" "$WRK_SECS" "$lat" "$p99" "$WRK_NON2XX" "$WRK_SOCKERR" "$SERVER_CPU" \
      "$SERVER_US_PER_REQ"
    [ "$WRK_NON2XX" -le $((WRK_REQS / 100)) ] || die "$who answered $WRK_NON2XX non-2xx"
    rps[$who-$round]=$WRK_RPS
    us[$who-$round]=$SERVER_US_PER_REQ
  done
done

kill -0 "$berth_pid" 2>/dev/null || die "berth died during the run"

declare -A mean_rps mean_us
for who in "${who_all[@]}"; do
  mean_rps[$who]=$(awk -v a="${rps[$who-1]}" -v b="${rps[$who-2]}" 'BEGIN {printf "%.0f", (a + b) / 2}')
  mean_us[$who]=$(awk -v a="${us[$who-1]}" -v b="${us[$who-2]}" 'BEGIN {printf "%.1f", (a + b) / 2}')
  s=$(spread "${rps[$who-1]}" "${rps[$who-2]}")
  if [ "$s" -gt 10 ]; then
    echo "UNSTABLE: $who's two runs differ by $s% (${rps[$who-1]} vs ${rps[$who-2]}); the machine is probably busy"
  else
    echo "stable: $who's two runs differ by $s%"
  fi
done
ratio=$(awk -v a="${mean_rps[berth]}" -v b="${mean_rps[nginx2]}" 'BEGIN {printf "%.2f", a / b}')
ratio_1w=$(awk -v a="${mean_rps[berth]}" -v b="${mean_rps[nginx1]}" 'BEGIN {printf "%.2f", a / b}')
# Server CPU per request, threads or workers summed: the efficiency behind the
# req/s, which a busy machine disturbs less.
echo "server CPU per request: berth ${mean_us[berth]} us, nginx 2 workers ${mean_us[nginx2]} us," \
  "nginx 1 worker ${mean_us[nginx1]} us"
echo "target: berth / nginx with 2 workers >= 0.8 (measured, not enforced)"
echo "berth_rps=${mean_rps[berth]} nginx2_rps=${mean_rps[nginx2]} ratio=$ratio nginx1_rps=${mean_rps[nginx1]}" \
  "ratio_1w=$ratio_1w berth_us=${mean_us[berth]} nginx2_us=${mean_us[nginx2]} nginx1_us=${mean_us[nginx1]}"
