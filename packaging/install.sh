#!/bin/sh
# Installs a built berth binary and its systemd units on this machine (as root):
#   packaging/install.sh [path/to/berth]                      # a server (with its local agent)
#   packaging/install.sh [path/to/berth] agent URL TOKEN [K=V...]  # an agent joining the server at URL
# URL is https://SERVER:7070 and TOKEN an agent token as berth printed it
# (B10<sha256>::<secret>): it pins the cluster CA, so nothing else is needed to
# trust the server. The network installer (`curl https://<server>:7070/install.sh |
# sh`) will be served by the server itself; this script is for a box that has the binary.
set -eu
bin=build/berth
if [ $# -gt 0 ] && [ "$1" != agent ]; then bin=$1; shift; fi
[ -x "$bin" ] || { echo "install.sh: $bin is not an executable; run make first" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
install -m 0755 "$bin" /usr/local/bin/berth
unit=berth-server
if [ "${1:-}" = agent ]; then
  [ $# -ge 3 ] || { echo "usage: install.sh [berth] agent SERVER_URL AGENT_TOKEN [ATTR=VALUE...]" >&2; exit 2; }
  server=$2 token=$3
  shift 3
  flags=""
  for a in "$@"; do flags="$flags --attr $a"; done
  install -d -m 0700 /etc/berth /var/lib/berth-agent
  umask 077
  printf 'BERTH_SERVER=%s\nBERTH_TOKEN=%s\nBERTH_AGENT_FLAGS=%s\n' "$server" "$token" "$flags" >/etc/berth/agent.env
  unit=berth-agent
else
  install -d -m 0700 /var/lib/berth
fi
"$here/packaging/ensure-docker.sh" || echo "install.sh: no Docker engine yet; the $unit service waits for one" >&2
if [ -d /run/systemd/system ]; then
  install -m 0644 "$here/systemd/$unit.service" "/etc/systemd/system/$unit.service"
  systemctl daemon-reload
  echo "installed; start with: systemctl enable --now $unit"
elif [ "$unit" = berth-agent ]; then
  echo "installed /usr/local/bin/berth (no systemd here: run 'berth agent --server $server --token ...')"
else
  echo "installed /usr/local/bin/berth (no systemd here: run 'berth server --data /var/lib/berth')"
fi
