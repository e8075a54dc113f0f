"""The client side of the binary: configure, the config file and environment,
cluster commands in table and JSON form, exit codes, --help everywhere."""

import json
import re
import os
import stat

from harness import (Server, check, cli, closed_port, expect_exit, scratch_dir)

TABLE_HEADER = ["NAME", "STATUS", "NODES", "SERVICES", "RUNNING", "PENDING", "ARN"]
ARN_PREFIX = "arn:aws:ecs:local:000000000000:cluster/"


def env_for(s, token=None):
    """The server and a token; a token given here is bare (no CA pin), so the CA
    file comes along to trust the server by."""
    if token is None:
        return {"BERTH_SERVER": s.url, "BERTH_TOKEN": s.token}
    return {"BERTH_SERVER": s.url, "BERTH_TOKEN": token, "BERTH_CA_FILE": s.ca_file}


def table_rows(stdout):
    lines = [l for l in stdout.splitlines() if l.strip()]
    check(lines and lines[0].split() == TABLE_HEADER, "table header is %r" % (lines[:1],))
    return [l.split() for l in lines[1:]]


def test_help_on_every_command():
    cases = [["--help"], ["-h"], ["help"], ["help", "cluster"], ["help", "server"], ["help", "configure"],
             ["help", "version"], ["server", "--help"], ["configure", "--help"], ["cluster", "--help"],
             ["cluster", "create", "--help"], ["cluster", "ls", "--help"], ["cluster", "describe", "--help"],
             ["cluster", "rm", "--help"], ["version", "--help"]]
    for args in cases:
        p = expect_exit(cli(args), 0, "berth " + " ".join(args))
        check("Usage" in p.stdout, "berth %s prints no usage: %r" % (" ".join(args), p.stdout[:200]))
    p = cli(["server", "--help"])
    for flag in ("--data", "--listen", "--listen-unix", "--no-group-commit", "--shutdown-grace", "--max-connections",
                 "--max-header-bytes", "--header-timeout", "--body-timeout", "--idle-timeout", "--write-timeout"):
        check(flag in p.stdout, "server --help does not mention %s" % flag)


def test_version_command():
    p = expect_exit(cli(["version"]), 0, "berth version")
    check(p.stdout.startswith("berth "), "version output %r" % p.stdout)
    v = json.loads(expect_exit(cli(["version", "--json"]), 0, "berth version --json").stdout)
    check(isinstance(v.get("version"), str) and v["version"] in p.stdout, "version --json %r" % v)
    expect_exit(cli(["--version"]), 0, "berth --version")


def test_configure_writes_config_with_mode_0600():
    with Server() as s:
        home = scratch_dir("home")
        url = s.url
        p = expect_exit(cli(["configure", "--server", url, "--token", s.token], home=home), 0, "configure")
        path = os.path.join(home, ".config", "berth", "config.json")
        check(path in p.stdout, "configure does not say where it wrote: %r" % p.stdout)
        check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "config mode %o" % stat.S_IMODE(os.stat(path).st_mode))
        with open(path) as f:
            cfg = json.load(f)
        check(cfg.get("server") == url and cfg.get("token") == s.token, "config content %r" % cfg)
        # The client now works from the file alone.
        p = expect_exit(cli(["cluster", "ls"], home=home), 0, "cluster ls with the config file")
        check(["default"] == [r[0] for r in table_rows(p.stdout)], "ls output %r" % p.stdout)
        # Setting one field keeps the other.
        expect_exit(cli(["configure", "--token", "other"], home=home), 0, "configure --token only")
        with open(path) as f:
            cfg = json.load(f)
        # A bare token keeps the pin the first (pinned) one gave.
        check(cfg == {"server": url, "token": "other", "caSha256": s.token[3:67]}, "after configure --token: %r" % cfg)
        check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "config mode after rewrite")


