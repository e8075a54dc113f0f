#!/usr/bin/env bash
# Runs every test suite in turn (called by `make test`), keeps going after a
# failure so one report shows everything, and ends with a count of suites.
set -u
make_cmd=${1:-make}
passed=0
failed=0
failed_names=()
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
for suite in format-check unit integration browser asan tsan fuzz-regress; do
  echo "=== $suite"
  $make_cmd --no-print-directory "$suite" 2>&1 | tee "$logs/$suite.log"
  if [ "${PIPESTATUS[0]}" -eq 0 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failed_names+=("$suite")
  fi
done
# The failures again, at the end where a truncated log still shows them.
for suite in "${failed_names[@]}"; do
  echo "=== what failed in $suite"
  grep -a -B4 -A14 -E 'FAILED:|^FAIL |✖|ThreadSanitizer|AddressSanitizer|runtime error' "$logs/$suite.log" | grep -av 'level=' | head -150
done
[ $failed -eq 0 ] || echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]
