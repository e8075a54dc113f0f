#!/bin/sh
# Installs a built berth binary and its systemd unit on this machine (as root):
#   packaging/install.sh [path/to/berth]
# The network installer (`curl http://<server>:7070/install.sh | sh`) is served by
# the server itself once the agent lands; this script is for the box it was built on.
set -eu
bin=${1:-build/berth}
[ -x "$bin" ] || { echo "install.sh: $bin is not an executable; run make first" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
install -m 0755 "$bin" /usr/local/bin/berth
install -d -m 0700 /var/lib/berth
if [ -d /run/systemd/system ]; then
  install -m 0644 "$here/systemd/berth-server.service" /etc/systemd/system/berth-server.service
  systemctl daemon-reload
  echo "installed; start with: systemctl enable --now berth-server"
else
  echo "installed /usr/local/bin/berth (no systemd here: run 'berth server --data /var/lib/berth')"
fi
