#!/bin/sh
# Installs berth on this box and joins it to a cluster (docs/install.md).
#
# From the server (what `berth join-command` prints; the server fills in its URL):
#   curl -fsSL --pinnedpubkey 'sha256//KEY' -k https://SERVER:7070/install.sh | sh -s - agent --token TOKEN [--attr K=V]...
#   ... | sh -s - server --token SERVER_TOKEN
# Options: --server URL (when the script did not come from the server),
#   --install-docker (an agent box without Docker gets Debian's docker.io).
# It trusts only the CA the token pins (B10<sha256>::<secret>), checks the token
# with the server, downloads the binary over that CA and checks its SHA-256,
# installs /usr/local/bin/berth, /etc/berth/ROLE.env (0600) and the systemd
# unit, starts it and waits until the box has joined. Run again to upgrade.
#
# From a checkout, with a binary already on the box:
#   packaging/install.sh [path/to/berth]                          # a server
#   packaging/install.sh [path/to/berth] agent URL TOKEN [K=V]... # an agent
#
# For tests: BERTH_INSTALL_ROOT=DIR installs under DIR and skips the root and
# systemd checks; BERTH_SYSTEMCTL names the systemctl to call (under a root
# without it, none is called); BERTH_DOCKER_SOCKET the engine's socket;
# BERTH_WAIT_SECONDS how long to wait for the join (default 60).
set -eu

# Filled in by the server that serves this script (GET /install.sh).
served_from=''

root=${BERTH_INSTALL_ROOT:-}
wait_seconds=${BERTH_WAIT_SECONDS:-60}
docker_socket=${BERTH_DOCKER_SOCKET:-/var/run/docker.sock}
here=$(cd "$(dirname "$0")" 2>/dev/null && pwd || echo .)

say() { echo "berth install: $*" >&2; }
die() {
  echo "berth install: $*" >&2
  exit 1
}
usage() {
  echo "usage: ... | sh -s - agent|server --token TOKEN [--attr K=V]... [--server URL] [--install-docker]" >&2
  echo "   or: packaging/install.sh [path/to/berth] [agent SERVER_URL TOKEN [K=V]...]" >&2
  exit 2
}

# --- arguments ---

local_bin=''
role=''
token=''
server=${served_from}
install_docker=''
attrs=''
if [ $# -gt 0 ] && [ "$1" != agent ] && [ "$1" != server ] && [ "${1#-}" = "$1" ]; then
  local_bin=$1
  shift
fi
if [ -n "$local_bin" ] || [ $# -eq 0 ] || { [ "$1" = agent ] && [ $# -ge 3 ] && [ "${2#-}" = "$2" ]; }; then
  # The local form: a binary on this box.
  [ -n "$local_bin" ] || local_bin=build/berth
  [ -x "$local_bin" ] || die "$local_bin is not an executable; run make first"
  role=server
  if [ "${1:-}" = agent ]; then
    [ $# -ge 3 ] || usage
    role=agent server=$2 token=$3
    shift 3
    for a in "$@"; do attrs="$attrs --attr $a"; done
  elif [ $# -gt 0 ]; then
    usage
  fi
else
  role=$1
  shift
  while [ $# -gt 0 ]; do
    case $1 in
      --token) [ $# -ge 2 ] || usage; token=$2; shift 2 ;;
      --token=*) token=${1#--token=}; shift ;;
      --attr) [ $# -ge 2 ] || usage; attrs="$attrs --attr $2"; shift 2 ;;
      --attr=*) attrs="$attrs --attr ${1#--attr=}"; shift ;;
      --server) [ $# -ge 2 ] || usage; server=$2; shift 2 ;;
      --server=*) server=${1#--server=}; shift ;;
      --install-docker) install_docker=1; shift ;;
      *) usage ;;
    esac
  done
  case $role in agent | server) ;; *) usage ;; esac
  [ -n "$token" ] || die "give --token TOKEN: make one on a box with the CLI with 'berth join-command'"
  [ -n "$server" ] || die "give --server https://SERVER:7070 (this script did not come from a server)"
fi
# Attributes and the server URL end up in an environment file systemd splits on
# spaces: plain characters only.
for word in $attrs $server; do
  case $word in *[!]A-Za-z0-9_.:/=,@+[-]*) die "'$word' holds characters berth does not take in a URL or an attribute" ;; esac
done
case $token in *[!A-Za-z0-9_.:+/=-]*) die "the token holds unexpected characters: paste it as berth printed it" ;; esac

