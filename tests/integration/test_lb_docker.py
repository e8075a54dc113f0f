"""Load balancing end to end on the real Docker engine: the all-in-one server's
local agent runs a service's tasks as containers and its proxy (src/proxy/)
takes the listener's port; real HTTP requests through that port reach the
containers, by the rules, and follow the service as it scales.

Waits are deadlines for a slow machine, never claims about speed.
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import dockerd
import harness
from harness import DockerAgent, Server, check, cli, expect_exit, expect_status, scratch_dir, timeout, wait_until
from test_docker import LONG, agent_token, all_in_one, box, docker, register, remove_node_containers, wait_running
from test_proxy import scrape


def setup_suite():
    import test_docker
    test_docker.setup_suite()


def berth(s, *args, code=0):
    env = {"BERTH_SERVER": s.url, "BERTH_TOKEN": s.token}
    return expect_exit(cli(list(args), env=env), code, "berth " + " ".join(args))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(port, path="/", host=None):
    """(status, body) of GET http://127.0.0.1:port/path, with `host` as the Host header."""
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path))
    if host:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def web(name, text):
    """A container answering every GET with `text` and the container's hostname."""
    return box(name, "mkdir -p /www && echo %s $(hostname) > /www/index.html && httpd -f -p 8080 -h /www" % text,
               memory=32, stopTimeout=2, portMappings=[{"containerPort": 8080}])


def slow_web(text):
    """A container whose /cgi-bin/slow?N answers "start", then after N seconds
    "done <text> <hostname>": a request cut by the container's stop shows as a
    body without its last line (the answer has begun, so no proxy may retry it).
    Its shell exits at SIGTERM, which ends the container at once, as an
    application that stops when told does."""
    script = "#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho start\\nsleep ${QUERY_STRING:-1}\\n" \
             "echo done %s $(hostname)\\n" % text
    return box("app", "mkdir -p /www/cgi-bin && echo %s $(hostname) > /www/index.html && printf '%s' > "
               "/www/cgi-bin/slow && chmod +x /www/cgi-bin/slow && trap 'exit 0' TERM && "
               "{ httpd -f -p 8080 -h /www & wait; }" % (text, script),
               memory=32, stopTimeout=2, portMappings=[{"containerPort": 8080}])


def healthy_targets(s, group, count):
    def ready():
        h = json.loads(berth(s, "tg", "health", group, "--json").stdout)["health"]
        ok = (len(h["targets"]) == count and all(t["state"] == "healthy" for t in h["targets"])
              and h["proxiesBehind"] == [])
        return ok and h
    return wait_until(ready, wait=LONG, step=0.3, what="%d healthy targets in %s, every proxy caught up" % (count, group))


