#!/usr/bin/env bash
# Deploys that fail no request: an all-in-one server on this host's Docker
# engine runs two services of four containers, one behind a load balancer
# listener and one without, the same task definition; clients keep fast GETs
# and 5-second requests going through the listener while WAVES (default 10)
# rolling deploys and a scale 4 -> 1 -> 4 run on both services in turn, in the
# same minutes. A request counts as cut when its answer lacks the line the
# container writes at its end. Each wave is timed from the update until the
# service runs only its new tasks; the load balancer's cost is the difference.
# Swarm's routing mesh needs IPVS, which the kernel berth is tested on lacks:
# its column is n/a. Details in bench/lb_deploy.py.
#
# Measures only; never fails on a timing. Last line:
#   non_2xx= errors= cut= requests= slow_requests= lb_wave_p50_s= lb_wave_max_s=
#   plain_wave_p50_s= plain_wave_max_s= added_wave_p50_s= added_wave_max_s= swarm=n/a
# (targets: non_2xx=0 errors=0 cut=0, added_wave_max_s <= 3)
#
#   bench/lb-deploy.sh                                  # uses build/berth
#   BERTH=build/release/src/berth WAVES=4 bench/lb-deploy.sh

source "$(dirname "$0")/common.bash"

ensure_tools python3:python3 docker:docker.io
ensure_berth
trap bench_cleanup EXIT
machine_note
BERTH=$(realpath "$BERTH") python3 bench/lb_deploy.py