# --- checks ---

if [ -z "$root" ]; then
  [ "$(id -u)" = 0 ] || die "run as root (pipe into 'sudo sh -s - ...' instead of 'sh -s - ...')"
  [ -d /run/systemd/system ] || die "no systemd here: run 'berth $role' by hand (see berth $role --help)"
fi
systemctl=${BERTH_SYSTEMCTL:-}
[ -n "$systemctl" ] || [ -n "$root" ] || systemctl=systemctl

if [ "$role" = agent ] && [ ! -S "$docker_socket" ]; then
  if [ -n "$install_docker" ]; then
    say "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq docker.io >/dev/null || { apt-get update -qq && apt-get install -y -qq docker.io >/dev/null; } ||
      die "apt-get install docker.io failed: install a Docker engine, then run this again"
    [ -z "$systemctl" ] || $systemctl enable --now docker >/dev/null 2>&1 || true
    [ -S "$docker_socket" ] || die "docker.io is installed but $docker_socket is missing: start it (systemctl start docker), then run this again"
  else
    die "no Docker engine answers at $docker_socket: install one (apt-get install docker.io), or run this again with --install-docker"
  fi
fi

for tool in curl sha256sum base64 sed; do
  command -v $tool >/dev/null 2>&1 || die "this needs $tool: install it (apt-get install curl coreutils sed)"
done

umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Downloads $2 from the server into $1, trusting only the pinned CA.
fetch() {
  code=0
  curl -fsS --max-time 300 --cacert "$tmp/ca.crt" -o "$1" "$server$2" 2>"$tmp/curl.err" || code=$?
  [ $code -eq 0 ] && return 0
  case $code in
    51 | 60) die "the server's certificate does not name this address ($server): use an address it names, or start the server with --advertise HOST" ;;
    6 | 7 | 28) die "cannot reach $server: check the address and that the port is open from this box" ;;
    *) die "downloading $server$2 failed: $(cat "$tmp/curl.err")" ;;
  esac
}

if [ -z "$local_bin" ]; then
  # The CA: fetched unchecked, then held to the token's pin.
  pin=${token%%::*}
  pin=${pin#B10}
  case $token in B10*::*) ;; *) die "the token carries no CA pin (B10<sha256>::...): use the line 'berth join-command' prints" ;; esac
  code=0
  curl -fsS -k --max-time 20 -o "$tmp/ca.pem" "$server/v1/ca" 2>"$tmp/curl.err" || code=$?
  [ $code -eq 0 ] || die "cannot reach $server (curl: $(cat "$tmp/curl.err")): check the address and that the port is open from this box"
  sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$tmp/ca.pem" | sed -n '1,/-----END CERTIFICATE-----/p' >"$tmp/ca.crt"
  have=$(grep -v -- '-----' "$tmp/ca.crt" | base64 -d 2>/dev/null | sha256sum | cut -c1-64)
  [ "$have" = "$pin" ] || die "the CA of $server (sha256 $have) is not the one the token pins ($pin): this is not the server that made the token, or something is in between; check the address"

  # The token, before anything is installed: the server says what is wrong with it.
  printf 'Authorization: Bearer %s\n' "${token#*::}" >"$tmp/auth"
  code=0
  status=$(curl -sS --max-time 20 --cacert "$tmp/ca.crt" -H "@$tmp/auth" -o "$tmp/token.json" -w '%{http_code}' "$server/install/token" 2>"$tmp/curl.err") || code=$?
  [ $code -eq 0 ] || die "cannot check the token with $server: $(cat "$tmp/curl.err")"
  message=$(sed -n 's/.*"message":"\([^"]*\)".*/\1/p' "$tmp/token.json")
  [ "$status" = 200 ] || die "the server refused the token: ${message:-HTTP $status}"
  grep -q "\"role\":\"$role\"" "$tmp/token.json" ||
    die "this is not a $role token: make one with 'berth join-command --role $role'"
  if grep -q '"usesLeft":0[,}]' "$tmp/token.json" && [ ! -s "$root/var/lib/berth-agent/node-id" ]; then
    die "the token has been used as many times as it allows: make a new one with 'berth join-command'"
  fi

  fetch "$tmp/berth" /download/berth-linux-amd64
  fetch "$tmp/berth.sha256" /download/berth-linux-amd64.sha256
  # For tests only: a shell command run on the downloaded binary ($1) before its check.
  [ -z "${BERTH_INSTALL_AFTER_DOWNLOAD:-}" ] || sh -c "$BERTH_INSTALL_AFTER_DOWNLOAD" after-download "$tmp/berth"
  want=$(cut -c1-64 "$tmp/berth.sha256")
  have=$(sha256sum "$tmp/berth" | cut -c1-64)
  [ "$have" = "$want" ] || die "the downloaded binary's SHA-256 ($have) is not the one the server published ($want): the download was damaged or altered; run the line again"
  fetch "$tmp/unit" "/download/berth-$role.service"
  fetch "$tmp/uninstall" /download/berth-uninstall.sh
