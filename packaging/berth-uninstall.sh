#!/bin/sh
# Removes what packaging/install.sh installed: the berth units (stopped and
# disabled), /usr/local/bin/berth, /etc/berth/*.env and this script. With
# --purge, the data too: /var/lib/berth-agent, /var/lib/berth and /etc/berth.
# Containers the agent started keep running (remove them with docker rm -f).
# BERTH_INSTALL_ROOT and BERTH_SYSTEMCTL as for install.sh.
set -eu
root=${BERTH_INSTALL_ROOT:-}
purge=''
case ${1:-} in
  --purge) purge=1 ;;
  '') ;;
  *) echo "usage: berth-uninstall.sh [--purge]" >&2; exit 2 ;;
esac
if [ -z "$root" ] && [ "$(id -u)" != 0 ]; then
  echo "berth-uninstall: run as root (sudo berth-uninstall.sh)" >&2
  exit 1
fi
systemctl=${BERTH_SYSTEMCTL:-}
[ -n "$systemctl" ] || [ -n "$root" ] || ! [ -d /run/systemd/system ] || systemctl=systemctl
for unit in berth-agent berth-server; do
  [ -e "$root/etc/systemd/system/$unit.service" ] || continue
  [ -z "$systemctl" ] || $systemctl disable --now "$unit" >/dev/null 2>&1 || true
  rm -f "$root/etc/systemd/system/$unit.service"
  rm -rf "$root/etc/systemd/system/$unit.service.d"
done
[ -z "$systemctl" ] || $systemctl daemon-reload || true
rm -f "$root/usr/local/bin/berth" "$root/etc/berth/agent.env" "$root/etc/berth/server.env"
if [ -n "$purge" ]; then
  rm -rf "$root/var/lib/berth-agent" "$root/var/lib/berth" "$root/etc/berth"
  echo "berth-uninstall: removed berth and its data" >&2
else
  rmdir "$root/etc/berth" 2>/dev/null || true
  echo "berth-uninstall: removed berth; its data stays in /var/lib/berth-agent and /var/lib/berth (--purge removes it)" >&2
fi
rm -f "$root/usr/local/bin/berth-uninstall.sh"