def test_configure_honours_xdg_config_home():
    home, xdg = scratch_dir("home"), scratch_dir("xdg")
    expect_exit(cli(["configure", "--server", "http://127.0.0.1:1", "--token", "t"], home=home,
                    env={"XDG_CONFIG_HOME": xdg}), 0, "configure with XDG_CONFIG_HOME")
    path = os.path.join(xdg, "berth", "config.json")
    check(os.path.exists(path), "no %s" % path)
    check(stat.S_IMODE(os.stat(path).st_mode) == 0o600, "config mode %o" % stat.S_IMODE(os.stat(path).st_mode))
    check(not os.path.exists(os.path.join(home, ".config", "berth", "config.json")), "also wrote under HOME")


def test_environment_overrides_the_config_file():
    with Server() as s:
        home = scratch_dir("home")
        # A config that points nowhere, with a wrong token.
        expect_exit(cli(["configure", "--server", "https://127.0.0.1:%d" % closed_port(), "--token", "wrong",
                         "--ca-file", s.ca_file], home=home), 0, "configure")
        expect_exit(cli(["cluster", "ls"], home=home), 3, "ls with the config pointing at a closed port")
        expect_exit(cli(["cluster", "ls"], home=home, env=env_for(s)), 0, "ls with BERTH_SERVER and BERTH_TOKEN")
        expect_exit(cli(["cluster", "ls"], home=home, env={"BERTH_SERVER": s.url}), 4,
                    "BERTH_SERVER only: the config's wrong token is used")
        # And the other way round: a good config, a bad BERTH_TOKEN.
        expect_exit(cli(["configure", "--server", s.url, "--token", s.token], home=home),
                    0, "configure")
        expect_exit(cli(["cluster", "ls"], home=home), 0, "ls with a good config")
        expect_exit(cli(["cluster", "ls"], home=home, env={"BERTH_TOKEN": "wrong"}), 4, "BERTH_TOKEN overrides")


def test_cluster_commands_table_output():
    with Server() as s:
        e = env_for(s)
        p = expect_exit(cli(["cluster", "create", "web"], env=e), 0, "cluster create web")
        check(ARN_PREFIX + "web" in p.stdout, "create output %r" % p.stdout)
        expect_exit(cli(["cluster", "create", "api"], env=e), 0, "cluster create api")
        rows = table_rows(expect_exit(cli(["cluster", "ls"], env=e), 0, "cluster ls").stdout)
        check([r[0] for r in rows] == ["api", "default", "web"], "ls rows %r" % rows)
        for r in rows:
            check(r[1:6] == ["ACTIVE", "0", "0", "0", "0"] and r[6] == ARN_PREFIX + r[0], "ls row %r" % r)
        rows = table_rows(expect_exit(cli(["cluster", "describe", "web"], env=e), 0, "describe").stdout)
        check(rows[0] == ["web", "ACTIVE", "0", "0", "0", "0", ARN_PREFIX + "web"], "describe rows %r" % rows)
        check(["host", "network:", "refused"] in rows and ["host", "paths:", "none"] in rows,
              "describe shows the task policy: %r" % rows)
        p = expect_exit(cli(["cluster", "rm", "web"], env=e), 0, "cluster rm web")
        check(ARN_PREFIX + "web" in p.stdout, "rm output %r" % p.stdout)
        check("web" not in s.cluster_names(), "rm did not delete")


def test_cluster_commands_json_output():
    with Server() as s:
        e = env_for(s)
        c = json.loads(expect_exit(cli(["cluster", "create", "j1", "--json"], env=e), 0, "create --json").stdout)
        check(c.get("clusterName") == "j1" and c.get("clusterArn") == ARN_PREFIX + "j1" and c.get("status") == "ACTIVE",
              "create --json %r" % c)
        doc = json.loads(expect_exit(cli(["cluster", "ls", "--json"], env=e), 0, "ls --json").stdout)
        check([x["clusterName"] for x in doc.get("clusters", [])] == ["default", "j1"], "ls --json %r" % doc)
        c = json.loads(expect_exit(cli(["cluster", "describe", "j1", "--json"], env=e), 0, "describe --json").stdout)
        check(c.get("clusterName") == "j1" and "registeredContainerInstancesCount" in c, "describe --json %r" % c)
        c = json.loads(expect_exit(cli(["cluster", "rm", "j1", "--json"], env=e), 0, "rm --json").stdout)
        check(c.get("status") == "INACTIVE", "rm --json %r" % c)


