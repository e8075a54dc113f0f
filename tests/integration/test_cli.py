"""The client side of the binary: configure, the config file and environment,
cluster commands in table and JSON form, exit codes, --help everywhere."""

import json
import os
import stat

from harness import (Server, check, cli, closed_port, expect_exit, scratch_dir)

TABLE_HEADER = ["NAME", "STATUS", "NODES", "SERVICES", "RUNNING", "PENDING", "ARN"]
ARN_PREFIX = "arn:aws:ecs:local:000000000000:cluster/"


def env_for(s, token=None):
    return {"BERTH_SERVER": "http://127.0.0.1:%d" % s.port, "BERTH_TOKEN": token or s.token}


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
        url = "http://127.0.0.1:%d" % s.port
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
        check(cfg == {"server": url, "token": "other"}, "after configure --token: %r" % cfg)
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
        expect_exit(cli(["configure", "--server", "http://127.0.0.1:%d" % closed_port(), "--token", "wrong"],
                        home=home), 0, "configure")
        expect_exit(cli(["cluster", "ls"], home=home), 3, "ls with the config pointing at a closed port")
        expect_exit(cli(["cluster", "ls"], home=home, env=env_for(s)), 0, "ls with BERTH_SERVER and BERTH_TOKEN")
        expect_exit(cli(["cluster", "ls"], home=home, env={"BERTH_SERVER": "http://127.0.0.1:%d" % s.port}), 4,
                    "BERTH_SERVER only: the config's wrong token is used")
        # And the other way round: a good config, a bad BERTH_TOKEN.
        expect_exit(cli(["configure", "--server", "http://127.0.0.1:%d" % s.port, "--token", s.token], home=home),
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
        check(rows == [["web", "ACTIVE", "0", "0", "0", "0", ARN_PREFIX + "web"]], "describe rows %r" % rows)
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
        for env in (env_for(s, token="berth_wrong"), {"BERTH_SERVER": e["BERTH_SERVER"]}):
            p = expect_exit(cli(["cluster", "ls"], env=env), 4, "cluster ls with a bad or missing token")
        check("dup" in s.cluster_names() and "x" not in s.cluster_names(), "state changed by failing commands")


def test_agent_refuses_bad_reserved_ports_before_starting():
    for bad, named in (("22,70000", "70000"), ("22,,80", "''"), ("ssh", "ssh"), ("53/sctp", "53/sctp")):
        p = expect_exit(cli(["agent", "--server", "http://127.0.0.1:%d" % closed_port(), "--token", "t",
                             "--reserved-ports", bad]), 2, "agent --reserved-ports " + bad)
        check("--reserved-ports" in p.stderr and named in p.stderr, "message for %r: %r" % (bad, p.stderr))
