"""Deploys through the load balancer (bench/lb-deploy.sh runs it): an
all-in-one server whose local agent runs two services of four containers on this
host's Docker engine, one behind a listener ("lbweb") and one without ("plain"),
same task definition. Clients keep requests going through the listener the whole
time: fast GETs and 5-second requests that answer "start" at once and "done"
at the end, so a request cut by a stop shows as a body without "done". Then
WAVES rolling deploys (alternating two revisions) and a scale 4 -> 1 -> 4, each
run on both services in turn, in the same minutes; a wave lasts from the
update until every task of the service is of its new shape and RUNNING and the
old ones are STOPPED.

Prints the figures; the last line:
  non_2xx= errors= cut= requests= slow_requests= lb_wave_p50_s= lb_wave_max_s=
  plain_wave_p50_s= plain_wave_max_s= added_wave_p50_s= added_wave_max_s= swarm=n/a
(targets: non_2xx=0 errors=0 cut=0; each wave at most 3 s slower than without
the load balancer). Swarm's routing mesh needs IPVS, which this kernel lacks:
n/a. Measures; exits non-zero only when something broke.
"""

import json
import os
import socket
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import harness  # noqa: E402

harness.BINARY = os.path.abspath(os.environ.get("BERTH", "build/berth"))
from test_docker import all_in_one, register  # noqa: E402
from test_lb_docker import berth, free_port, get, slow_web  # noqa: E402
from test_loadbalancing import agent_token, register_web  # noqa: E402

WAVES = int(os.environ.get("WAVES", "10"))
EDGES = int(os.environ.get("EDGES", "1000"))
CHANGES = int(os.environ.get("CHANGES", "5"))
SLOW_S = int(os.environ.get("SLOW_S", "5"))
DEADLINE = 180.0


def live_tasks(s, service):
    tasks = json.loads(berth(s, "task", "ls", "--service", service, "--all", "--json").stdout)["tasks"]
    return [t for t in tasks if t["lastStatus"] != "STOPPED"]


def wave(s, service, count, revision, *args):
    """Runs `berth service update SERVICE ARGS...` and returns the seconds until
    `count` tasks of `revision` run and nothing else of the service is left."""
    t0 = time.monotonic()
    berth(s, "service", "update", service, *args)
    while time.monotonic() - t0 < DEADLINE:
        live = live_tasks(s, service)
        if (len(live) == count and all(t["lastStatus"] == "RUNNING" for t in live)
                and all(t["taskDefinitionArn"].endswith(":%d" % revision) for t in live)):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise SystemExit("bench: %s did not settle within %ds" % (service, DEADLINE))


def acks():
    """EDGES simulated nodes (`berth agent --simulate`), every one a member of a
    load balancer with a listener to a group of 10 targets; CHANGES times a
    target's task is stopped, and each node's time from the stop's request to
    its proxy reporting a document that has it draining is taken from the load
    balancer's members (polled every 20 ms). Returns (p50, p99, max) in ms."""
    times = []
    with harness.Server(args=["--heartbeat-interval", "2s"]) as s:
        with harness.Agent(s, EDGES, agent_token(s), id_prefix="edge"):
            harness.wait_until(lambda: len(harness.expect_status(s.request("GET", "/v1/nodes"), 200)
                                           .json()["containerInstances"]) == EDGES,
                               wait=DEADLINE, step=0.5, what="%d simulated nodes" % EDGES)
            berth(s, "tg", "create", "web", "--protocol", "HTTP", "--port", "8080")
            berth(s, "lb", "create", "edge")
            berth(s, "lb", "listener", "add", "edge", "--port", "80", "--protocol", "HTTP", "--default-tg", "web")
            register_web(s)
            berth(s, "service", "create", "web", "--taskdef", "web", "--count", str(10 + CHANGES),
                  "--lb", "web:app:8080")

            def members():
                lb = harness.expect_status(s.request("GET", "/v1/loadbalancers/edge"), 200).json()["loadBalancer"]
                return {m["nodeId"]: (m["version"], m["appliedVersion"]) for m in lb["members"]}

            def settled():
                h = json.loads(berth(s, "tg", "health", "web", "--json").stdout)["health"]
                m = members()
                return (len(m) == EDGES and h["proxiesBehind"] == [] and len(h["targets"]) >= 10
                        and all(t["state"] == "healthy" for t in h["targets"]))
            for _ in range(CHANGES):
                harness.wait_until(settled, wait=DEADLINE, step=0.5, what="every proxy caught up")
                base = members()
                victim = [t for t in json.loads(berth(s, "tg", "health", "web", "--json").stdout)["health"]["targets"]
                          if t["state"] == "healthy"][0]["taskId"]
                acked = {}
                t0 = time.monotonic()
                berth(s, "task", "stop", victim)
                while len(acked) < EDGES and time.monotonic() - t0 < 60:
                    now = time.monotonic()
                    for node, (version, applied) in members().items():
                        if node not in acked and version > base[node][0] and applied >= version:
                            acked[node] = (now - t0) * 1000
                    time.sleep(0.02)
                if len(acked) < EDGES:
                    raise SystemExit("bench: only %d of %d proxies acknowledged within 60 s" % (len(acked), EDGES))
                times.extend(acked.values())
                print("health change: %d proxies acknowledged, p50 %.0f ms, max %.0f ms"
                      % (len(acked), statistics.median(acked.values()), max(acked.values())), flush=True)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1], times[-1]