def test_exit_codes():
    with Server() as s:
        e = env_for(s)
        expect_exit(cli(["cluster", "create", "dup"], env=e), 0, "create dup")
        # 1: refused by the server.
        for args in (["cluster", "create", "dup"], ["cluster", "describe", "nope"], ["cluster", "rm", "nope"],
                     ["cluster", "create", "bad name"]):
            p = expect_exit(cli(args, env=e), 1, "berth " + " ".join(args))
            check(p.stderr.strip(), "no message for %r" % args)
        # 2: usage errors, before any request.
        for args in ([], ["cluster"], ["cluster", "create"], ["cluster", "create", "a", "b"], ["cluster", "ls", "x"],
                     ["cluster", "frobnicate"], ["cluster", "ls", "--no-such-flag"], ["no-such-command"],
                     ["configure"], ["configure", "--server", "http://h/x/y"]):
            expect_exit(cli(args, env=e), 2, "berth " + " ".join(args))
        # 3: nothing listening.
        dead = {"BERTH_SERVER": "http://127.0.0.1:%d" % closed_port(), "BERTH_TOKEN": s.token}
        for args in (["cluster", "ls"], ["cluster", "create", "x"], ["cluster", "describe", "x"]):
            p = expect_exit(cli(args, env=dead), 3, "berth %s against a closed port" % " ".join(args))
            check("reach" in p.stderr, "unreachable message %r" % p.stderr)
        # 4: authentication failed.
        for env in (env_for(s, token="berth_wrong"), {"BERTH_SERVER": e["BERTH_SERVER"], "BERTH_CA_FILE": s.ca_file}):
            p = expect_exit(cli(["cluster", "ls"], env=env), 4, "cluster ls with a bad or missing token")
        check("dup" in s.cluster_names() and "x" not in s.cluster_names(), "state changed by failing commands")


def test_agent_refuses_bad_reserved_ports_before_starting():
    for bad, named in (("22,70000", "70000"), ("22,,80", "''"), ("ssh", "ssh"), ("53/sctp", "53/sctp")):
        p = expect_exit(cli(["agent", "--server", "http://127.0.0.1:%d" % closed_port(), "--token", "t",
                             "--reserved-ports", bad]), 2, "agent --reserved-ports " + bad)
        check("--reserved-ports" in p.stderr and named in p.stderr, "message for %r: %r" % (bad, p.stderr))


class _SilentLogServer:
    """A stand-in server on loopback that answers every request with the head of
    a chunked 200 and then sends nothing: a `logs -f` of a quiet container."""

    def __init__(self):
        import socket
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.requests.append(c.recv(65536).decode(errors="replace"))
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def test_logs_follow_ends_at_once_on_sigint_and_sigterm():
    """Regression (issue 10, item 2): `berth logs -f` waiting on a quiet container
    ignored Ctrl-C and SIGTERM when it had inherited them as ignored, as every
    process started in the background by a non-interactive shell does (CI's)."""
    import signal
    import subprocess
    import time
    from harness import BINARY, WAIT
    srv = _SilentLogServer()
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME",)}
        env.update(HOME=scratch_dir("home"), BERTH_SERVER="http://127.0.0.1:%d" % srv.port, BERTH_TOKEN="t")
        for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            for inherited_ignore in (False, True):
                def preexec(ignore=inherited_ignore):
                    if ignore:
                        signal.signal(signal.SIGINT, signal.SIG_IGN)
                        signal.signal(signal.SIGTERM, signal.SIG_IGN)
                asked = len(srv.requests)
                proc = subprocess.Popen([BINARY, "logs", "0123456789ab", "-f"], env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec)
                try:
                    deadline = time.monotonic() + WAIT
                    while len(srv.requests) == asked and time.monotonic() < deadline and proc.poll() is None:
                        time.sleep(0.05)
                    check(len(srv.requests) > asked, "berth logs -f never asked the server")
                    check("/v1/tasks/0123456789ab/logs?follow=true" in srv.requests[-1], "asked %r" % srv.requests[-1])
                    time.sleep(0.3)  # on the stream, waiting for output
                    if proc.poll() is not None:
                        raise AssertionError("logs -f ended before the signal: %r" % (proc.communicate(),))
                    proc.send_signal(sig)
                    try:
                        proc.wait(WAIT)
                    except subprocess.TimeoutExpired:
                        raise AssertionError("berth logs -f kept running %ss after %s (inherited as ignored: %s)"
                                             % (WAIT, sig.name, inherited_ignore))
                    check(proc.returncode == code, "after %s: exit %r, not %d (stderr %r)"
                          % (sig.name, proc.returncode, code, proc.stderr.read()))
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
    finally:
        srv.close()


