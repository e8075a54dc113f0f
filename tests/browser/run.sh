#!/usr/bin/env bash
# Runs the dashboard's browser tests against a berth binary:
#   tests/browser/run.sh build/berth
# Screenshots and the downloaded log go to $BERTH_TEST_OUT (default
# tests/browser/out/). Needs tests/browser/setup.sh to have run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:?usage: tests/browser/run.sh <berth-binary>}
export BERTH_BINARY=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
export BERTH_TEST_OUT=${BERTH_TEST_OUT:-$here/out}
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
[ -x "$BERTH_BINARY" ] || { echo "run.sh: $BERTH_BINARY is not an executable" >&2; exit 1; }
[ -d "$here/node_modules/playwright-core" ] || { echo "run.sh: run tests/browser/setup.sh first" >&2; exit 1; }
mkdir -p "$BERTH_TEST_OUT"
cd "$here"
exec node --test --test-reporter=spec dashboard.test.mjs
