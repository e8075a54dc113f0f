#!/usr/bin/env bash
# Installs every build and test dependency from Debian's packages and fetches the
# Debian source package of cJSON (Debian ships cJSON only as a shared object).
# Idempotent; run as root. Called by `make deps`, and by `make`/`make test` when
# something is missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

packages=(
  build-essential cmake file pkg-config dpkg-dev
  libuv1-dev libsqlite3-dev libmbedtls-dev node-llhttp catch2 libraft-dev liblz4-dev libyaml-dev
  clang libclang-rt-14-dev clang-format-14
  python3 sqlite3 curl wrk nginx-light procps docker-registry skopeo
  docker.io busybox-static openssl iproute2 iptables awscli
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# cJSON from Debian's source package, with Debian's patches applied.
cjson_dir="$top/.deps/cjson"
if [ ! -f "$cjson_dir/cJSON.c" ]; then
  src_list=/etc/apt/sources.list.d/berth-deb-src.sources
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    echo "deps: adding a deb-src entry ($src_list)"
    cat >"$src_list" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -qq
  fi
  work=$(mktemp -d)
  (cd "$work" && apt-get source -qq cjson >/dev/null 2>&1) || {
    apt-get update -qq
    (cd "$work" && apt-get source -qq cjson >/dev/null)
  }
  rm -rf "$cjson_dir"
  mkdir -p "$top/.deps"
  mv "$work"/cjson-*/ "$cjson_dir"
  rm -rf "$work"
  echo "deps: cJSON source from Debian in $cjson_dir"
fi
