#!/usr/bin/env bash
# Runs the libFuzzer harnesses built in a fuzz build directory.
#
#   tests/fuzz/run.sh BUILD_DIR regress          every corpus file once (-runs=0);
#                                                non-zero exit on any crash
#   tests/fuzz/run.sh BUILD_DIR explore [SECS]   fuzz each harness SECS seconds
#                                                (default 60) into a scratch copy
#                                                of its corpus; crashes land in
#                                                BUILD_DIR/fuzz-artifacts/
#
# Each harness NAME_fuzzer has its corpus in tests/fuzz/corpus/NAME/. New inputs
# found while exploring stay in the scratch copy; add the interesting ones (and
# every crash, once fixed) to the checked-in corpus by hand. Entropic scheduling is
# off: with every berth_lib edge instrumented it costs libFuzzer 3x the executions.
set -euo pipefail

usage() {
  echo "usage: $0 BUILD_DIR regress|explore [SECONDS]" >&2
  exit 2
}
[ $# -ge 2 ] || usage
build=$1
mode=$2
seconds=${3:-60}
here=$(cd "$(dirname "$0")" && pwd)

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

harnesses=()
for corpus in "$here"/corpus/*/; do
  name=$(basename "$corpus")
  bin="$build/tests/fuzz/${name}_fuzzer"
  if [ ! -x "$bin" ]; then
    echo "missing harness $bin (build $build first)" >&2
    exit 1
  fi
  harnesses+=("$name")
done
[ ${#harnesses[@]} -gt 0 ] || { echo "no corpora under $here/corpus" >&2; exit 1; }

failed=0
case $mode in
  regress)
    for name in "${harnesses[@]}"; do
      bin="$build/tests/fuzz/${name}_fuzzer"
      files=("$here/corpus/$name"/*)
      log=$(mktemp)
      # Files given one by one: libFuzzer runs each exactly once and stops at a crash.
      if "$bin" -runs=0 "${files[@]}" >"$log" 2>&1; then
        echo "fuzz-regress $name: ${#files[@]} inputs ok"
      else
        echo "fuzz-regress $name: FAILED" >&2
        tail -n 60 "$log" >&2
        failed=1
      fi
      rm -f "$log"
    done
    ;;
  explore)
    [[ $seconds =~ ^[0-9]+$ ]] || usage
    artifacts="$build/fuzz-artifacts"
    mkdir -p "$artifacts"
    for name in "${harnesses[@]}"; do
      bin="$build/tests/fuzz/${name}_fuzzer"
      scratch="$build/fuzz-corpus/$name"
      mkdir -p "$scratch"
      cp -n "$here/corpus/$name"/* "$scratch"/ 2>/dev/null || true
      echo "fuzz-explore $name: ${seconds}s into $scratch"
      if ! "$bin" -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -entropic=0 \
          -artifact_prefix="$artifacts/${name}-" -print_final_stats=1 "$scratch"; then
        echo "fuzz-explore $name: crashed; the input is in $artifacts/" >&2
        failed=1
      fi
    done
    ;;
  *) usage ;;
esac
exit $failed
