"""A cluster's task policy (docs/security.md, "Task policy"): host bind mounts, the
host's network and PID namespaces, the Docker socket, Docker volumes berth did not
make and log drivers that ship output elsewhere are refused at the API until an
admin allows them, and refused again by the agent on what it receives, against
the same policy narrowed by its host (symbolic links resolved there, the server's
data directory never mounted), so neither a stolen deploy token nor a forged
server can mount `/`.
"""

import http.server
import json
import os
import socketserver
import subprocess
import threading
import time

import dockerd
from harness import (DockerAgent, Server, check, cli, expect_exit, expect_status, scratch_dir, timeout,
                     wait_until)
from test_docker import LONG, all_in_one, box, docker, register, remove_node_containers, task, tasks


def setup_suite():
    dockerd.test_image(hold=False)


def env_for(s, token=None):
    return {"BERTH_SERVER": s.url, "BERTH_TOKEN": token or s.token, "BERTH_CA_FILE": s.ca_file}


def refused(resp, *fragments):
    check(resp.status == 403, "expected 403, got %d %s" % (resp.status, resp.body[:500]))
    body = resp.json()["error"]
    check(body.get("code") == "TaskPolicyRefused", "code: %r" % body)
    for f in fragments:
        check(f in body["message"], "%r not in %r" % (f, body["message"]))
    return body["message"]


def td(family, volumes=(), mounts=(), **extra):
    c = {"name": "c", "image": dockerd.IMAGE, "memory": 16, "command": ["sleep", "3600"]}
    if mounts:
        c["mountPoints"] = list(mounts)
    if "log" in extra:
        c["logConfiguration"] = extra.pop("log")
    return dict(extra, family=family, containerDefinitions=[c], volumes=list(volumes))


def host_volume(path, rw=False, name="v"):
    return ([{"name": name, "host": {"sourcePath": path}}],
            [{"sourceVolume": name, "containerPath": "/data", "readOnly": not rw}])


def run(s, family, token="admin"):
    return s.request("POST", "/v1/tasks", {"taskDefinition": family}, token=token)


def update(s, *flags):
    return expect_exit(cli(["cluster", "update", "default"] + list(flags), env=env_for(s)), 0,
                       "cluster update " + " ".join(flags))


@timeout(90)
def test_privileged_task_features_are_refused_until_an_admin_allows_them():
    with Server() as s:
        deploy = expect_status(s.request("POST", "/v1/tokens", {"role": "deploy"}), 201).json()["token"]["secret"]
        vols, mounts = host_volume("/srv/data", rw=True)
        expect_status(s.request("POST", "/v1/taskdefinitions", td("rw", vols, mounts)), 201)
        # A deploy token can register it (definitions belong to no cluster) but not run it.
        for method, path, body in (("POST", "/v1/tasks", {"taskDefinition": "rw"}),
                                   ("POST", "/v1/services", {"serviceName": "rw", "taskDefinition": "rw"})):
            refused(s.request(method, path, body, token=deploy),
                    "volumes[0].host.sourcePath: host path /srv/data is not allowed in cluster default",
                    "`berth cluster update default --allow-host-path /srv/data:rw`")
        # Only an admin changes the policy.
        r = s.request("PATCH", "/v1/clusters/default", {"taskPolicy": {"hostNetwork": True}}, token=deploy)
        check(r.status == 403 and b"only an admin" in r.body, "deploy token changed the policy: %r" % r)

        out = update(s, "--allow-host-path", "/srv/data").stdout
        check("/srv/data:ro" in out and "host network:     refused" in out, out)
        refused(run(s, "rw", deploy), "containerDefinitions[0].mountPoints[0].readOnly: host path /srv/data may only "
                "be mounted read-only in cluster default", "--allow-host-path /srv/data:rw")
        update(s, "--allow-host-path", "/srv/data:rw")
        expect_status(run(s, "rw", deploy), 200, "allowed read-write")  # no node: placed nowhere, not refused
        # A service created while allowed...
        expect_status(s.request("POST", "/v1/services", {"serviceName": "svc", "taskDefinition": "rw",
                                                         "desiredCount": 0}, token=deploy), 201)

        cases = [
            ("hostnet", td("hostnet", networkMode="host"), "networkMode: ", "--allow-host-network"),
            ("hostpid", td("hostpid", pidMode="host"), "pidMode: ", "--allow-host-pid"),
            ("sock", td("sock", *host_volume("/var/run/docker.sock", rw=True)),
             "volumes[0].host.sourcePath: host path /var/run/docker.sock gives the task the container engine's socket",
             "--allow-docker-socket"),
            ("syslog", td("syslog", log={"logDriver": "syslog", "options": {"syslog-address": "udp://10.9.9.9:514"}}),
             "containerDefinitions[0].logConfiguration.logDriver: log driver syslog", "--allow-log-driver syslog"),
            ("extvol", td("extvol", [{"name": "x", "dockerVolumeConfiguration": {"scope": "shared",
                                                                                 "autoprovision": False}}],
                          [{"sourceVolume": "x", "containerPath": "/x"}]),
             "volumes[0].dockerVolumeConfiguration.autoprovision: false mounts Docker volume x",
             "--allow-external-volumes"),
        ]
        for family, body, field, setting in cases:
            expect_status(s.request("POST", "/v1/taskdefinitions", body), 201, "register " + family)
            refused(run(s, family, deploy), field, "`berth cluster update default " + setting)
            # ...cannot be moved to a definition the policy refuses.
            refused(s.request("PATCH", "/v1/services/svc", {"taskDefinition": family}, token=deploy), field)
        # The socket needs its own setting even under an allowed prefix (and / is under every one).
        update(s, "--allow-host-path", "/var/run:rw")
        refused(run(s, "sock", deploy), "--allow-docker-socket")
        update(s, "--allow-host-network", "--allow-host-pid", "--allow-docker-socket", "--allow-log-driver", "syslog",
               "--allow-external-volumes")
        for family, _, _, _ in cases:
            expect_status(run(s, family, deploy), 200, family + " once allowed")

        # Bad input names the field; nothing changes.
        r = cli(["cluster", "update", "default", "--allow-host-path", "srv"], env=env_for(s))
        check(r.returncode != 0 and "taskPolicy.hostPaths" in r.stderr and "must be an absolute path" in r.stderr,
              "relative path: %r" % r.stderr)
        r = s.request("PATCH", "/v1/clusters/default", {"taskPolicy": {"privileged": True}})
        check(r.status == 400 and b"taskPolicy.privileged: is not a policy setting" in r.body, "%r" % r)

        # The policy is state: it survives a restart, and taking a setting back refuses again.
        s.stop()
        s.start()
        out = expect_exit(cli(["cluster", "describe", "default"], env=env_for(s)), 0, "describe").stdout
        check("/srv/data:rw" in out and "/var/run:rw" in out and "host network:     allowed" in out and
              "syslog" in out, out)
        update(s, "--deny-host-network", "--deny-host-path", "/srv/data")
        refused(run(s, "hostnet", deploy), "--allow-host-network")
        refused(run(s, "rw", deploy), "/srv/data is not allowed")
        expect_status(run(s, "hostpid", deploy), 200, "the rest is kept")
        update(s, "--reset")
        refused(run(s, "hostpid", deploy), "--allow-host-pid")


