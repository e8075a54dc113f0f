#!/usr/bin/env bash
# The AWS front end (issue 14: POST / in AWS JSON 1.1, SigV4-signed) against the
# native API it translates to, side by side in one run: the same 1,000
# DescribeServices and 200 UpdateService calls through each, from one Python
# process on one kept-alive TLS connection (bench/aws_client.py, which signs its
# requests itself: the aws CLI's start-up would dominate), in alternating rounds.
# The peer is the native API itself: what the AWS layer costs on top of it
# (SigV4 verification, the JSON 1.1 translation) is the figure.
#
# Setup (no Docker: --no-agent, no nodes): a cluster `bench`, a task definition
# `web`, a service `web` at desiredCount 0 (UpdateService alternates 0 and 1, so
# a task is wanted half the time, finds no node and waits), an admin access key
# (`berth accesskey create --role admin --json`) and the admin token.
#
# Measures only; never fails on a timing. Exits non-zero if something broke (the
# server did not start or died, a call was answered other than 200).
# Last line: aws_describe_p50_ms= native_describe_p50_ms= aws_update_p50_ms=
#   native_update_p50_ms= aws_vs_native_latency= (total AWS latency over all its
#   calls / the same for native; target <= 1.2) aws_vs_native_describe_p50=
#   aws_vs_native_update_p50= ..._p99_ms= ..._cpu_us= (server CPU per call)
#
#   bench/aws.sh
#   DESCRIBES=1000 UPDATES=200 ROUNDS=20 REGION=us-east-1 bench/aws.sh
source "$(dirname "$0")/common.bash"

DESCRIBES=${DESCRIBES:-1000}
UPDATES=${UPDATES:-200}
ROUNDS=${ROUNDS:-20}
REGION=${REGION:-us-east-1}

ensure_tools curl:curl python3:python3
ensure_berth
python3 bench/aws_client.py --selftest >"$BENCH_TMP/selftest" || { cat "$BENCH_TMP/selftest" >&2; die "the SigV4 signer fails its self-test"; }

machine_note
echo "berth: $BERTH"
start_berth aws
auth=(-H "Authorization: Bearer $BERTH_TOKEN")
api() { curl -fsS --max-time 30 "${auth[@]}" "$@"; }

api -X POST "$BERTH_URL/v1/clusters" -d '{"clusterName":"bench"}' >/dev/null || die "cannot create the cluster"
api -X POST "$BERTH_URL/v1/taskdefinitions" -d '{"family":"web","containerDefinitions":[
  {"name":"app","image":"busybox","cpu":16,"memory":32,"essential":true}]}' >/dev/null ||
  die "cannot register the task definition"
api -X POST "$BERTH_URL/v1/services" \
  -d '{"cluster":"bench","serviceName":"web","taskDefinition":"web","desiredCount":0}' >/dev/null ||
  die "cannot create the service"

key_json=$(BERTH_SERVER=$BERTH_URL BERTH_TOKEN=$BERTH_TOKEN "$BERTH" accesskey create --role admin --json) ||
  die "berth accesskey create failed (this binary has no AWS access keys yet? issue 14)"
read -r key_id key_secret < <(python3 -c 'import json,sys; k = json.load(sys.stdin); print(k["accessKeyId"], k["secretAccessKey"])' <<<"$key_json") ||
  die "berth accesskey create --json answered $key_json"

echo "load: $DESCRIBES DescribeServices and $UPDATES UpdateService through each front end, $ROUNDS rounds, one kept-alive TLS connection"
BERTH_TOKEN=$BERTH_TOKEN AWS_ACCESS_KEY_ID=$key_id AWS_SECRET_ACCESS_KEY=$key_secret \
  python3 bench/aws_client.py --url "$BERTH_URL" --ca "$BERTH_CA" --server-pid "$BERTH_PID" --region "$REGION" \
  --describes "$DESCRIBES" --updates "$UPDATES" --rounds "$ROUNDS" >"$BENCH_TMP/client.out" 2>"$BENCH_TMP/client.err" &
client=$!
BENCH_PIDS+=("$client")
rc=0
wait "$client" || rc=$?
forget_pid "$client"
cat "$BENCH_TMP/client.out"
[ $rc -eq 0 ] || { cat "$BENCH_TMP/client.err" >&2; die "the client failed (exit $rc)"; }
kill -0 "$BERTH_PID" 2>/dev/null || die "berth died during the run"
