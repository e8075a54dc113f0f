#!/usr/bin/env bash
# Runs every test suite in turn (called by `make test`), keeps going after a
# failure so one report shows everything, and ends with a count of suites.
set -u
make_cmd=${1:-make}
passed=0
failed=0
failed_names=()
for suite in unit integration asan tsan fuzz-regress; do
  echo "=== $suite"
  if $make_cmd --no-print-directory "$suite"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failed_names+=("$suite")
  fi
done
[ $failed -eq 0 ] || echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]