@timeout(240)
def test_lb_docker_requests_reach_the_service_by_rules_and_follow_it_as_it_scales():
    with all_in_one() as (s, node):
        port = free_port()
        register(s, "lb-web", [web("app", "web")])
        register(s, "lb-api", [web("app", "api")])
        berth(s, "tg", "create", "web", "--protocol", "HTTP", "--port", "8080")
        berth(s, "tg", "create", "api", "--protocol", "HTTP", "--port", "8080", "--algorithm", "round_robin")
        berth(s, "lb", "create", "edge")
        # The node keeps the server's own port for itself: no listener there.
        server_port = s.url.rsplit(":", 1)[1]
        p = berth(s, "lb", "listener", "add", "edge", "--port", server_port, "--protocol", "HTTP",
                  "--default-tg", "web", code=1)
        check("reserved on node " + node in p.stderr, "a listener on a reserved port: %r" % p.stderr)
        berth(s, "lb", "listener", "add", "edge", "--port", str(port), "--protocol", "HTTP", "--default-tg", "web")
        berth(s, "lb", "rule", "add", "edge:%d" % port, "--priority", "10", "--host", "api.example.com",
              "--tg", "api")
        berth(s, "service", "create", "web", "--taskdef", "lb-web", "--count", "2", "--lb", "web:app:8080")
        berth(s, "service", "create", "api", "--taskdef", "lb-api", "--count", "1", "--lb", "api:app:8080")
        wait_running(s, 3, "three tasks running")
        healthy_targets(s, "web", 2)
        healthy_targets(s, "api", 1)

        # The node's proxy listens on the listener's port and spreads the default
        # group's requests over both containers; the rule sends api.example.com
        # to the other service.
        wait_until(lambda: get(port)[0] == 200, wait=LONG, step=0.3, what="the proxy answering on %d" % port)
        answers = [get(port) for _ in range(40)]
        check(all(code == 200 and body.startswith("web ") for code, body in answers),
              "default group answers: %r" % answers[:5])
        check(len({body for _, body in answers}) == 2, "both web containers answered: %r" % set(answers))
        code, body = get(port, host="api.example.com")
        check(code == 200 and body.startswith("api "), "the rule's group answered %r %r" % (code, body))
        code, body = get(port, host="API.Example.com:%d" % port)
        check(code == 200 and body.startswith("api "), "hosts match without case or port: %r %r" % (code, body))

        # Scaled to one, only the container that stays answers.
        expect_status(s.request("PATCH", "/v1/services/web", {"desiredCount": 1}), 200, "scale web to 1")
        healthy_targets(s, "web", 1)
        wait_until(lambda: len({get(port)[1] for _ in range(10)}) == 1, wait=LONG, step=0.3,
                   what="one web container answering")
        answers = [get(port) for _ in range(20)]
        check(all(code == 200 and body.startswith("web ") for code, body in answers) and len(set(answers)) == 1,
              "after the scale-in: %r" % set(answers))

        # No target left: 503 from the proxy, and the rule's group still answers.
        expect_status(s.request("PATCH", "/v1/services/web", {"desiredCount": 0}), 200, "scale web to 0")
        wait_until(lambda: get(port)[0] == 503, wait=LONG, step=0.3, what="503 with no healthy target")
        code, body = get(port, host="api.example.com")
        check(code == 200 and body.startswith("api "), "the other group unaffected: %r %r" % (code, body))

        # The listener removed: the port closes on the node.
        berth(s, "lb", "listener", "rm", "edge:%d" % port)
        wait_until(lambda: get(port)[0] == 0, wait=LONG, step=0.3, what="the listener's port closed")


@timeout(300)
def test_lb_docker_a_rolling_deploy_cuts_no_request_in_flight():
    """Old tasks are signalled only once the proxy took them out of rotation and
    their requests in flight ended: clients that keep 1- and 2-second requests
    going through a rolling deploy see every one of them whole. (The containers
    end at SIGTERM: a task signalled with a request in flight cuts it.)"""
    with all_in_one() as (s, node):
        port = free_port()
        register(s, "lb-slow", [slow_web("v1")])
        berth(s, "tg", "create", "web", "--protocol", "HTTP", "--port", "8080",
              "--attr", "deregistration_delay.timeout_seconds=60")
        berth(s, "lb", "create", "edge")
        berth(s, "lb", "listener", "add", "edge", "--port", str(port), "--protocol", "HTTP", "--default-tg", "web")
        berth(s, "service", "create", "web", "--taskdef", "lb-slow", "--count", "2", "--lb", "web:app:8080")
        wait_running(s, 2, "two tasks running")
        healthy_targets(s, "web", 2)
        wait_until(lambda: get(port)[0] == 200, wait=LONG, step=0.3, what="the proxy answering on %d" % port)
        register(s, "lb-slow", [slow_web("v2")])

        results, stop = [], threading.Event()

        def client(path):
            while not stop.is_set():
                results.append((path,) + get(port, path))

        clients = [threading.Thread(target=client, args=(path,))
                   for path in ("/cgi-bin/slow?2", "/cgi-bin/slow?1", "/cgi-bin/slow?1", "/")]
        for c in clients:
            c.start()
        try:
            time.sleep(1.5)  # requests in flight on both old tasks
            berth(s, "service", "update", "web", "--taskdef", "lb-slow:2")

            # While an old target drains, its task still runs and the server says
            # what it waits for.
            def draining():
                h = json.loads(berth(s, "tg", "health", "web", "--json").stdout)["health"]
                return [t for t in h["targets"] if t["state"] == "draining" and t.get("drain")]
            held = wait_until(draining, wait=LONG, step=0.1, what="a draining target held")
            wait_until(lambda: all(t["lastStatus"] == "STOPPED" for t in
                                   json.loads(berth(s, "task", "ls", "--json", "--all").stdout)["tasks"]
                                   if t["taskDefinitionArn"].endswith(":1")),
                       wait=LONG, step=0.3, what="the old tasks stopped")
            healthy_targets(s, "web", 2)
            time.sleep(2.5)  # the clients' requests that began on the old tasks end
        finally:
            stop.set()
            for c in clients:
                c.join(30)
        slow = [r for r in results if r[0] != "/"]
        cut = [r for r in results if r[1] != 200 or (r[0] != "/" and "done" not in r[2])]
        check(not cut, "%d of %d requests cut or failed during the deploy: %r" % (len(cut), len(results), cut[:5]))
        check(any("done v1" in r[2] for r in slow) and any("done v2" in r[2] for r in slow),
              "slow requests served by both revisions: %r" % sorted({r[2].split()[-2] for r in slow}))
        check(held[0]["drain"]["deregistrationDelaySeconds"] == 60, "drain: %r" % held[0])