def wait_stopped(s, task_id):
    return wait_until(lambda: (lambda t: t if t["lastStatus"] == "STOPPED" else None)(task(s, task_id)),
                      wait=LONG, step=0.3, what="task %s stopped" % task_id)


def task_containers(task_id):
    return docker("ps", "-aq", "--filter", "label=berth.task=" + task_id).split()


@timeout(200)
def test_docker_agent_resolves_host_paths_and_keeps_the_data_directory_from_tasks():
    with all_in_one() as (s, node):
        host = scratch_dir("hostdata")
        with open(os.path.join(host, "hello"), "w") as f:
            f.write("from the host\n")
        os.symlink("/etc", os.path.join(host, "etc-link"))
        parent = os.path.dirname(os.path.realpath(s.data_dir))
        update(s, "--allow-host-path", host + ":rw", "--allow-host-path", parent)

        # Allowed: the container sees the host directory, read-write.
        vols, mounts = host_volume(host, rw=True)
        body = td("okmount", vols, mounts)
        body["containerDefinitions"][0]["command"] = ["sh", "-c", "cat /data/hello && echo hi > /data/written "
                                                                  "&& sleep 3600"]
        expect_status(s.request("POST", "/v1/taskdefinitions", body), 201)
        ok = expect_status(run(s, "okmount"), 200).json()["tasks"][0]["taskId"]
        wait_until(lambda: task(s, ok)["lastStatus"] == "RUNNING", wait=LONG, what="okmount running")
        ins = json.loads(docker("inspect", task_containers(ok)[0]))[0]
        check([(m["Source"], m["RW"]) for m in ins["Mounts"]] == [(host, True)], "mounts: %r" % ins["Mounts"])
        wait_until(lambda: os.path.exists(os.path.join(host, "written")), wait=LONG, what="the task wrote")

        # Lexically under the allowed path, really /etc: the server cannot see it, the agent does.
        expect_status(s.request("POST", "/v1/taskdefinitions",
                                td("linkmount", *host_volume(os.path.join(host, "etc-link")))), 201)
        link = expect_status(run(s, "linkmount"), 200, "the server allows it as written").json()["tasks"][0]["taskId"]
        t = wait_stopped(s, link)
        check("CannotStartTaskError" in t["stoppedReason"] and "(/etc on this host) is not allowed" in
              t["stoppedReason"], "reason: %r" % t["stoppedReason"])
        check(not task_containers(link), "a container was made for the refused task")

        # The server's data directory (its admin token, keys, state) is never mounted, whatever the policy.
        expect_status(s.request("POST", "/v1/taskdefinitions", td("steal", *host_volume(parent))), 201)
        steal = expect_status(run(s, "steal"), 200).json()["tasks"][0]["taskId"]
        t = wait_stopped(s, steal)
        check("overlaps %s, which berth keeps from every task" % os.path.realpath(s.data_dir) in t["stoppedReason"],
              "reason: %r" % t["stoppedReason"])
        check(not task_containers(steal), "a container was made for the task reading the data directory")