def _ps_ids(env):
    p = expect_exit(cli(["ps"], env=env), 0, "berth ps")
    lines = [l.split() for l in p.stdout.splitlines() if l.strip()]
    check(lines and lines[0][0] == "TASK", "ps header %r" % lines[:1])
    return [row[0] for row in lines[1:]]


def test_ps_shows_short_ids_every_command_takes():
    """Regression (issue 10, item 3): the tasks of one placement all showed the same
    id (the first 12 characters are the creation time), and `berth logs <that>`
    said "ambiguous". The README's flow: `berth ps`, then the id it shows."""
    import time
    from harness import Agent, expect_status, wait_until
    with Server() as s:
        env = env_for(s)
        token = expect_status(s.request("POST", "/v1/tokens", {"role": "agent"}), 201, "agent token").json()
        with Agent(s, 2, token["token"]["secret"]):
            wait_until(lambda: sum(n["agentConnected"] for n in expect_status(
                s.request("GET", "/v1/nodes"), 200, "nodes").json()["containerInstances"]) == 2, what="two nodes")
            path = os.path.join(scratch_dir("td"), "web.json")
            with open(path, "w") as f:
                json.dump({"family": "web", "containerDefinitions": [
                    {"name": "main", "image": "busybox", "memory": 16, "cpu": 32}]}, f)
            expect_exit(cli(["taskdef", "register", path], env=env), 0, "taskdef register")
            expect_exit(cli(["service", "create", "web", "--taskdef", "web", "--count", "5"], env=env), 0, "create")
            wait_until(lambda: len(_ps_ids(env)) == 5, what="5 tasks in berth ps")
            shown = _ps_ids(env)
            check(len(set(shown)) == 5, "berth ps shows the tasks of one placement alike: %r" % shown)
            full = {t["taskId"] for t in expect_status(s.request("GET", "/v1/tasks"), 200, "tasks").json()["tasks"]}
            for short in shown:
                check(len([f for f in full if f.endswith(short)]) == 1, "%s is not the end of one task id" % short)
            # The events name the tasks the same way.
            events = expect_exit(cli(["service", "events", "web"], env=env), 0, "events").stdout
            check(all(short in events for short in shown), "events do not name %r: %s" % (shown, events))
            # describe, --json and stop take the id shown.
            d = expect_exit(cli(["task", "describe", shown[0]], env=env), 0, "task describe <shown id>").stdout
            check(shown[0] in d and "Status:" in d and "Containers" in d, "task describe: %s" % d)
            j = json.loads(expect_exit(cli(["task", "describe", shown[0], "--json"], env=env), 0, "--json").stdout)
            check(j["taskId"].endswith(shown[0]), "task describe --json: %r" % j)
            expect_exit(cli(["task", "stop", shown[1]], env=env), 0, "task stop <shown id>")
            stopped = expect_status(s.request("GET", "/v1/tasks/" + shown[1]), 200, "GET /v1/tasks/<short>").json()
            check(stopped["task"]["desiredStatus"] == "STOPPED", "stop <shown id> stopped %r" % stopped["task"])
            # logs resolves it too (a simulated node answers with a made-up log
            # naming the task's full id).
            r = expect_exit(cli(["logs", shown[2]], env=env, wait=30), 0, "logs <shown id>")
            check(re.search(r"task [0-9a-f]{20}%s container " % shown[2], r.stdout),
                  "logs <shown id> on a simulated node: %r" % r.stdout)
            # A prefix shared by several tasks is refused, naming them.
            common = os.path.commonprefix(sorted(full))
            if len(common) >= 6:
                r = cli(["task", "describe", common], env=env)
                check(r.returncode == 1 and "ambiguous" in r.stderr, "a shared prefix: %r" % r.stderr)


