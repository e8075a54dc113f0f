#!/usr/bin/env bash
# Every libFuzzer harness (tests/fuzz/*_fuzzer.cc) for FUZZ_SECONDS each, from a
# scratch copy of its checked-in corpus, under ASan+UBSan with leak detection
# (the fuzz build). A crash, leak or sanitizer report ends that harness and counts
# as a crash; its input lands in $BENCH_TMP/artifacts (printed).
#
# Last line: harnesses=N min_execs=E execs_total=T crashes=C, and each harness's
# executions before it. Target (issue 12): every harness >= 1,000,000 executions
# in one run, crashes=0.
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

FUZZ_SECONDS=${FUZZ_SECONDS:-240}
FUZZ_BUILD=${FUZZ_BUILD:-build/fuzz}
make -s fuzz-regress >/dev/null

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
mkdir -p "$BENCH_TMP/artifacts"
harnesses=0 crashes=0 total=0 min=-1 figures=""
for corpus in tests/fuzz/corpus/*/; do
  name=$(basename "$corpus")
  bin="$FUZZ_BUILD/tests/fuzz/${name}_fuzzer"
  scratch="$BENCH_TMP/corpus-$name"
  mkdir -p "$scratch"
  cp -L "$corpus"* "$scratch"/
  log="$BENCH_TMP/$name.log"
  rc=0
  "$bin" -max_total_time="$FUZZ_SECONDS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -entropic=0 \
    -artifact_prefix="$BENCH_TMP/artifacts/$name-" -print_final_stats=1 "$scratch" >"$log" 2>&1 || rc=$?
  execs=$(awk '/stat::number_of_executed_units:/ {print $2}' "$log" | tail -1)
  if [ "$rc" -ne 0 ] || [ -z "$execs" ]; then
    crashes=$((crashes + 1))
    echo "$name: exit $rc" >&2
    grep -E "ERROR|SUMMARY|_fuzzer:" "$log" | head -5 >&2 || true
    ls "$BENCH_TMP/artifacts" >&2
    execs=${execs:-0}
  fi
  echo "$name: $execs executions in ${FUZZ_SECONDS}s"
  harnesses=$((harnesses + 1))
  total=$((total + execs))
  if [ "$min" -lt 0 ] || [ "$execs" -lt "$min" ]; then min=$execs; fi
  figures="$figures ${name}_execs=$execs"
done
echo "harnesses=$harnesses min_execs=$min execs_total=$total crashes=$crashes$figures"