else
  cp "$local_bin" "$tmp/berth"
  cp "$here/../systemd/berth-$role.service" "$tmp/unit"
  cp "$here/berth-uninstall.sh" "$tmp/uninstall"
fi

# --- install ---

install -d -m 0755 "$root/usr/local/bin" "$root/etc/systemd/system"
# Renamed into place: a running berth keeps its old file until it restarts.
install -m 0755 "$tmp/berth" "$root/usr/local/bin/.berth.new"
mv -f "$root/usr/local/bin/.berth.new" "$root/usr/local/bin/berth"
install -m 0755 "$tmp/uninstall" "$root/usr/local/bin/berth-uninstall.sh"
install -d -m 0700 "$root/etc/berth"
unit=berth-$role
if [ "$role" = agent ]; then
  install -d -m 0700 "$root/var/lib/berth-agent"
  if [ -n "$token" ]; then
    # Quoted so that sh reads the file as systemd does (EnvironmentFile= drops the quotes).
    printf 'BERTH_SERVER=%s\nBERTH_TOKEN=%s\nBERTH_AGENT_FLAGS="%s"\n' "$server" "$token" "${attrs# }" >"$tmp/env"
    install -m 0600 "$tmp/env" "$root/etc/berth/agent.env"
  fi
else
  install -d -m 0700 "$root/var/lib/berth"
  if [ -n "$token" ]; then
    # The unit passes BERTH_SERVER_FLAGS; the server reads its join token from
    # BERTH_TOKEN (not on its command line). --join is harmless once joined.
    printf 'BERTH_SERVER=%s\nBERTH_TOKEN=%s\nBERTH_SERVER_FLAGS="--join %s"\n' "$server" "$token" "$server" >"$tmp/env"
    install -m 0600 "$tmp/env" "$root/etc/berth/server.env"
  fi
fi
install -m 0644 "$tmp/unit" "$root/etc/systemd/system/$unit.service"
say "installed $root/usr/local/bin/berth ($(sha256sum "$root/usr/local/bin/berth" | cut -c1-12)...) and the $unit unit"

if [ -z "$systemctl" ]; then
  say "not starting $unit (no systemctl under BERTH_INSTALL_ROOT)"
  exit 0
fi
started=$(date +%s)
$systemctl daemon-reload
$systemctl enable "$unit" >/dev/null 2>&1 || die "systemctl enable $unit failed: see systemctl status $unit"
$systemctl restart "$unit" || die "systemctl restart $unit failed: see journalctl -u $unit"

# --- wait for the join ---

# Each notes when it has joined, "<id> <server> <unix time>": the agent at each
# registration with a server, a server once it is a member and knows the leader.
joined_file=$root/var/lib/berth/member
[ "$role" = server ] || joined_file=$root/var/lib/berth-agent/registered
joined() { [ -s "$joined_file" ] && [ "$(cut -d' ' -f3 "$joined_file")" -ge "$started" ]; }
n=0
until joined; do
  n=$((n + 1))
  [ $n -le $((wait_seconds * 2)) ] || die "$unit did not join within ${wait_seconds}s: see journalctl -u $unit -e"
  sleep 0.5
done
if [ "$role" = agent ]; then
  say "joined as node $(cut -d' ' -f1 "$joined_file") of $(cut -d' ' -f2 "$joined_file")"
  say "check it: 'berth node ls' where the CLI is configured; here: systemctl status $unit, journalctl -u $unit -f"
else
  say "a member of its cluster as server $(cut -d' ' -f1 "$joined_file") (the leader is at $(cut -d' ' -f2 "$joined_file"))"
  say "check it: 'berth server ls' where the CLI is configured; here: systemctl status $unit"
fi
say "remove it with berth-uninstall.sh (--purge also removes its data)"