@timeout(300)
def test_lb_docker_the_proxy_serves_on_while_the_server_is_down():
    """The control plane away (SIGKILL, 30 s) stops no request: the agent's proxy
    keeps the last targets, and a container that dies meanwhile is passed over
    (its connects are refused and retried on the other target, then it is
    ejected). Back, the server replaces the dead task and the proxy follows; the
    agent's --proxy-metrics-listen counted the requests. An agent restarted
    with the server away serves the configuration it kept; one that starts
    with a kept configuration the server no longer has for it drops it."""
    dockerd.test_image()
    s = Server(args=["--heartbeat-interval", "500ms"])
    token = agent_token(s)
    bad = subprocess.run([harness.BINARY, "agent", "--server", s.url, "--token", token, "--state-dir",
                          scratch_dir("agent-state"), "--proxy-metrics-listen", "127.0.0.1"],
                         capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    check(bad.returncode == 2 and "--proxy-metrics-listen: " in bad.stderr,
          "a bad --proxy-metrics-listen: exit %d, %r" % (bad.returncode, bad.stderr))
    metrics_port = free_port()
    a = DockerAgent(s, token, args=["--proxy-metrics-listen", "127.0.0.1:%d" % metrics_port])
    node = a.node_id(wait=LONG)
    try:
        # Served from the start; no load balancer has the node yet, so no proxy runs.
        page = wait_until(lambda: scrape_text(metrics_port), wait=LONG, step=0.3, what="the agent's metrics page")
        check(page.startswith("# no proxy runs on this node"), "metrics before any listener: %r" % page)
        port = free_port()
        register(s, "lb-away", [web("app", "web")])
        berth(s, "tg", "create", "web", "--protocol", "HTTP", "--port", "8080")
        berth(s, "service", "create", "web", "--taskdef", "lb-away", "--count", "2", "--publish", "%d:8080" % port)
        healthy_targets(s, "web-8080", 2)
        wait_until(lambda: get(port)[0] == 200, wait=LONG, step=0.3, what="the proxy answering on %d" % port)
        before = {t["taskId"] for t in healthy_targets(s, "web-8080", 2)["targets"]}

        results, stop = [], threading.Event()

        def client():
            while not stop.is_set():
                results.append(get(port))
                time.sleep(0.01)

        c = threading.Thread(target=client)
        c.start()
        try:
            time.sleep(1)
            s.kill()
            time.sleep(5)
            docker("kill", "berth-%s-app" % sorted(before)[0])
            time.sleep(25)
            served_away = len(results)
            s.start()
            # The death reported, the task replaced, the proxy given the new target.
            def replaced():
                h = healthy_targets(s, "web-8080", 2)
                return {t["taskId"] for t in h["targets"]} != before and h["proxies"] and h
            wait_until(replaced, wait=LONG, step=0.3, what="the dead task replaced and in rotation")
            time.sleep(1)
        finally:
            stop.set()
            c.join(30)
        failed = [r for r in results if r[0] != 200]
        check(served_away > 100, "only %d requests while the server was away" % served_away)
        check(not failed, "%d of %d requests failed: %r" % (len(failed), len(results), failed[:5]))
        # The node's proxy counted them.
        m = scrape(metrics_port)
        requests = sum(v for k, v in m.items() if k.startswith("berth_proxy_requests_total{") and
                       k.endswith(':%d/HTTP"}' % port))
        check(requests >= len(results), "%d requests counted on the listener, %d made" % (requests, len(results)))

        # An agent restarted while the server is away serves the configuration
        # it kept (STATE/proxy.json) from its start.
        s.kill()
        a.restart()
        wait_until(lambda: "serving the proxy configuration kept" in open(a.log_path).read(), wait=LONG, step=0.2,
                   what="the restarted agent applying the kept configuration")
        wait_until(lambda: get(port)[0] == 200, wait=LONG, step=0.3, what="the kept configuration serving on %d" % port)
        answers = [get(port) for _ in range(20)]
        check(all(code == 200 and body.startswith("web ") for code, body in answers),
              "with the server away after the agent's restart: %r" % answers[:5])

        # The balancer removed, then the server restarted (it forgets the node
        # was a member): an agent that starts with the old configuration kept
        # drops it at the server's first word, which has none.
        s.start()
        a.kill()
        berth(s, "lb", "rm", "web")
        s.stop(wait=60)
        s.start()
        a.restart()
        wait_until(lambda: "the kept one is dropped" in open(a.log_path).read(), wait=LONG, step=0.2,
                   what="the agent dropping the kept configuration")
        wait_until(lambda: get(port)[0] == 0, wait=LONG, step=0.3, what="port %d closed" % port)
    finally:
        a.kill()
        if s.alive():
            s.stop(wait=60)
        remove_node_containers(node)


@timeout(300)
def test_lb_docker_an_agent_upgrade_by_sigusr2_refuses_no_connection():
    """SIGUSR2: the agent starts its successor from the binary at its path (here
    the same one) with its arguments; the successor opens the kept proxy
    listeners beside the old ones (SO_REUSEPORT) and tells the old agent to go,
    which closes its listeners (net.ipv4.tcp_migrate_req=1, as docs/operations.md
    asks, hands over what is queued on them), finishes what is in flight and
    exits; then the successor takes the node. A client opening a new connection
    for every request all along sees no failure, and the new agent runs the
    node's tasks."""
    dockerd.test_image()
    migrate = "/proc/sys/net/ipv4/tcp_migrate_req"
    with open(migrate) as f:
        was = f.read().strip()
    with open(migrate, "w") as f:
        f.write("1")
    s = Server(args=["--heartbeat-interval", "500ms"])
    a = DockerAgent(s, agent_token(s))
    node = a.node_id(wait=LONG)
    try:
        port = free_port()
        register(s, "lb-up", [web("app", "web")])
        berth(s, "service", "create", "web", "--taskdef", "lb-up", "--count", "2", "--publish", "%d:8080" % port)
        healthy_targets(s, "web-8080", 2)
        wait_until(lambda: get(port)[0] == 200, wait=LONG, step=0.3, what="the proxy answering on %d" % port)

        results, stop = [], threading.Event()

        def client():
            while not stop.is_set():
                results.append(get(port))  # a new connection each time

        c = threading.Thread(target=client)
        c.start()
        try:
            time.sleep(1)
            old = a.proc.pid
            a.proc.send_signal(signal.SIGUSR2)
            a.proc.wait(60)  # the old agent, once its successor listens and its in-flight work ended
            wait_until(lambda: "the agent taken over from is gone; starting" in open(a.log_path).read(), wait=LONG,
                       step=0.2, what="the successor taking the node")
            during = len(results)
            time.sleep(2)
        finally:
            stop.set()
            c.join(30)
        failed = [r for r in results if r[0] != 200]
        check(during > 50 and len(results) > during, "requests: %d by the handover, %d in all" % (during, len(results)))
        check(not failed, "%d of %d requests failed: %r" % (len(failed), len(results), failed[:5]))
        log = open(a.log_path).read()
        check("SIGUSR2: started a new agent" in log and "handing over and stopping" in log, "the old agent's log")

        # The successor runs the node: scaled to 3, the new task starts and takes traffic.
        expect_status(s.request("PATCH", "/v1/services/web", {"desiredCount": 3}), 200, "scale web to 3")
        healthy_targets(s, "web-8080", 3)
        names = {get(port)[1] for _ in range(60)}
        check(len(names) == 3, "three containers answering after the handover: %r" % names)
        check(old != int(subprocess.run(["pgrep", "-f", "--", a.state_dir], capture_output=True, text=True)
                         .stdout.split()[0]), "the agent's pid is new")
    finally:
        subprocess.run(["pkill", "-f", "--", a.state_dir])
        a.kill()
        s.stop(wait=60)
        remove_node_containers(node)
        with open(migrate, "w") as f:
            f.write(was)


def scrape_text(port):
    """The body of GET /metrics on 127.0.0.1:port, or None while nothing answers there."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
            return r.read().decode()
    except OSError:
        return None


def health_web(text, healthy=True):
    """As web(), with /health answering 200 while /www/health exists (made at
    start when `healthy`): `docker exec rm` makes the container fail its check."""
    make = "echo ok > /www/health && " if healthy else ""
    return box("app", "mkdir -p /www && echo %s $(hostname) > /www/index.html && %shttpd -f -p 8080 -h /www"
               % (text, make), memory=32, stopTimeout=2, portMappings=[{"containerPort": 8080}])


def target_health(s, group):
    return {t["taskId"]: t for t in json.loads(berth(s, "tg", "health", group, "--json").stdout)["health"]["targets"]}


@timeout(300)
def test_lb_docker_a_target_failing_its_health_check_takes_no_traffic_and_is_replaced():
    """The group's check, run by the agent against the container's host port: a
    container whose /health starts answering 404 goes unhealthy
    (Target.ResponseCodeMismatch) and the proxy stops sending it requests while
    the service's grace period keeps it; back to 200, it returns to rotation. A
    service whose containers never pass has them stopped and replaced ("Task
    failed ELB health checks")."""
    dockerd.test_image()
    s = Server(args=["--heartbeat-interval", "500ms"])
    a = DockerAgent(s, agent_token(s))
    node = a.node_id(wait=LONG)
    try:
        port = free_port()
        register(s, "hc-web", [health_web("web")])
        register(s, "hc-sick", [health_web("sick", healthy=False)])
        checks = ["--health-path", "/health", "--health-interval", "5", "--health-timeout", "2",
                  "--healthy-threshold", "2", "--unhealthy-threshold", "2"]
        berth(s, "tg", "create", "web", "--protocol", "HTTP", "--port", "8080", *checks)
        berth(s, "tg", "create", "sick", "--protocol", "HTTP", "--port", "8080", *checks)
        shown = json.loads(berth(s, "tg", "describe", "web").stdout)
        check(shown["healthCheckPath"] == "/health" and shown["healthCheckIntervalSeconds"] == 5
              and shown["matcher"] == {"httpCode": "200-399"}, "the group's check: %r" % shown)
        berth(s, "lb", "create", "edge")
        berth(s, "lb", "listener", "add", "edge", "--port", str(port), "--protocol", "HTTP", "--default-tg", "web")
        berth(s, "service", "create", "web", "--taskdef", "hc-web", "--count", "2", "--lb", "web:app:8080",
              "--health-grace", "3600")
        h = healthy_targets(s, "web", 2)
        tasks = sorted(t["taskId"] for t in h["targets"])
        hostnames = {}
        for t in tasks:
            hostnames[t] = docker("inspect", "-f", "{{.Config.Hostname}}", "berth-%s-app" % t).strip()

        # One container starts failing its check: out of rotation, still running.
        victim, other = tasks
        docker("exec", "berth-%s-app" % victim, "rm", "/www/health")
        bad = wait_until(lambda: (lambda x: x["state"] == "unhealthy" and x)(target_health(s, "web")[victim]),
                         wait=LONG, step=0.3, what="the failing target unhealthy")
        check(bad["reason"] == "Target.ResponseCodeMismatch" and "[404]" in bad.get("description", ""),
              "why: %r" % bad)
        check(target_health(s, "web")[other]["state"] == "healthy", "the other stays healthy")
        wait_until(lambda: not json.loads(berth(s, "tg", "health", "web", "--json").stdout)["health"]["proxiesBehind"],
                   wait=LONG, step=0.3, what="the proxy caught up")
        answers = [get(port) for _ in range(30)]
        check(all(st == 200 and hostnames[other] in body for st, body in answers),
              "every request to the healthy target: %r" % answers[:5])
        task = expect_status(s.request("GET", "/v1/tasks/" + victim), 200).json()
        task = task.get("task", task)
        check(task["lastStatus"] == "RUNNING" and task["desiredStatus"] == "RUNNING",
              "within its grace period the task is kept: %r" % task)
        check(any(x["targetGroup"] == "web" and x["state"] == "unhealthy" for x in task.get("targetHealth", [])),
              "the task says why: %r" % task.get("targetHealth"))

        # Passing again: back in rotation.
        docker("exec", "berth-%s-app" % victim, "sh", "-c", "echo ok > /www/health")
        healthy_targets(s, "web", 2)
        seen = set()
        for _ in range(60):
            st, body = get(port)
            seen.update(t for t, name in hostnames.items() if st == 200 and name in body)
            if len(seen) == 2:
                break
        check(seen == set(tasks), "both targets answer again: %r" % seen)

        # Never passing, no grace: stopped and replaced.
        berth(s, "lb", "listener", "add", "edge", "--port", str(free_port()), "--protocol", "HTTP",
              "--default-tg", "sick")
        berth(s, "service", "create", "sick", "--taskdef", "hc-sick", "--count", "1", "--lb", "sick:app:8080")

        def failed_one():
            r = expect_status(s.request("GET", "/v1/tasks?service=sick&desiredStatus=STOPPED"), 200).json()
            return [t for t in r.get("tasks", []) if t.get("stoppedReason") == "Task failed ELB health checks"]
        wait_until(failed_one, wait=LONG, step=0.5, what="the never-healthy task stopped for its ELB check")
    finally:
        a.kill()
        s.stop(wait=60)
        remove_node_containers(node)


def exchange(port, data):
    """Sends `data` to 127.0.0.1:port and reads until the peer closes: (local port, text); (0, "") when refused."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            local = c.getsockname()[1]
            c.sendall(data)
            got = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                got += chunk
            return local, got.decode(errors="replace")
    except OSError:
        return 0, ""


@timeout(300)
def test_lb_docker_the_proxy_protocol_to_tcp_targets_and_from_a_balancer_in_front():
    """A TCP group with proxy_protocol_v2.enabled: the container (busybox nc,
    answering the first 28 bytes it got in hex) sees the v2 header with the
    client's address and port before the client's bytes. An HTTP listener with
    --proxy-protocol-from 127.0.0.1/32: a client that begins with a PROXY v1
    header is taken to be the address in it (the CGI target echoes
    X-Forwarded-For), and one that does not is closed unanswered."""
    with all_in_one() as (s, node):
        register(s, "lb-pp", [box("app", "nc -ll -p 8080 -e sh -c 'head -c 28 | od -An -tx1 | tr -d \" \\n\"'",
                                  memory=32, stopTimeout=2, portMappings=[{"containerPort": 8080}])])
        cgi = "#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho xff=$HTTP_X_FORWARDED_FOR\\n"
        register(s, "lb-xff", [box("app", "mkdir -p /www/cgi-bin && echo ok > /www/index.html && printf '%s' > "
                                          "/www/cgi-bin/xff && chmod +x /www/cgi-bin/xff && httpd -f -p 8080 -h /www"
                                   % cgi, memory=32, stopTimeout=2, portMappings=[{"containerPort": 8080}])])
        p = berth(s, "tg", "create", "bad", "--protocol", "HTTP", "--port", "8080", "--attr",
                  "proxy_protocol_v2.enabled=true", code=1)
        check("only TCP target groups" in p.stderr, "an HTTP group with the PROXY protocol: %r" % p.stderr)
        berth(s, "tg", "create", "pp", "--protocol", "TCP", "--port", "8080", "--attr", "proxy_protocol_v2.enabled=true")
        berth(s, "tg", "create", "xff", "--protocol", "HTTP", "--port", "8080")
        tcp_port, http_port = free_port(), free_port()
        berth(s, "lb", "create", "edge")
        berth(s, "lb", "listener", "add", "edge", "--port", str(tcp_port), "--protocol", "TCP", "--default-tg", "pp")
        p = berth(s, "lb", "listener", "add", "edge", "--port", str(http_port), "--protocol", "HTTP",
                  "--default-tg", "xff", "--proxy-protocol-from", "127.0.0.1/40", code=1)
        check("proxyProtocolFrom[0]" in p.stderr, "a bad CIDR: %r" % p.stderr)
        berth(s, "lb", "listener", "add", "edge", "--port", str(http_port), "--protocol", "HTTP",
              "--default-tg", "xff", "--proxy-protocol-from", "127.0.0.1/32")
        berth(s, "service", "create", "pp", "--taskdef", "lb-pp", "--count", "1", "--lb", "pp:app:8080")
        berth(s, "service", "create", "xff", "--taskdef", "lb-xff", "--count", "1", "--lb", "xff:app:8080")
        healthy_targets(s, "pp", 1)
        healthy_targets(s, "xff", 1)

        local, got = wait_until(lambda: (lambda r: len(r[1]) == 56 and r)(exchange(tcp_port, b"hello, target\n")),
                                wait=LONG, step=0.3, what="the TCP target answering through the listener")
        # The v2 signature, PROXY over TCP/IPv4, 12 bytes of addresses: the client's, then where it connected.
        check(got.startswith("0d0a0d0a000d0a515549540a" "21" "11" "000c" "7f000001" "7f000001"),
              "the header the target got: %s" % got)
        check(got[48:52] == "%04x" % local and got[52:56] == "%04x" % tcp_port,
              "the ports: %s (client %d, listener %d)" % (got, local, tcp_port))

        request = b"GET /cgi-bin/xff HTTP/1.1\r\nHost: xff.test\r\nConnection: close\r\n\r\n"
        local, got = wait_until(
            lambda: (lambda r: "xff=" in r[1] and r)(
                exchange(http_port, b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n" + request)),
            wait=LONG, step=0.3, what="the HTTP target answering through the listener")
        check("xff=203.0.113.7" in got, "the client is the one the PROXY header names: %r" % got)
        local, got = exchange(http_port, request)
        check(got == "", "a trusted peer without a PROXY header is closed unanswered: %r" % got)


def certificate(directory, name, host):
    """A self-signed P-256 certificate for `host` (and *.host): (cert path, key path)."""
    cert, key = os.path.join(directory, name + ".crt"), os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=" + host, "-addext", "subjectAltName=DNS:%s,DNS:*.%s" % (host, host),
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def bundle(directory, name, cert, key):
    path = os.path.join(directory, name + ".pem")
    with open(path, "w") as out, open(cert) as c, open(key) as k:
        out.write(c.read() + k.read())
    return path


def curl_https(port, host, ca, path="/"):
    """(status, body) of GET https://host:port/path resolved to 127.0.0.1 and trusting `ca`."""
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "--resolve", "%s:%d:127.0.0.1" % (host, port),
                        "--cacert", ca, "-w", "\\n%{http_code}", "https://%s:%d%s" % (host, port, path)],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        return 0, p.stderr
    body, _, code = p.stdout.rpartition("\n")
    return int(code), body


@timeout(240)
def test_lb_docker_https_listener_with_a_certificate_secret_and_a_redirect():
    with all_in_one() as (s, node):
        d = scratch_dir("certs")
        cert, key = certificate(d, "site", "web.test")
        other_cert, other_key = certificate(d, "other", "other.test")
        register(s, "lb-tls", [web("app", "tls")])
        berth(s, "tg", "create", "web", "--protocol", "HTTP", "--port", "8080")
        berth(s, "lb", "create", "edge")
        berth(s, "secret", "create", "site", "--from-file", bundle(d, "site", cert, key))
        berth(s, "secret", "create", "mixed", "--from-file", bundle(d, "mixed", cert, other_key))
        tls_port, http_port = free_port(), free_port()
        # A bundle whose key is not its certificate's is refused where it is named.
        p = berth(s, "lb", "listener", "add", "edge", "--port", str(tls_port), "--protocol", "HTTPS", "--cert",
                  "mixed", "--default-tg", "web", code=1)
        check("secret mixed" in p.stderr and "key" in p.stderr, "a mismatched key: %r" % p.stderr)
        p = berth(s, "lb", "listener", "add", "edge", "--port", str(tls_port), "--protocol", "HTTPS",
                  "--default-tg", "web", code=1)
        check("certificates" in p.stderr, "HTTPS without a certificate: %r" % p.stderr)
        berth(s, "lb", "listener", "add", "edge", "--port", str(tls_port), "--protocol", "HTTPS", "--cert", "site",
              "--default-tg", "web")
        berth(s, "lb", "listener", "add", "edge", "--port", str(http_port), "--protocol", "HTTP",
              "--redirect-https", str(tls_port))
        berth(s, "service", "create", "web", "--taskdef", "lb-tls", "--count", "1", "--lb", "web:app:8080")
        healthy_targets(s, "web", 1)

        code, body = wait_until(lambda: (lambda r: r[0] == 200 and r)(curl_https(tls_port, "web.test", cert)),
                                wait=LONG, step=0.3, what="https://web.test:%d answering" % tls_port)
        check(body.startswith("tls "), "through the HTTPS listener: %r" % body)
        code, body = curl_https(tls_port, "a.web.test", cert)
        check(code == 200, "a name the wildcard covers: %r %r" % (code, body))
        code, body = curl_https(tls_port, "web.test", other_cert)
        check(code == 0, "trusted by another CA: %r %r" % (code, body))

        p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                            "-H", "Host: web.test", "http://127.0.0.1:%d/a/b?c=1" % http_port],
                           capture_output=True, text=True, timeout=30)
        check(p.stdout == "301 https://web.test:%d/a/b?c=1" % tls_port, "redirect: %r %r" % (p.stdout, p.stderr))

        # The secret is the listener's: it cannot go.
        p = berth(s, "secret", "rm", "site", code=1)
        check("listener edge:%d" % tls_port in p.stderr, "secret rm in use: %r" % p.stderr)
        desc = berth(s, "lb", "describe", "edge").stdout
        check("certificates site" in desc and "redirect 301 to https port %d" % tls_port in desc, desc)

        # A renewed certificate (the secret rotated) serves from the proxies' next document on.
        renewed, renewed_key = certificate(d, "renewed", "web.test")
        berth(s, "secret", "rotate", "site", "--from-file", bundle(d, "renewed", renewed, renewed_key))
        wait_until(lambda: curl_https(tls_port, "web.test", renewed)[0] == 200, wait=LONG, step=0.3,
                   what="the renewed certificate served")
        code, body = curl_https(tls_port, "web.test", cert)
        check(code == 0, "the old certificate no longer served: %r %r" % (code, body))
