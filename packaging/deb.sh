#!/bin/sh
# Builds the Debian package of berth from a built binary:
#   packaging/deb.sh [path/to/berth] [output dir]    (make deb)
# and prints the path of build/berth_<version>_amd64.deb. The version is the
# binary's own (`berth version --json`, from CMakeLists.txt's project version),
# so the package never claims another. The binary is static: the package
# depends on nothing, and recommends Debian's docker.io for agents.
#
# What it holds (dpkg-deb -c):
#   /usr/bin/berth                               0755
#   /lib/systemd/system/berth-server.service     0644  (ExecStart /usr/bin/berth)
#   /lib/systemd/system/berth-agent.service      0644
#   /usr/share/doc/berth/README.md, copyright    0644
# and maintainer scripts: postinst makes /etc/berth, /var/lib/berth and
# /var/lib/berth-agent (0700) and reloads systemd, starting nothing; prerm stops
# and disables the units on removal; postrm --purge removes /etc/berth and the
# data directories (the cluster's state and keys: docs/operations.md).
# Needs dpkg-deb only; files are owned by root in the package whoever builds it
# (--root-owner-group), so no fakeroot.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$here/build/berth}
out=${2:-$here/build}
[ -x "$bin" ] || { echo "deb.sh: $bin is not an executable; run make first" >&2; exit 1; }
version=$("$bin" version --json | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')
case $version in
  [0-9]*) ;;
  *) echo "deb.sh: cannot read the version from '$bin version --json'" >&2; exit 1 ;;
esac
arch=amd64
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
umask 022

install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/usr/share/doc/berth"
install -m 0755 "$bin" "$root/usr/bin/berth"
for unit in berth-server berth-agent; do
  sed 's#/usr/local/bin/berth#/usr/bin/berth#g' "$here/systemd/$unit.service" >"$root/lib/systemd/system/$unit.service"
  chmod 0644 "$root/lib/systemd/system/$unit.service"
done
install -m 0644 "$here/README.md" "$root/usr/share/doc/berth/README.md"
cat >"$root/usr/share/doc/berth/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: berth
Comment: One statically linked binary. It links, statically, Debian's builds of
 libuv, SQLite, mbedTLS, libraft, lz4 and llhttp, and cJSON compiled from
 Debian's source package; their copyright files are in their Debian packages
 (/usr/share/doc/<package>/copyright).

Files: *
Copyright: The Berth authors
License: Berth
 The authors have not yet chosen a licence for Berth; until they do, ask them.
COPYRIGHT
chmod 0644 "$root/usr/share/doc/berth/copyright"

size_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: berth
Version: $version
Architecture: $arch
Maintainer: The Berth authors <berth@localhost>
Installed-Size: $size_kib
Section: admin
Priority: optional
Recommends: docker.io
Description: container orchestrator and image registry in one static binary
 Berth turns a few Linux boxes running Docker into a container cluster: the
 on-prem, single-binary counterpart of Amazon ECS (orchestration) and Amazon
 ECR (image registry). One binary is the server (control plane, registry,
 dashboard), the agent of each Docker host, and the CLI.
 .
 The package installs the systemd units berth-server and berth-agent without
 enabling or starting them.
CONTROL

cat >"$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  install -d -m 0700 /etc/berth /var/lib/berth /var/lib/berth-agent
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # An upgrade restarts what runs (the agent's containers keep running).
    if [ -n "${2:-}" ]; then
      for unit in berth-server berth-agent; do
        if systemctl is-active --quiet "$unit.service"; then systemctl restart "$unit.service" || true; fi
      done
    fi
  fi
  if [ -z "${2:-}" ]; then
    cat <<'HOW'
berth: installed /usr/bin/berth and the units berth-server and berth-agent (not started).
  a server:  systemctl enable --now berth-server   (flags in /etc/berth/server.env: BERTH_SERVER_FLAGS=...)
  an agent:  write /etc/berth/agent.env (BERTH_SERVER=https://HOST:7070, BERTH_TOKEN=<agent token>, mode 0600),
             then systemctl enable --now berth-agent
HOW
  fi
fi
exit 0
POSTINST

cat >"$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  for unit in berth-server berth-agent; do
    systemctl stop "$unit.service" 2>/dev/null || true
    systemctl disable "$unit.service" 2>/dev/null || true
  done
fi
exit 0
PRERM

cat >"$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
case "$1" in
  remove)
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
    ;;
  purge)
    # Debian policy: purge removes the configuration. The data directories go
    # too: they hold the cluster's state, its CA and keys, and the node's
    # identity, which nothing else uses. Containers are left running.
    rm -rf /etc/berth /var/lib/berth /var/lib/berth-agent /run/berth /run/berth-agent
    if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
    ;;
esac
exit 0
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/berth_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