def main():
    if os.environ.get("PART") == "acks":  # the simulated part alone
        print("ack_p50_ms=%.0f ack_p99_ms=%.0f ack_max_ms=%.0f" % acks())
        return
    with all_in_one() as (s, node):
        port = free_port()
        register(s, "lbd", [slow_web("v1")])
        register(s, "lbd", [slow_web("v2")])
        berth(s, "tg", "create", "web", "--protocol", "HTTP", "--port", "8080",
              "--attr", "deregistration_delay.timeout_seconds=30")
        berth(s, "lb", "create", "edge")
        berth(s, "lb", "listener", "add", "edge", "--port", str(port), "--protocol", "HTTP", "--default-tg", "web")
        berth(s, "service", "create", "lbweb", "--taskdef", "lbd:1", "--count", "4", "--lb", "web:app:8080")
        berth(s, "service", "create", "plain", "--taskdef", "lbd:1", "--count", "4")
        for svc in ("lbweb", "plain"):
            harness.wait_until(lambda: len([t for t in live_tasks(s, svc) if t["lastStatus"] == "RUNNING"]) == 4,
                               wait=DEADLINE, step=0.3, what="4 tasks of %s running" % svc)
        harness.wait_until(lambda: get(port)[0] == 200, wait=DEADLINE, step=0.3, what="the listener answering")

        results, stop = [], threading.Event()
        lock = threading.Lock()

        def client(path):
            while not stop.is_set():
                r = get(port, path)
                with lock:
                    results.append((path,) + r)

        paths = ["/"] * 6 + ["/cgi-bin/slow?%d" % SLOW_S] * 4
        clients = [threading.Thread(target=client, args=(p,), daemon=True) for p in paths]
        for c in clients:
            c.start()
        time.sleep(SLOW_S / 2)  # slow requests in flight on every old task
        lb_waves, plain_waves = [], []
        revision = 1
        steps = [("deploy", 4)] * WAVES + [("scale", 1), ("scale", 4)]
        for i, (kind, count) in enumerate(steps):
            if kind == "deploy":
                revision = 2 if revision == 1 else 1
                args = ("--taskdef", "lbd:%d" % revision)
            else:
                args = ("--count", str(count))
            for svc, out in (("lbweb", lb_waves), ("plain", plain_waves)):
                out.append(wave(s, svc, count, revision, *args))
            print("wave %d (%s to %s): with the load balancer %.2fs, without %.2fs"
                  % (i + 1, kind, "lbd:%d" % revision if kind == "deploy" else count, lb_waves[-1], plain_waves[-1]),
                  flush=True)
        time.sleep(SLOW_S + 1)  # the last slow requests end
        stop.set()
        for c in clients:
            c.join(30)

    with lock:
        done = list(results)
    non_2xx = [r for r in done if r[1] not in (0,) and not 200 <= r[1] < 300]
    errors = [r for r in done if r[1] == 0]
    cut = [r for r in done if r[0] != "/" and 200 <= r[1] < 300 and "done" not in r[2]]
    slow = [r for r in done if r[0] != "/"]
    for label, rows in (("non-2xx", non_2xx), ("errors", errors), ("cut", cut)):
        if rows:
            print("%s: %r" % (label, rows[:5]))
    added = [a - b for a, b in zip(lb_waves, plain_waves)]
    ack_p50, ack_p99, ack_max = acks()
    print("non_2xx=%d errors=%d cut=%d requests=%d slow_requests=%d lb_wave_p50_s=%.2f lb_wave_max_s=%.2f "
          "plain_wave_p50_s=%.2f plain_wave_max_s=%.2f added_wave_p50_s=%.2f added_wave_max_s=%.2f "
          "ack_p50_ms=%.0f ack_p99_ms=%.0f ack_max_ms=%.0f edges=%d swarm=n/a"
          % (len(non_2xx), len(errors), len(cut), len(done), len(slow), statistics.median(lb_waves),
             max(lb_waves), statistics.median(plain_waves), max(plain_waves), statistics.median(added), max(added),
             ack_p50, ack_p99, ack_max, EDGES))


if __name__ == "__main__":
    main()
