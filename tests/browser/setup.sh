#!/usr/bin/env bash
# Makes the browser tests runnable: Debian's chromium, node and npm, then the
# pinned playwright-core (npm ci). Idempotent and quick when all is there.
# Playwright never downloads a browser: the tests use /usr/bin/chromium.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "browser setup: missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run this as root" >&2
    exit 1
  fi
  echo "browser setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci only when the installed tree is not the locked one.
lock="$here/package-lock.json"
stamp="$here/node_modules/.berth-lock"
if [ ! -f "$stamp" ] || ! cmp -s "$lock" "$stamp"; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$lock" "$stamp"
fi