class _ForgedServer:
    """Speaks the server's side of the agent protocol over plain HTTP and sends
    one desired line it chose: what a forged or compromised server could say."""

    def __init__(self, line):
        self.line = line
        self.reports = []
        self.done = threading.Event()
        forged = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _json(self, obj):
                data = json.dumps(obj).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
                if self.path == "/v1/agent/register":
                    return self._json({"nodeId": "forged-node", "cluster": "default", "heartbeatIntervalMs": 500,
                                       "containerInstanceArn": "arn:aws:ecs:local:0:container-instance/forged"})
                if self.path.endswith("/report"):
                    forged.reports.append(json.loads(body or b"{}"))
                    return self._json({"version": 1, "heartbeatIntervalMs": 500})
                self.send_error(404)

            def do_GET(self):
                if "/desired" not in self.path:
                    return self.send_error(404)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                data = (json.dumps(forged.line) + "\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
                ping = b'{"type":"ping"}\n'
                while not forged.done.wait(1):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(ping), ping))
                    self.wfile.flush()

        class Threaded(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.httpd = Threaded(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stopped(self, task_id):
        for r in self.reports:
            for t in r.get("tasks", []):
                if t.get("taskId") == task_id and t.get("lastStatus") == "STOPPED":
                    return t
        return None

    def close(self):
        self.done.set()
        self.httpd.shutdown()


def _forged_line(tasks_, policy):
    defs, entries = {}, []
    for task_id, body in tasks_:
        ref = body["family"] + ":1"
        defs[ref] = dict(body, taskDefinitionArn="arn:aws:ecs:local:000000000000:task-definition/" + ref,
                         revision=1, status="ACTIVE", registeredAt=0, compatibilities=["EC2"])
        entries.append({"taskId": task_id, "taskArn": "arn:aws:ecs:local:000000000000:task/default/" + task_id,
                        "cluster": "default", "taskDefinition": ref, "desiredStatus": "RUNNING",
                        "lastStatus": "PENDING", "group": "family:" + body["family"]})
    return {"type": "desired", "nodeId": "forged-node", "version": 1, "policy": policy, "tasks": entries,
            "taskDefinitions": defs}


@timeout(150)
def test_docker_agent_refuses_what_a_forged_server_allows():
    dockerd.test_image()
    everything = {"hostPaths": [{"path": "/", "readWrite": True}], "hostNetwork": True, "hostPid": True,
                  "dockerSocket": True, "externalVolumes": True}
    root = ("f" * 31) + "1"      # mounts / read-write
    etc = ("f" * 31) + "2"       # mounts /etc read-write
    broken = ("f" * 31) + "3"    # not a valid task definition
    hostnet = ("f" * 31) + "4"   # the host's network
    sock = ("f" * 31) + "5"      # /run, which holds the Docker socket
    bad_def = td("broken")
    bad_def["containerDefinitions"][0]["name"] = "no spaces allowed"
    line = _forged_line([(root, td("root", *host_volume("/", rw=True))),
                         (etc, td("etc", *host_volume("/etc", rw=True))),
                         (broken, bad_def),
                         (hostnet, td("hostnet", networkMode="host")),
                         (sock, td("sock", *host_volume("/run")))], everything)
    forged = _ForgedServer(line)
    state = scratch_dir("agent-state")
    cmd = ["agent", "--server", forged.url, "--token", "forged", "--state-dir", state, "--docker-certs-dir", "",
           "--allow-host-network"]
    log_path = os.path.join(scratch_dir("agent"), "forged-agent.log")
    with open(log_path, "wb") as log:
        from harness import BINARY
        proc = subprocess.Popen([BINARY] + cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: all(forged.stopped(t) for t in (root, etc, broken, sock)), wait=LONG, step=0.2,
                   what="the agent reporting the forged tasks stopped")
        reason = lambda t: forged.stopped(t).get("reason", "")
        check(reason(root).startswith("CannotStartTaskError: volumes[0].host.sourcePath: host path / "),
              "/: %r" % reason(root))
        check("socket /run/docker.sock" in reason(sock) and "only when started with --allow-docker-socket" in reason(sock),
              "/run: %r" % reason(sock))
        check("host path /etc is not allowed on this node" in reason(etc) and "--allow-host-path /etc:rw" in reason(etc),
              "/etc: %r" % reason(etc))
        check("task definition broken:1 is not valid: containerDefinitions[0].name" in reason(broken),
              "broken: %r" % reason(broken))
        for t in (root, etc, broken, sock):
            check(not task_containers(t), "a container was made for forged task %s" % t)
        # What this host allows itself (--allow-host-network), with the cluster's word, runs.
        wait_until(lambda: task_containers(hostnet), wait=LONG, step=0.3, what="the host-network task's container")
        check(forged.stopped(hostnet) is None, "hostnet stopped: %r" % forged.stopped(hostnet))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        forged.close()
        remove_node_containers("forged-node")
