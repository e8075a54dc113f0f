#!/bin/sh
# Makes sure a Docker engine answers on /var/run/docker.sock (as root): installs
# Debian's docker.io if it is missing, and starts containerd and dockerd in the
# background when no daemon answers (through systemd when it runs, else directly,
# logging to /var/log/berth-docker/). Idempotent; quick when Docker is up.
# Sockets and pid files left behind by daemons that were killed (a machine whose
# processes were ended without a shutdown) are removed before a start: a stale
# containerd socket would otherwise make dockerd wait for a daemon that is gone.
# Used by `make run` (the all-in-one server runs its tasks there) and the tests.
set -eu

answers() { docker info >/dev/null 2>&1; }
# A live process of that name (a killed daemon may stay a zombie for a while).
running() { ps -C "$1" -o stat= 2>/dev/null | grep -qv '^Z'; }
containerd_answers() { ctr --address /run/containerd/containerd.sock version >/dev/null 2>&1; }
wait_for() { # seconds, command...
  n=$(($1 * 5)); shift
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.2; done
  return 1
}

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
  if ! containerd_answers; then
    if ! running containerd; then
      rm -f /run/containerd/containerd.sock /run/containerd/containerd.sock.ttrpc
      echo "ensure-docker: starting containerd" >&2
      setsid containerd >>"$logs/containerd.log" 2>&1 < /dev/null &
    fi
    wait_for 60 containerd_answers || {
      echo "ensure-docker: containerd does not answer on /run/containerd/containerd.sock (see $logs/containerd.log)" >&2
      exit 1
    }
  fi
  if ! running dockerd; then
    rm -f /var/run/docker.pid /var/run/docker.sock
    echo "ensure-docker: starting dockerd" >&2
    setsid dockerd --containerd /run/containerd/containerd.sock >>"$logs/dockerd.log" 2>&1 < /dev/null &
  fi
fi
wait_for 90 answers && exit 0
echo "ensure-docker: no Docker engine answers on /var/run/docker.sock (see /var/log/berth-docker/)" >&2
exit 1
