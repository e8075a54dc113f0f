"""`berth compose`: Compose files translated to one task definition and run as one
service (docs/compose.md).

- Every file in ../shared/fixtures/compose (real compose files written by others,
  read where they are, never copied here) either translates to the task definition
  in compose_expected/<name>.json or fails with the first stderr line in
  compose_expected/<name>.error; <name>.ignore.json / .ignore.error hold the
  outcome with --ignore-unsupported where one is checked.
- compose_cases/<case>/ are our own cases, one directory each: the compose files,
  `args` (the command line after `berth compose`, one argument per line; default
  `-f compose.yaml -p <case> config`), `env` (its environment, KEY=VALUE lines),
  expected.json or expected.error, and expected.warnings (lines stderr must hold).
- One project runs end to end on the real Docker engine: two containers talking by
  service name, a published port fetched from here, ps, logs, a new revision on a
  change (none without one), scale and down.
"""
import json
import os
import signal
import socket
import subprocess
import urllib.request

import dockerd
from harness import BINARY, check, cli, expect_exit, scratch_dir, timeout, wait_until
from test_docker import LONG, all_in_one, containers, docker

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(os.path.dirname(REPO), "shared", "fixtures", "compose")
EXPECTED = os.path.join(HERE, "compose_expected")
CASES = os.path.join(HERE, "compose_cases")


def compose(args, cwd, env=None):
    """`berth compose ARGS` in `cwd` with a bare environment (no variable of the
    runner's may change an interpolation)."""
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": scratch_dir("home")}
    e.update(env or {})
    return subprocess.run([BINARY, "compose"] + list(args), cwd=cwd, capture_output=True, text=True, env=e,
                          timeout=30)


def normalised(text, directory, token):
    """Absolute paths under `directory` (bind mounts) as `token`, so expected files
    do not depend on where the tree is."""
    return text.replace(directory, token)


def outcome_matches(proc, expected_base, directory, token, what):
    """Checks `proc` against expected_base.json (exit 0, same JSON) or
    expected_base.error (exit 2, that first line of stderr). Returns False when
    neither file exists."""
    if os.path.exists(expected_base + ".json"):
        check(proc.returncode == 0, "%s: expected a translation, got exit %d: %s"
              % (what, proc.returncode, proc.stderr.strip()))
        with open(expected_base + ".json") as f:
            want = json.load(f)
        got = json.loads(normalised(proc.stdout, directory, token))
        check(got == want, "%s: the translation differs from %s.json:\n%s"
              % (what, os.path.basename(expected_base), json.dumps(got, indent=2)))
        return True
    if os.path.exists(expected_base + ".error"):
        with open(expected_base + ".error") as f:
            want = f.read().strip()
        first = normalised(proc.stderr.strip().split("\n")[0], directory, token) if proc.stderr.strip() else ""
        # Warnings come first on stderr; the error is the last line.
        last = normalised(proc.stderr.strip().split("\n")[-1], directory, token) if proc.stderr.strip() else ""
        check(proc.returncode == 2, "%s: expected exit 2 (refused), got %d; stdout %s"
              % (what, proc.returncode, proc.stdout[:500]))
        check(want in (first, last), "%s: expected the error\n  %s\ngot\n  %s" % (what, want, proc.stderr.strip()))
        return True
    return False


@timeout(120)
def test_compose_fixtures_translate_or_fail_with_their_message():
    if not os.path.isdir(FIXTURES):
        print("note: %s is absent; the shared compose fixtures are skipped" % FIXTURES)
        return
    names = sorted(f for f in os.listdir(FIXTURES) if f.endswith((".yaml", ".yml")))
    check(names, "no compose files in " + FIXTURES)
    for name in names:
        stem = os.path.splitext(name)[0]
        proc = compose(["-f", name, "-p", stem, "config"], FIXTURES, {"HOME": "/home/berth"})  # for ~ in mounts
        base = os.path.join(EXPECTED, stem)
        check(outcome_matches(proc, base, FIXTURES, "$FIXTURES", name),
              "%s: no compose_expected/%s.json or .error; this run gave exit %d\nstdout: %s\nstderr: %s"
              % (name, stem, proc.returncode, proc.stdout[:2000], proc.stderr[:1000]))
        if os.path.exists(base + ".ignore.json") or os.path.exists(base + ".ignore.error"):
            proc = compose(["-f", name, "-p", stem, "--ignore-unsupported", "config"], FIXTURES, {"HOME": "/home/berth"})
            outcome_matches(proc, base + ".ignore", FIXTURES, "$FIXTURES", name + " --ignore-unsupported")
            if proc.returncode == 0:
                check("(skipped: --ignore-unsupported)" in proc.stderr,
                      "%s: nothing was warned about on stderr: %s" % (name, proc.stderr))