def test_describe_commands_are_readable_and_json_on_request():
    """Regression (issue 10, item 4): `berth service describe` printed raw JSON."""
    from harness import Agent, expect_status, wait_until
    with Server() as s:
        env = env_for(s)
        token = expect_status(s.request("POST", "/v1/tokens", {"role": "agent"}), 201, "agent token").json()
        with Agent(s, 1, token["token"]["secret"]):
            wait_until(lambda: len(expect_status(s.request("GET", "/v1/nodes"), 200, "nodes")
                                   .json()["containerInstances"]) == 1, what="a node")
            expect_status(s.request("POST", "/v1/taskdefinitions", {"family": "web", "containerDefinitions": [
                {"name": "main", "image": "busybox", "memory": 16}]}), 201, "register")
            expect_exit(cli(["service", "create", "web", "--taskdef", "web", "--count", "2", "--circuit-breaker"],
                            env=env), 0, "create")
            wait_until(lambda: "steady state" in cli(["service", "events", "web"], env=env).stdout,
                       what="a steady service")
            d = expect_exit(cli(["service", "describe", "web"], env=env), 0, "service describe").stdout
            check(not d.lstrip().startswith("{"), "service describe is JSON: %s" % d[:200])
            for want in ("Service:", "web (cluster default)", "2 desired, 2 running, 0 pending", "circuit breaker on",
                         "Deployments", "PRIMARY", "COMPLETED", "Events (newest first)", "has reached a steady state"):
                check(want in d, "service describe lacks %r:\n%s" % (want, d))
            lines = d.splitlines()
            ev = lines[lines.index("Events (newest first)") + 1:]
            check(ev and ev[0][:4].isdigit() and "steady state" in ev[0], "newest event first, with its time: %r" % ev)
            j = json.loads(expect_exit(cli(["service", "describe", "web", "--json"], env=env), 0, "--json").stdout)
            check(j["serviceName"] == "web" and j["deployments"][0]["rolloutState"] == "COMPLETED", "json %r" % j)
            n = expect_exit(cli(["node", "describe", "sim-00000"], env=env), 0, "node describe").stdout
            check("Node:" in n and "Attributes:" in n and "free of" in n, "node describe:\n%s" % n)


def test_taskdef_with_fields_berth_would_ignore_is_refused():
    """Regression (issue 10, item 5): a task definition with `secrets` was taken and
    its container started without them. Secrets are supported now (test_secrets);
    a log driver's `secretOptions` is not, and is refused by name."""
    with Server() as s:
        env = env_for(s)
        path = os.path.join(scratch_dir("td"), "db.json")
        with open(path, "w") as f:
            json.dump({"family": "db", "containerDefinitions": [
                {"name": "main", "image": "mysql", "memory": 256,
                 "logConfiguration": {"logDriver": "json-file", "secretOptions": [
                     {"name": "KEY", "valueFrom": "arn:aws:ssm:::parameter/pw"}]}}]}, f)
        r = cli(["taskdef", "register", path], env=env)
        check(r.returncode == 1, "register with secretOptions: exit %d %r" % (r.returncode, r.stdout))
        check("containerDefinitions[0].logConfiguration.secretOptions" in r.stderr and "not supported" in r.stderr,
              "the refusal names the field: %r" % r.stderr)
        r = cli(["taskdef", "ls", "--all"], env=env)
        check("db:" not in r.stdout, "a refused definition was registered: %r" % r.stdout)
        out = cli(["server", "--help"]).stdout
        check("the dashboard (/ui/" in out, "server --help does not say where the dashboard is: %r" % out)
