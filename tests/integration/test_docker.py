"""Tasks as real containers: the server's local agent and `berth agent` processes
on this host's real Docker engine (started by dockerd.py if needed), the test image
built with `docker import` from busybox-static. Each scenario checks what Docker
itself shows (`docker inspect`, `docker ps`), not only what berth says.

Every test labels its work with its own node ids and removes its containers at the
end, so tests can share the engine. Waits are deadlines for a slow machine, never
claims about speed.
"""

import contextlib
import json
import os
import signal
import subprocess
import time

import dockerd
from harness import DockerAgent, Server, check, cli, expect_exit, expect_status, timeout, wait_until

SERVER_ARGS = ["--node-lost-after", "3s", "--heartbeat-interval", "500ms"]


def setup_suite():
    """Docker up and the test image built, once, before these tests. Per-task
    networks an earlier run left behind (its processes killed mid-test) are
    removed when unused: Docker's default pools hold only about 31 networks."""
    dockerd.test_image(hold=False)
    subprocess.run(["docker", "network", "prune", "-f", "--filter", "label=berth.task"], capture_output=True)
LONG = 90.0  # deadline for anything Docker does on a loaded 2-core machine


def docker(*args, check_rc=True):
    r = subprocess.run(["docker"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=120)
    if check_rc and r.returncode != 0:
        raise AssertionError("docker %s failed: %s" % (" ".join(args), r.stderr.strip()))
    return r.stdout


def inspect(ref):
    return json.loads(docker("inspect", ref))[0]


def containers(node, running_only=True, **labels):
    """Docker's containers of `node` (and `labels`), as inspect documents."""
    args = ["ps", "-q", "--no-trunc", "--filter", "label=berth.node=" + node]
    if not running_only:
        args.insert(1, "-a")
    for k, v in labels.items():
        args += ["--filter", "label=berth.%s=%s" % (k, v)]
    ids = docker(*args).split()
    return [inspect(i) for i in ids] if ids else []


def remove_node_containers(node):
    ids = docker("ps", "-aq", "--filter", "label=berth.node=" + node).split()
    if ids:
        docker("rm", "-f", *ids, check_rc=False)
    nets = docker("network", "ls", "-q", "--filter", "label=berth.node=" + node).split()
    if nets:
        docker("network", "rm", *nets, check_rc=False)


def local_node(s):
    path = os.path.join(s.data_dir, "agent", "node-id")
    wait_until(lambda: os.path.exists(path), wait=LONG, what="the local agent's node id")
    with open(path) as f:
        node = f.read().strip()
    wait_until(lambda: any(n["nodeId"] == node and n["agentConnected"] for n in nodes(s)), wait=LONG,
               what="the local agent connected")
    return node


@contextlib.contextmanager
def all_in_one(args=()):
    """A server with its local agent; yields (server, node id); removes the node's containers after."""
    dockerd.test_image()
    s = Server(args=SERVER_ARGS + list(args), local_agent=True)
    node = None
    try:
        node = local_node(s)
        yield s, node
    finally:
        if s.alive():
            s.stop(wait=60)
        if node:
            remove_node_containers(node)


def agent_token(s):
    r = expect_status(s.request("POST", "/v1/tokens", {"role": "agent"}), 201, "create an agent token")
    return r.json()["token"]["secret"]


def register(s, family, containers_, **task):
    body = dict(task, family=family, containerDefinitions=containers_)
    r = expect_status(s.request("POST", "/v1/taskdefinitions", body), 201, "register " + family)
    return r.json()["taskDefinition"]["revision"]


def box(name, command, **extra):
    return dict(extra, name=name, image=dockerd.IMAGE, command=["sh", "-c", command])


def nodes(s):
    return expect_status(s.request("GET", "/v1/nodes"), 200, "list nodes").json()["containerInstances"]


def tasks(s, **query):
    q = dict(query, maxResults="1000")
    path = "/v1/tasks?" + "&".join("%s=%s" % kv for kv in sorted(q.items()))
    return expect_status(s.request("GET", path), 200, "list tasks").json()["tasks"]


def task(s, task_id):
    return expect_status(s.request("GET", "/v1/tasks/" + task_id), 200, "describe task").json()["task"]


def service(s, name):
    return expect_status(s.request("GET", "/v1/services/" + name), 200, "describe " + name).json()["service"]


def create_service(s, name, family, count, **extra):
    body = dict(extra, serviceName=name, taskDefinition=family, desiredCount=count)
    expect_status(s.request("POST", "/v1/services", body), 201, "create service " + name)


def running(s, **query):
    return [t for t in tasks(s, **query) if t["lastStatus"] == "RUNNING"]


def wait_running(s, count, what, **query):
    wait_until(lambda: len(running(s, **query)) == count, wait=LONG, step=0.3, what=what)
    return running(s, **query)


def run_task(s, family):
    r = expect_status(s.request("POST", "/v1/tasks", {"taskDefinition": family, "count": 1}), 200, "run " + family)
    check(r.json()["tasks"], "nothing placed: %r" % r.json())
    return r.json()["tasks"][0]["taskId"]


@timeout(150)
def test_docker_service_of_five_replicas_as_containers():
    with all_in_one() as (s, node):
        register(s, "dk-web", [box("web", "httpd -f -p 8080 -h /", cpu=256, memory=48, memoryReservation=32,
                                    portMappings=[{"containerPort": 8080}],
                                    environment=[{"name": "GREETING", "value": "hello"}],
                                    dockerLabels={"team": "edge"}, workingDirectory="/tmp", stopTimeout=5)])
        create_service(s, "dk-web", "dk-web", 5)
        ts = wait_running(s, 5, "5 running tasks", service="dk-web")
        cs = containers(node, service="dk-web")
        check(len(cs) == 5, "docker shows %d containers of the service, not 5" % len(cs))
        by_task = {c["Config"]["Labels"]["berth.task"]: c for c in cs}
        check(sorted(by_task) == sorted(t["taskId"] for t in ts), "containers and tasks differ")
        for t in ts:
            c = by_task[t["taskId"]]
            labels = c["Config"]["Labels"]
            check(c["Name"] == "/berth-%s-web" % t["taskId"], "container name %s" % c["Name"])
            check(labels["berth.cluster"] == "default" and labels["berth.node"] == node
                  and labels["berth.service"] == "dk-web" and labels["berth.container"] == "web"
                  and labels["team"] == "edge", "labels %r" % labels)
            hc = c["HostConfig"]
            check(hc["Memory"] == 48 << 20 and hc["MemoryReservation"] == 32 << 20,
                  "memory %r / %r" % (hc["Memory"], hc["MemoryReservation"]))
            check(hc["CpuShares"] == 256, "CpuShares %r" % hc["CpuShares"])
            check("GREETING=hello" in c["Config"]["Env"], "env %r" % c["Config"]["Env"])
            check(c["Config"]["WorkingDir"] == "/tmp" and c["Config"]["StopTimeout"] == 5, "config %r" % c["Config"])
            host_port = int(c["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
            # What berth reports is what Docker chose.
            bindings = t["containers"][0]["networkBindings"]
            check(any(b["hostPort"] == host_port and b["containerPort"] == 8080 for b in bindings),
                  "reported bindings %r, docker port %d" % (bindings, host_port))
            check(t["containers"][0]["runtimeId"] == c["Id"], "runtimeId is not Docker's id")
        # The port really serves.
        port = int(cs[0]["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/etc/passwd")
        check(conn.getresponse().status == 200, "the container's port does not answer")


@timeout(150)
def test_docker_containers_of_a_task_reach_each_other_by_name():
    with all_in_one() as (s, node):
        register(s, "dk-pair", [
            box("db", "echo up > /tmp/index.html; httpd -f -p 5000 -h /tmp", memory=32, stopTimeout=2),
            box("app", "until wget -q -O /tmp/got http://db:5000/index.html; do sleep 0.5; done; "
                       "echo reached $(cat /tmp/got); sleep 3600", memory=32, stopTimeout=2,
                dependsOn=[{"containerName": "db", "condition": "START"}]),
        ])
        task_id = run_task(s, "dk-pair")
        wait_until(lambda: task(s, task_id)["lastStatus"] == "RUNNING", wait=LONG, what="the task RUNNING")
        wait_until(lambda: "reached up" in docker("logs", "berth-%s-app" % task_id), wait=LONG,
                   what="app reaching db by name")
        net = inspect("berth-%s-app" % task_id)["HostConfig"]["NetworkMode"]
        check(net == "berth-" + task_id, "network mode %r" % net)
        # The task's network goes with the task.
        expect_status(s.request("POST", "/v1/tasks/%s/stop" % task_id), 200, "stop")
        wait_until(lambda: task(s, task_id)["lastStatus"] == "STOPPED", wait=LONG, what="the task STOPPED")
        wait_until(lambda: not docker("network", "ls", "-q", "--filter", "name=berth-" + task_id).split(),
                   wait=LONG, what="the task's network removed")


@timeout(150)
def test_docker_killed_container_is_reported_and_replaced():
    with all_in_one() as (s, node):
        register(s, "dk-kill", [box("main", "sleep 3600", memory=16, stopTimeout=2)])
        create_service(s, "dk-kill", "dk-kill", 2)
        ts = wait_running(s, 2, "2 running tasks", service="dk-kill")
        victim = ts[0]["taskId"]
        docker("kill", "berth-%s-main" % victim)
        wait_until(lambda: task(s, victim)["lastStatus"] == "STOPPED", wait=LONG, what="the killed task STOPPED")
        t = task(s, victim)
        check(t["containers"][0].get("exitCode") == 137, "exit code %r" % t["containers"][0].get("exitCode"))
        check("Essential container" in t.get("stoppedReason", ""), "stoppedReason %r" % t.get("stoppedReason"))
        wait_until(lambda: len(running(s, service="dk-kill")) == 2
                   and victim not in [x["taskId"] for x in running(s, service="dk-kill")], wait=LONG,
                   what="a replacement running")
        check(len(containers(node, service="dk-kill")) == 2, "docker does not run 2 containers")
        # A container removed behind the agent's back: reported, replaced.
        gone = running(s, service="dk-kill")[0]["taskId"]
        docker("rm", "-f", "berth-%s-main" % gone)
        wait_until(lambda: task(s, gone)["lastStatus"] == "STOPPED", wait=LONG, what="the removed task STOPPED")
        check("removed" in task(s, gone)["stoppedReason"], "stoppedReason %r" % task(s, gone)["stoppedReason"])
        wait_until(lambda: len(running(s, service="dk-kill")) == 2
                   and gone not in [x["taskId"] for x in running(s, service="dk-kill")], wait=LONG,
                   what="a replacement of the removed task")


@timeout(180)
def test_docker_agent_restart_adopts_containers():
    dockerd.test_image()
    with Server(args=SERVER_ARGS) as s:
        a = DockerAgent(s, agent_token(s), attrs=["zone=a"])
        node = a.node_id(wait=LONG)
        try:
            register(s, "dk-adopt", [box("main", "sleep 3600", memory=16, stopTimeout=2)])
            create_service(s, "dk-adopt", "dk-adopt", 3)
            wait_running(s, 3, "3 running tasks", service="dk-adopt")
            before = {c["Id"]: c["State"]["StartedAt"] for c in containers(node)}
            check(len(before) == 3, "docker shows %d containers" % len(before))
            # A task network left behind (a crash between a task's end and its
            # network's removal) goes; another node's network stays.
            orphan, foreign = "berth-it-orphan-%d" % os.getpid(), "berth-it-foreign-%d" % os.getpid()
            docker("network", "create", "--label", "berth.node=" + node, "--label", "berth.task=gone-task", orphan)
            docker("network", "create", "--label", "berth.node=some-other-node", "--label", "berth.task=t", foreign)
            a.restart(signal.SIGKILL)
            check(a.node_id() == node, "the node id changed across the restart")
            wait_until(lambda: any(n["nodeId"] == node and n["agentConnected"] for n in nodes(s)), wait=LONG,
                       what="the agent back")
            time.sleep(3)  # some reports and a resync after the restart
            after = {c["Id"]: c["State"]["StartedAt"] for c in containers(node)}
            check(after == before, "containers changed across the agent restart: %r -> %r" % (before, after))
            check(len(running(s, service="dk-adopt")) == 3, "the service is no longer at 3 running tasks")
            check("adopted running tasks" in a.logs(), "the agent did not say it adopted: " + a.logs()[-800:])
            names = lambda: docker("network", "ls", "--format", "{{.Name}}").split()
            wait_until(lambda: orphan not in names(), wait=LONG, what="the orphaned task network removed")
            check(foreign in names(), "another node's network was removed")
        finally:
            a.kill()
            remove_node_containers(node)
            for n in ("berth-it-orphan-%d" % os.getpid(), "berth-it-foreign-%d" % os.getpid()):
                docker("network", "rm", n, check_rc=False)


@timeout(240)
def test_docker_server_away_for_30s_keeps_containers_and_reports_after():
    dockerd.test_image()
    s = Server(args=["--heartbeat-interval", "500ms"])  # the default grace (10 s) after a restart
    a = DockerAgent(s, agent_token(s))
    node = a.node_id(wait=LONG)
    try:
        register(s, "dk-away", [box("main", "sleep 3600", memory=16, stopTimeout=2)])
        create_service(s, "dk-away", "dk-away", 2)
        ts = wait_running(s, 2, "2 running tasks", service="dk-away")
        ids = sorted(c["Id"] for c in containers(node))
        s.stop(wait=60)
        # While no server answers: the workload runs on; one container dies.
        time.sleep(10)
        victim = ts[0]["taskId"]
        docker("kill", "berth-%s-main" % victim)
        time.sleep(20)
        alive = [c for c in containers(node)]
        check(len(alive) == 1 and alive[0]["Id"] in ids, "with the server away, docker runs %r" % alive)
        s.start()
        # The report of the death arrives; the service replaces the task.
        wait_until(lambda: task(s, victim)["lastStatus"] == "STOPPED", wait=LONG, what="the death reported")
        check(task(s, victim)["containers"][0].get("exitCode") == 137,
              "exit code: %r\nserver log:\n%s\nagent log:\n%s" % (task(s, victim), s.logs()[-3000:], a.logs()[-3000:]))
        wait_running(s, 2, "2 running tasks again", service="dk-away")
        check(ts[1]["taskId"] in [t["taskId"] for t in running(s, service="dk-away")],
              "the surviving task was not kept")
        check(alive[0]["Id"] in [c["Id"] for c in containers(node)], "the surviving container was restarted")
    finally:
        a.kill()
        if s.alive():
            s.stop(wait=60)
        remove_node_containers(node)


@timeout(180)
def test_docker_two_agents_service_spread_over_both():
    dockerd.test_image()
    with Server(args=SERVER_ARGS) as s:
        token = agent_token(s)
        a = DockerAgent(s, token, attrs=["zone=a"])
        b = DockerAgent(s, token, attrs=["zone=b"])
        na, nb = a.node_id(wait=LONG), b.node_id(wait=LONG)
        try:
            check(na != nb, "both agents have node id %s" % na)
            # Both connected before the service exists (an id on disk comes earlier).
            wait_until(lambda: {n["nodeId"] for n in nodes(s) if n["agentConnected"]} >= {na, nb}, wait=LONG,
                       what="both agents connected")
            register(s, "dk-spread", [box("main", "sleep 3600", memory=16, stopTimeout=2)])
            create_service(s, "dk-spread", "dk-spread", 4)
            wait_running(s, 4, "4 running tasks", service="dk-spread")
            ca, cb = containers(na), containers(nb)
            check(len(ca) == 2 and len(cb) == 2, "spread gave %d on %s and %d on %s" % (len(ca), na, len(cb), nb))
        finally:
            a.kill()
            b.kill()
            remove_node_containers(na)
            remove_node_containers(nb)


@timeout(150)
def test_docker_fixed_host_port_never_placed_twice_on_a_node():
    with all_in_one() as (s, node):
        port = 20000 + os.getpid() % 20000
        register(s, "dk-port", [box("main", "httpd -f -p 80 -h /", memory=16, stopTimeout=2,
                                     portMappings=[{"containerPort": 80, "hostPort": port}])])
        create_service(s, "dk-port", "dk-port", 2)
        wait_running(s, 1, "1 running task", service="dk-port")
        wait_until(lambda: any("unable to place" in e["message"] for e in service(s, "dk-port")["events"]),
                   wait=LONG, what="an unable-to-place event")
        cs = containers(node, service="dk-port")
        check(len(cs) == 1, "docker runs %d containers of the service" % len(cs))
        check(cs[0]["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"] == str(port), "host port binding")
        msg = [e["message"] for e in service(s, "dk-port")["events"] if "unable to place" in e["message"]][0]
        check("port" in msg, "the event does not name the port: %r" % msg)


@timeout(150)
def test_docker_essential_exit_stops_task_nonessential_does_not():
    with all_in_one() as (s, node):
        register(s, "dk-ess", [
            box("main", "sleep 4; exit 3", memory=16),
            box("side", "sleep 3600", memory=16, essential=False, stopTimeout=2),
        ])
        register(s, "dk-noness", [
            box("main", "sleep 3600", memory=16, stopTimeout=2),
            box("side", "exit 5", memory=16, essential=False),
        ])
        ess = run_task(s, "dk-ess")
        noness = run_task(s, "dk-noness")
        wait_until(lambda: task(s, ess)["lastStatus"] == "STOPPED", wait=LONG, what="the task STOPPED")
        t = task(s, ess)
        codes = {c["name"]: c.get("exitCode") for c in t["containers"]}
        check(codes.get("main") == 3, "main's exit code %r" % codes)
        check("Essential container" in t["stoppedReason"], "stoppedReason %r" % t["stoppedReason"])
        # The sidecar was stopped with the task.
        wait_until(lambda: inspect("berth-%s-side" % ess)["State"]["Status"] == "exited", wait=LONG,
                   what="the sidecar stopped")
        # A non-essential container exiting alone leaves its task running.
        wait_until(lambda: inspect("berth-%s-side" % noness)["State"]["Status"] == "exited", wait=LONG,
                   what="the non-essential container exited")
        time.sleep(2)
        check(task(s, noness)["lastStatus"] == "RUNNING", "the task stopped: %r" % task(s, noness))
        side = [c for c in task(s, noness)["containers"] if c["name"] == "side"][0]
        check(side.get("exitCode") == 5, "side's exit code %r" % side)


@timeout(180)
def test_docker_failing_health_check_replaces_the_task():
    with all_in_one() as (s, node):
        # Healthy until the marker file appears.
        register(s, "dk-health", [box("main", "sleep 3600", memory=16, stopTimeout=2,
                                       healthCheck={"command": ["CMD-SHELL", "test ! -f /tmp/sick"],
                                                    "interval": 5, "timeout": 2, "retries": 1})])
        create_service(s, "dk-health", "dk-health", 1)
        wait_until(lambda: any(t["healthStatus"] == "HEALTHY" for t in running(s, service="dk-health")),
                   wait=LONG, what="a HEALTHY task")
        first = running(s, service="dk-health")[0]["taskId"]
        docker("exec", "berth-%s-main" % first, "touch", "/tmp/sick")
        wait_until(lambda: task(s, first)["lastStatus"] == "STOPPED", wait=LONG, what="the sick task STOPPED")
        check("health" in task(s, first)["stoppedReason"], "stoppedReason %r" % task(s, first)["stoppedReason"])
        wait_until(lambda: any(t["taskId"] != first and t["healthStatus"] == "HEALTHY"
                               for t in running(s, service="dk-health")), wait=LONG, what="a healthy replacement")


@timeout(240)
def test_docker_rolling_update_within_min_max_percent():
    with all_in_one() as (s, node):
        register(s, "dk-roll", [box("main", "sleep 3600", memory=16, stopTimeout=1,
                                     environment=[{"name": "V", "value": "1"}])])
        create_service(s, "dk-roll", "dk-roll", 3,
                       deploymentConfiguration={"minimumHealthyPercent": 50, "maximumPercent": 100})
        wait_running(s, 3, "3 running tasks", service="dk-roll")
        register(s, "dk-roll", [box("main", "sleep 3600", memory=16, stopTimeout=1,
                                     environment=[{"name": "V", "value": "2"}])])
        expect_status(s.request("PATCH", "/v1/services/dk-roll", {"taskDefinition": "dk-roll:2"}), 200, "update")
        most, least = 0, 99
        deadline = time.monotonic() + LONG * 2
        while time.monotonic() < deadline:
            cs = containers(node, service="dk-roll")
            most = max(most, len(cs))
            least = min(least, len(cs))
            v2 = [c for c in cs if "V=2" in c["Config"]["Env"]]
            if len(v2) == 3 and len(cs) == 3:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the rollout did not finish: %r" % service(s, "dk-roll")["deployments"])
        # maximumPercent 100: never more than 3 running; minimumHealthyPercent 50: never fewer than 2.
        check(most <= 3, "docker ran %d containers at once (max 100%% of 3)" % most)
        check(least >= 2, "docker ran only %d containers at once (min 50%% of 3)" % least)
        wait_until(lambda: service(s, "dk-roll")["deployments"][0]["rolloutState"] == "COMPLETED", wait=LONG,
                   what="the deployment COMPLETED")


@timeout(120)
def test_docker_logs_follow_streams_new_lines():
    with all_in_one() as (s, node):
        register(s, "dk-logs", [box("main", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done",
                                     memory=16, stopTimeout=1)])
        task_id = run_task(s, "dk-logs")
        wait_until(lambda: task(s, task_id)["lastStatus"] == "RUNNING", wait=LONG, what="the task RUNNING")
        wait_until(lambda: len(docker("logs", "berth-%s-main" % task_id).splitlines()) >= 3, wait=LONG,
                   what="three lines of output")
        env = dict(os.environ, BERTH_SERVER=s.url, BERTH_TOKEN=s.token)
        # The README's flow: the id `berth ps` shows.
        ps = expect_exit(cli(["ps"], env=env), 0, "berth ps").stdout
        shown = [l.split()[0] for l in ps.splitlines()[1:] if l.split() and task_id.endswith(l.split()[0])]
        check(len(shown) == 1, "berth ps does not show %s: %s" % (task_id, ps))
        r = cli(["logs", shown[0], "--tail", "2"], env=env)
        check(r.returncode == 0 and "tick" in r.stdout, "logs --tail: %r %r" % (r.stdout, r.stderr))
        check(len(r.stdout.strip().splitlines()) == 2, "--tail 2 printed %r" % r.stdout)
        proc = subprocess.Popen([os.environ.get("BERTH_BINARY", "build/berth"), "logs", shown[0], "-f", "--tail", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            seen = []
            deadline = time.monotonic() + LONG
            while len(seen) < 4 and time.monotonic() < deadline:
                line = proc.stdout.readline().decode()
                if not line:
                    break
                seen.append(line.strip())
            check(len(seen) >= 4, "logs -f gave %r; stderr %r" % (seen, proc.stderr.read1(2000) if proc.poll() else ""))
            numbers = [int(x.split()[1]) for x in seen]
            check(numbers == sorted(numbers) and len(set(numbers)) == len(numbers), "lines out of order: %r" % seen)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
        r = cli(["logs", task_id, "--container", "nope"], env=env)
        check(r.returncode == 1 and "nope" in r.stderr, "a missing container: %r %r" % (r.returncode, r.stderr))


@timeout(150)
def test_docker_service_runs_an_image_from_the_builtin_registry():
    ref = None
    try:
        with all_in_one() as (s, node):
            # Pushed with the admin token from a private Docker config (no global
            # login); the local agent pulls it with its own token: no `docker login`
            # on the node.
            cfg = os.path.join(os.path.dirname(s.data_dir), "docker-config")
            os.makedirs(cfg, exist_ok=True)
            ref = "127.0.0.1:%d/dk/box:1" % s.port
            r = subprocess.run(["docker", "--config", cfg, "login", "127.0.0.1:%d" % s.port, "-u", "admin",
                                "--password-stdin"], input=s.token, capture_output=True, text=True, timeout=60)
            check(r.returncode == 0, "docker login: %s" % r.stderr)
            docker("tag", dockerd.IMAGE, ref)
            r = subprocess.run(["docker", "--config", cfg, "push", ref], capture_output=True, text=True, timeout=120)
            check(r.returncode == 0, "docker push: %s" % r.stderr)
            docker("rmi", ref)  # the agent must pull it
            register(s, "dk-reg", [{"name": "main", "image": ref, "memory": 16, "stopTimeout": 1,
                                     "command": ["sleep", "3600"]}])
            create_service(s, "dk-reg", "dk-reg", 2)
            wait_running(s, 2, "2 running tasks of the registry's image", service="dk-reg")
            for c in containers(node, service="dk-reg"):
                check(c["Config"]["Image"] == ref, "container image %r" % c["Config"]["Image"])
    finally:
        if ref:
            docker("rmi", "-f", ref, check_rc=False)


@timeout(300)
def test_docker_engine_restart_is_noticed_and_tasks_replaced():
    # Restarting dockerd touches every test on this engine: wait for the others.
    dockerd.exclusive_engine()
    with all_in_one() as (s, node):
        register(s, "dk-engine", [box("main", "sleep 3600", memory=16, stopTimeout=1)])
        create_service(s, "dk-engine", "dk-engine", 2)
        before = {t["taskId"] for t in wait_running(s, 2, "2 running tasks", service="dk-engine")}
        # Never take down containers that are not the tests' own.
        foreign = [i for i in docker("ps", "-q").split() if i not in docker("ps", "-q", "--filter", "label=berth.task").split()]
        check(not foreign, "refusing to restart dockerd: %d running containers are not this test suite's" % len(foreign))
        subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=False)
        # A stopped dockerd may stay a zombie when nothing reaps it: only live ones count.
        live = lambda: [st for st in subprocess.run(["ps", "-C", "dockerd", "-o", "stat="], capture_output=True,
                                                    text=True).stdout.split() if not st.startswith("Z")]
        wait_until(lambda: not live(), wait=LONG, what="dockerd to stop")
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "packaging", "ensure-docker.sh")
        r = subprocess.run(["sh", script], capture_output=True, text=True, timeout=180)
        check(r.returncode == 0, "dockerd did not come back: %s" % r.stderr)
        # The daemon's restart ended the containers; the agent notices, reports them
        # stopped, and the service runs replacements on the engine that came back.
        wait_until(lambda: all(task(s, t)["lastStatus"] == "STOPPED" for t in before), wait=LONG,
                   what="the tasks the restart ended reported STOPPED")
        try:
            now = {t["taskId"] for t in wait_running(s, 2, "2 replacement tasks", service="dk-engine")}
        except AssertionError as e:
            raise AssertionError("%s\ntasks: %r\nlog:\n%s" % (e, [(t["taskId"][:8], t["lastStatus"], t.get("stoppedReason"))
                                                                 for t in tasks(s, service="dk-engine")], s.logs()[-4000:]))
        check(not (now & before), "old tasks still counted as running: %r" % (now & before))
        wait_until(lambda: len(containers(node, service="dk-engine")) == 2, wait=LONG,
                   what="docker running the 2 replacements")
        check("docker engine lost" in s.logs(), "the agent did not say it lost the engine")


@timeout(120)
def test_docker_node_reserves_ssh_and_the_servers_port():
    with all_in_one() as (s, node):
        n = [x for x in nodes(s) if x["nodeId"] == node][0]
        ports = [r for r in n["registeredResources"] if r["name"] == "PORTS"][0]["stringSetValue"]
        check("22" in ports and str(s.port) in ports, "registered PORTS %r lack 22 or %d" % (ports, s.port))
        register(s, "dk-ssh", [box("main", "sleep 3600", memory=16, stopTimeout=1,
                                    portMappings=[{"containerPort": 22, "hostPort": 22}])])
        create_service(s, "dk-ssh", "dk-ssh", 1)
        wait_until(lambda: any("unable to place" in e["message"] and "port" in e["message"]
                               for e in service(s, "dk-ssh")["events"]), wait=LONG,
                   what="an unable-to-place event naming the port")
        check(not containers(node, service="dk-ssh"), "a container was made for a reserved port")


def docker_events_since(since, until, node, event):
    """Container `event`s of `node` Docker recorded between unix times `since` and `until`."""
    out = docker("events", "--since", "%.3f" % since, "--until", "%.3f" % until, "--format", "{{.ID}}",
                 "--filter", "type=container", "--filter", "event=" + event, "--filter", "label=berth.node=" + node)
    return out.split()


@timeout(240)
def test_docker_scale_down_cancels_queued_starts():
    """Scale to a few hundred, then at once to 0: the agent's queued creates and
    starts are dropped, the containers already created are removed, never
    started; after the scale-down is acknowledged no more containers start than
    the agent had calls in flight, and none runs soon after."""
    concurrency = 4
    with all_in_one(["--docker-concurrency", str(concurrency)]) as (s, node):
        register(s, "dk-many", [box("app", "sleep 3600", memory=32, stopTimeout=2)])
        create_service(s, "dk-many", "dk-many", 3)
        wait_running(s, 3, "3 running tasks", service="dk-many")
        expect_status(s.request("PATCH", "/v1/services/dk-many", {"desiredCount": 300}), 200, "scale to 300")
        wait_until(lambda: len(docker_events_since(time.time() - 60, time.time(), node, "start")) >= 8, wait=LONG,
                   step=0.2, what="a few of the new tasks started")
        expect_status(s.request("PATCH", "/v1/services/dk-many", {"desiredCount": 0}), 200, "scale to 0")
        # The service controller stops the tasks in the log entry after the one
        # that took the new count: the clock starts when that is applied.
        wait_until(lambda: not [t for t in tasks(s, service="dk-many") if t["desiredStatus"] != "STOPPED"],
                   wait=10, step=0.05, what="every task desired STOPPED after the scale-down")
        acked = time.time()

        def none_left():
            left = docker("ps", "-aq", "--filter", "label=berth.node=" + node, "--filter",
                          "label=berth.service=dk-many", "--filter", "status=running", "--filter", "status=created")
            return not left.split()
        # Those that ran are stopped (and kept until --container-retention);
        # those created for tasks told to stop meanwhile are removed.
        wait_until(none_left, wait=LONG, step=0.5, what="no container of the service running or created")
        late = docker_events_since(acked, time.time(), node, "start")
        check(len(late) <= concurrency,
              "%d containers started after the scale-down was acknowledged (at most %d calls were in flight)"
              % (len(late), concurrency))
        created = docker_events_since(acked - 120, time.time(), node, "create")
        check(len(created) < 150, "%d containers were created: queued creates were not dropped" % len(created))