@timeout(120)
def test_compose_cases():
    cases = sorted(os.listdir(CASES))
    check(cases, "no cases in " + CASES)
    for case in cases:
        d = os.path.join(CASES, case)
        args = ["-f", "compose.yaml", "-p", case, "config"]
        env = {}
        if os.path.exists(os.path.join(d, "args")):
            with open(os.path.join(d, "args")) as f:
                args = [a for a in f.read().split("\n") if a]
        if os.path.exists(os.path.join(d, "env")):
            with open(os.path.join(d, "env")) as f:
                env = dict(line.split("=", 1) for line in f.read().split("\n") if line)
        proc = compose(args, d, env)
        check(outcome_matches(proc, os.path.join(d, "expected"), d, "$CASE", case),
              "%s: no expected.json or expected.error; this run gave exit %d\nstdout: %s\nstderr: %s"
              % (case, proc.returncode, proc.stdout[:2000], proc.stderr[:1000]))
        if os.path.exists(os.path.join(d, "expected.warnings")):
            with open(os.path.join(d, "expected.warnings")) as f:
                for line in f.read().strip().split("\n"):
                    check(line in proc.stderr.split("\n"), "%s: no warning\n  %s\nin\n%s" % (case, line, proc.stderr))


@timeout(60)
def test_compose_finds_its_file_and_names_the_project_after_the_directory():
    d = os.path.join(scratch_dir("c"), "My.Project_1")
    os.makedirs(d)
    proc = compose(["config"], d)
    expect_exit(proc, 2, "config without a file")
    check("no compose.yaml, compose.yml, docker-compose.yml or docker-compose.yaml here" in proc.stderr, proc.stderr)
    with open(os.path.join(d, "docker-compose.yml"), "w") as f:
        f.write("services:\n  app:\n    image: busybox\n")
    proc = expect_exit(compose(["config"], d), 0, "config with docker-compose.yml")
    td = json.loads(proc.stdout)
    check(td["family"] == "myproject_1", "family %r" % td["family"])
    # `config` needs no server; the other commands do, and say how to name one.
    proc = compose(["ps"], d)
    check(proc.returncode in (2, 3) and "berth configure" in proc.stderr, "ps without a server: %s" % proc.stderr)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


E2E_COMPOSE = """\
services:
  web:
    image: %(image)s
    command: sh -c 'mkdir -p /www && echo "hello from web $$VERSION" > /www/index.html && exec httpd -f -p 8080 -h /www'
    environment:
      VERSION: ${VERSION:-1}
    ports:
      - "${PORT}:8080"
    stop_grace_period: 2s
  client:
    image: %(image)s
    command: ["sh", "-c", "while true; do wget -qO- http://web:8080/ || echo unreachable; sleep 1; done"]
    depends_on:
      - web
    stop_grace_period: 2s
"""


