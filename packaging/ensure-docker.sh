#!/bin/sh
# Makes sure a Docker engine answers on /var/run/docker.sock (as root): installs
# Debian's docker.io if it is missing, and starts containerd and dockerd in the
# background when no daemon answers (through systemd when it runs, else directly,
# logging to /var/log/berth-docker/). Idempotent; quick when Docker is up.
# Used by `make run` (the all-in-one server runs its tasks there) and the tests.
set -eu

answers() { docker info >/dev/null 2>&1; }

if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ]; then
  echo "ensure-docker: installing docker.io" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq docker.io >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq docker.io >/dev/null; }
fi
answers && exit 0

if [ -d /run/systemd/system ]; then
  systemctl start containerd docker >/dev/null 2>&1 || true
else
  logs=/var/log/berth-docker
  mkdir -p "$logs"
  if [ ! -S /run/containerd/containerd.sock ]; then
    setsid containerd >>"$logs/containerd.log" 2>&1 < /dev/null &
    for _ in $(seq 300); do [ -S /run/containerd/containerd.sock ] && break; sleep 0.2; done
  fi
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    setsid dockerd --containerd /run/containerd/containerd.sock >>"$logs/dockerd.log" 2>&1 < /dev/null &
  fi
fi
for _ in $(seq 450); do answers && exit 0; sleep 0.2; done
echo "ensure-docker: no Docker engine answers on /var/run/docker.sock (see /var/log/berth-docker/)" >&2
exit 1