@timeout(420)
def test_compose_project_end_to_end_on_docker():
    image = dockerd.test_image()
    d = os.path.join(scratch_dir("c"), "e2e")
    os.makedirs(d)
    with open(os.path.join(d, "compose.yaml"), "w") as f:
        f.write(E2E_COMPOSE % {"image": image})
    project = "cmp-e2e-%d" % os.getpid()
    with all_in_one() as (s, node):
        env = {"BERTH_SERVER": s.url, "BERTH_TOKEN": s.token}

        def run(*args, extra=None, rc=0):
            return expect_exit(compose(["-p", project] + list(args), d, dict(env, **(extra or {}))), rc,
                               "compose " + " ".join(args))

        def tasks():
            out = run("ps", "--json").stdout
            return [t for t in json.loads(out)["tasks"] if t["lastStatus"] == "RUNNING"]

        port = free_port()
        out = run("up", extra={"PORT": str(port)}).stdout
        check("registered task definition %s:1" % project in out and "created service" in out, out)
        wait_until(lambda: len(tasks()) == 1, wait=LONG, step=0.5, what="the project's task RUNNING")
        # Published on the host; the client reaches web by its service name.
        wait_until(lambda: fetch(port) == "hello from web 1\n", wait=LONG, step=0.5, what="web on port %d" % port)
        def client_logs():
            proc = compose(["-p", project, "logs"], d, env)
            return proc.stdout if proc.returncode == 0 and "client | hello from web 1" in proc.stdout else ""
        logs = wait_until(client_logs, wait=LONG, step=1, what="client's log lines showing web's answer")
        check("unreachable" not in logs.split("hello from web")[-1], "client lost web: %s" % logs[-500:])
        # -f follows every container until interrupted.
        follower = subprocess.Popen([BINARY, "compose", "-p", project, "logs", "-f"], cwd=d, text=True,
                                    stdout=subprocess.PIPE, env=dict(os.environ, **env), start_new_session=True)
        try:
            seen = 0
            while seen < 2:  # two lines of the client's, as they come
                line = follower.stdout.readline()
                check(line, "logs -f ended early (exit %r)" % follower.poll())
                seen += line.startswith("client | hello from web 1")
        finally:
            follower.send_signal(signal.SIGINT)
            rc = follower.wait(timeout=30)
        check(rc in (130, -signal.SIGINT), "logs -f after SIGINT: exit %r" % rc)
        ps = run("ps").stdout
        check("web" in ps and "client" in ps and "%d->8080/tcp" % port in ps, "ps:\n" + ps)
        cs = containers(node, service=project)
        check(sorted(c["Config"]["Labels"]["berth.container"] for c in cs) == ["client", "web"],
              "docker shows %r" % [c["Name"] for c in cs])

        # The same files again: no new revision, nothing rolls.
        out = run("up", extra={"PORT": str(port)}).stdout
        check("unchanged" in out and "already runs %s:1" % project in out, out)

        # A change: a new revision rolls out (the port now dynamic, so scale can place two).
        out = run("up", extra={"PORT": "", "VERSION": "2"}).stdout
        check("registered task definition %s:2" % project in out and "updated service" in out, out)

        def on_rev2():
            ts = tasks()
            return ts if len(ts) == 1 and ts[0]["taskDefinitionArn"].endswith(":2") else None
        ts = wait_until(on_rev2, wait=LONG, step=0.5, what="the task of revision 2 alone RUNNING")
        web = [c for c in ts[0]["containers"] if c["name"] == "web"][0]
        dyn = web["networkBindings"][0]["hostPort"]
        wait_until(lambda: fetch(dyn) == "hello from web 2\n", wait=LONG, step=0.5, what="revision 2's web")

        out = run("scale", "2").stdout
        check("desired count 2" in out, out)
        wait_until(lambda: len(tasks()) == 2, wait=LONG, step=0.5, what="two tasks RUNNING")

        out = run("down").stdout
        check("deleted service %s" % project in out, out)
        # Again while its tasks stop (the service DRAINING): nothing more to do, not an error.
        out = run("down").stdout
        check("nothing to do" in out, out)
        # Stopped containers stay for the agent's retention (an hour), as every task's do.
        wait_until(lambda: not containers(node, service=project), wait=LONG, step=0.5,
                   what="the project's containers stopped")
        wait_until(lambda: not tasks(), wait=LONG, step=0.5, what="no task of the project RUNNING")
        services = json.loads(cli(["service", "ls", "--json"], env=env).stdout)["services"]
        check(not [x for x in services if x["serviceName"] == project and x["status"] == "ACTIVE"],
              "the service is still there: %r" % services)
        run("down")  # nothing left to do, and says so
