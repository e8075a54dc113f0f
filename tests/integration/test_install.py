"""Installing a box from the server (docs/install.md): `berth join-command`, the
public install routes, and packaging/install.sh fetched from a running server
with real curl and run with real sh into a temporary root (BERTH_INSTALL_ROOT),
its result checked file by file.
"""

import hashlib
import os
import re
import shlex
import stat
import subprocess
import time

from harness import (BINARY, WAIT, Server, check, cli, expect_exit, expect_status, scratch_dir, timeout,
                     wait_until)


def cli_env(s):
    return {"BERTH_SERVER": s.url, "BERTH_TOKEN": s.token}


def join_line(s, *args):
    r = expect_exit(cli(["join-command"] + list(args), env=cli_env(s)), 0, "join-command")
    line = r.stdout.strip()
    check("\n" not in line, "join-command prints one line: %r" % line)
    m = re.match(r"^curl -fsSL --pinnedpubkey '(sha256//[A-Za-z0-9+/=]+)' -k (https://\S+)/install\.sh \| "
                 r"sh -s - (agent|server) --token (\S+)(.*)$", line)
    check(m, "the join line's shape: %r" % line)
    return line, m.group(1), m.group(2), m.group(3), m.group(4), m.group(5).strip()


def curl(*args):
    return subprocess.run(["curl"] + list(args), capture_output=True, timeout=WAIT)


def key_pin_of_listener(s):
    """The pin of the key the listener presents, worked out by openssl."""
    cert = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % s.port], input=b"",
                          capture_output=True, timeout=WAIT).stdout
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout"], input=cert, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True).stdout
    check(len(der) > 50, "no public key from the listener")
    return "sha256//" + __import__("base64").b64encode(hashlib.sha256(der).digest()).decode()


def run_installer(s, pin, args, root, env=None, url=None):
    """The line as a user runs it: real curl with the pin into real sh."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    e["BERTH_INSTALL_ROOT"] = root
    e["BERTH_DOCKER_SOCKET"] = fake_docker_socket()
    e.update(env or {})
    line = "curl -fsSL --pinnedpubkey '%s' -k %s/install.sh | sh -s - %s" % (pin, url or s.url, args)
    return subprocess.run(["sh", "-c", line], capture_output=True, text=True, env=e, timeout=120)


_sock = []


def fake_docker_socket():
    """A Unix socket where the installer looks for the Docker engine (it only
    checks that one is there; the agent run here is told the real one)."""
    if not _sock:
        import socket
        path = os.path.join(scratch_dir("docker"), "docker.sock")
        sk = socket.socket(socket.AF_UNIX)
        sk.bind(path)
        _sock.append(sk)
    return _sock[0].getsockname()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_join_command_line_runs_with_curl_and_a_wrong_pin_fails():
    with Server() as s:
        line, pin, url, role, token, rest = join_line(s, "--attr", "zone=b")
        check(role == "agent" and rest == "--attr zone=b", "role and attrs: %r" % line)
        check(url == s.url, "the line names the server the CLI talks to: %s vs %s" % (url, s.url))
        check(pin == key_pin_of_listener(s), "the pin is the listener's key: %s vs %s" % (pin, key_pin_of_listener(s)))
        check(token.startswith("B10"), "the token pins the CA: %s" % token)
        ok = curl("-fsSL", "--pinnedpubkey", pin, "-k", url + "/install.sh")
        check(ok.returncode == 0 and ok.stdout.startswith(b"#!/bin/sh"), "curl with the pin: %r" % ok.stderr)
        check(("served_from='%s'" % s.url).encode() in ok.stdout, "the script names the server it came from")
        wrong = "sha256//" + "A" * 43 + "="
        bad = curl("-fsSL", "--pinnedpubkey", wrong, "-k", url + "/install.sh")
        check(bad.returncode == 90, "curl with a wrong pin must fail (exit 90), got %d" % bad.returncode)
        # The agent token: one use, a day.
        toks = [t for t in s.request("GET", "/v1/tokens").json()["tokens"] if t["role"] == "agent"]
        check(len(toks) == 1 and toks[0].get("usesLeft") == 1 and toks[0].get("expiresAt"), "token: %r" % toks)
        line, pin2, _, role, _, _ = join_line(s, "--role", "server", "--ttl", "1h")
        check(role == "server" and pin2 == pin, "a server join line: %r" % line)


def test_install_routes_are_public_bounded_and_the_checksum_is_the_binary():
    with Server() as s:
        with open(BINARY, "rb") as f:
            mine = hashlib.sha256(f.read()).hexdigest()
        r = expect_status(s.request("GET", "/download/berth-linux-amd64.sha256", token=None), 200, "sha256")
        check(r.body.decode() == "%s  berth-linux-amd64\n" % mine, "sha256 line: %r" % r.body)
        r = expect_status(s.request("HEAD", "/download/berth-linux-amd64", token=None), 200, "HEAD binary")
        check(int(r.header("content-length")) == os.path.getsize(BINARY) and r.body == b"", "HEAD: %r" % r.headers)
        r = expect_status(s.request("GET", "/download/berth-agent.service", token=None), 200, "unit")
        with open(os.path.join(os.path.dirname(__file__), "../../systemd/berth-agent.service"), "rb") as f:
            check(r.body == f.read(), "the served unit is the tree's")
        expect_status(s.request("GET", "/download/nothing", token=None), 404, "unknown download")
        r = s.request("GET", "/install.sh", token=None, headers={"Host": "evil'$(touch x)"})
        expect_status(r, 200, "install.sh with a bad Host")
        check(b"served_from=''\n" in r.body, "a bad Host is not written into the script")
        r = s.request("POST", "/install.sh", token=None, body="x")
        check(r.status in (404, 405), "POST install.sh: %d" % r.status)
        r = s.request("GET", "/install.sh", token=None, body="x" * 9000)
        check(r.status == 413, "a body on a public route: %d" % r.status)


@timeout(240)
def test_install_sh_from_the_server_into_a_root_then_upgrade_and_uninstall():
    with Server() as s:
        _, pin, _, _, token, _ = join_line(s, "--attr", "zone=b", "--uses", "2")
        root = scratch_dir("root")
        r = run_installer(s, pin, "agent --token %s --attr zone=b" % shlex.quote(token), root)
        check(r.returncode == 0, "install.sh failed: %s" % r.stderr)
        berth = os.path.join(root, "usr/local/bin/berth")
        with open(berth, "rb") as a, open(BINARY, "rb") as b:
            check(a.read() == b.read(), "the installed binary is the server's")
        check(mode(berth) == 0o755, "binary mode %o" % mode(berth))
        env = os.path.join(root, "etc/berth/agent.env")
        check(mode(env) == 0o600, "agent.env mode %o" % mode(env))
        check(mode(os.path.join(root, "etc/berth")) == 0o700, "/etc/berth mode")
        with open(env) as f:
            check(f.read() == "BERTH_SERVER=%s\nBERTH_TOKEN=%s\nBERTH_AGENT_FLAGS=\"--attr zone=b\"\n" % (s.url, token),
                  "agent.env contents")
        unit = os.path.join(root, "etc/systemd/system/berth-agent.service")
        with open(unit) as f, open(os.path.join(os.path.dirname(__file__), "../../systemd/berth-agent.service")) as g:
            check(f.read() == g.read(), "the unit is the tree's")
        check(mode(unit) == 0o644, "unit mode %o" % mode(unit))
        uninstall = os.path.join(root, "usr/local/bin/berth-uninstall.sh")
        check(mode(uninstall) == 0o755, "the uninstaller is installed")
        check(mode(os.path.join(root, "var/lib/berth-agent")) == 0o700, "state dir")

        # Run again with a systemctl that runs the installed agent (on this host's
        # Docker engine): the installer waits until it registered.
        import dockerd
        dockerd.ensure_docker()
        stub = os.path.join(scratch_dir("stub"), "systemctl")
        log = os.path.join(os.path.dirname(stub), "agent.log")
        with open(stub, "w") as f:
            f.write("#!/bin/sh\n"
                    "echo \"$@\" >>%(d)s/calls\n"
                    "[ \"$1\" = restart ] || exit 0\n"
                    "[ ! -s %(d)s/pid ] || kill $(cat %(d)s/pid) 2>/dev/null; sleep 0.3\n"
                    "set -a; . %(r)s/etc/berth/agent.env; set +a\n"
                    "setsid %(r)s/usr/local/bin/berth agent --state-dir %(r)s/var/lib/berth-agent "
                    "--docker-certs-dir '' $BERTH_AGENT_FLAGS >>%(log)s 2>&1 </dev/null &\n"
                    "echo $! >%(d)s/pid\n" % {"d": os.path.dirname(stub), "r": root, "log": log})
        os.chmod(stub, 0o755)
        pidfile = os.path.join(os.path.dirname(stub), "pid")
        try:
            r = run_installer(s, pin, "agent --token %s --attr zone=b" % shlex.quote(token), root,
                              env={"BERTH_SYSTEMCTL": stub, "BERTH_WAIT_SECONDS": "60"})
            check(r.returncode == 0, "install.sh with the agent run: %s\nagent log: %s"
                  % (r.stderr, open(log).read()[-2000:] if os.path.exists(log) else ""))
            check("joined as node" in r.stderr, "it says the node joined: %s" % r.stderr)
            with open(os.path.join(os.path.dirname(stub), "calls")) as f:
                calls = f.read()
            check(calls == "daemon-reload\nenable berth-agent\nrestart berth-agent\n", "systemctl calls: %r" % calls)
            with open(os.path.join(root, "var/lib/berth-agent/registered")) as f:
                node = f.read().split()[0]
            r = expect_status(s.request("GET", "/v1/nodes/" + node), 200, "the node the installer saw join")
            check(b'"zone"' in r.body and b'"b"' in r.body, "the node has its attribute: %r" % r.body[:600])
        finally:
            if os.path.exists(pidfile):
                subprocess.run(["sh", "-c", "kill $(cat %s) 2>/dev/null" % pidfile])

        r = subprocess.run(["sh", uninstall], capture_output=True, text=True,
                           env={"PATH": os.environ["PATH"], "BERTH_INSTALL_ROOT": root})
        check(r.returncode == 0, "uninstall: %s" % r.stderr)
        for p in ("usr/local/bin/berth", "etc/berth/agent.env", "etc/systemd/system/berth-agent.service",
                  "usr/local/bin/berth-uninstall.sh"):
            check(not os.path.exists(os.path.join(root, p)), "uninstall left %s" % p)
        check(os.path.exists(os.path.join(root, "var/lib/berth-agent/node-id")), "the data stays without --purge")


def test_install_sh_refuses_a_damaged_binary_a_wrong_ca_and_a_bad_token():
    with Server() as s, Server() as other:
        _, pin, _, _, token, _ = join_line(s)
        root = scratch_dir("root")
        # The binary altered after download (as a proxy or a bad disk would).
        r = run_installer(s, pin, "agent --token %s" % token, root,
                          env={"BERTH_INSTALL_AFTER_DOWNLOAD":
                               'printf X | dd of="$1" bs=1 seek=4096 conv=notrunc 2>/dev/null'})
        check(r.returncode != 0 and "SHA-256" in r.stderr and "run the line again" in r.stderr,
              "checksum mismatch: %d %s" % (r.returncode, r.stderr))
        check(not os.path.exists(os.path.join(root, "usr/local/bin/berth")), "nothing installed on a mismatch")
        # A token of another cluster: its pin is not this server's CA.
        _, _, _, _, other_token, _ = join_line(other)
        r = run_installer(s, pin, "agent --token %s" % other_token, root)
        check(r.returncode != 0 and "not the one the token pins" in r.stderr, "CA pin mismatch: %s" % r.stderr)
        # An expired token.
        _, _, _, _, short, _ = join_line(s, "--ttl", "1s")
        time.sleep(2.1)
        r = run_installer(s, pin, "agent --token %s" % short, root)
        check(r.returncode != 0 and "expired" in r.stderr and "join-command" in r.stderr, "expired: %s" % r.stderr)
        # A revoked token.
        before = {t["id"] for t in s.request("GET", "/v1/tokens").json()["tokens"]}
        _, _, _, _, revoked, _ = join_line(s)
        tid = [t["id"] for t in s.request("GET", "/v1/tokens").json()["tokens"] if t["id"] not in before][0]
        r = s.request("DELETE", "/v1/tokens/" + tid)
        check(r.status in (200, 204), "revoke: %d" % r.status)
        r = run_installer(s, pin, "agent --token %s" % revoked, root)
        check(r.returncode != 0 and "does not know this token" in r.stderr, "revoked: %s" % r.stderr)
        # A server token for an agent install.
        _, _, _, _, stoken, _ = join_line(s, "--role", "server")
        r = run_installer(s, pin, "agent --token %s" % stoken, root)
        check(r.returncode != 0 and "not a agent token" in r.stderr, "wrong role: %s" % r.stderr)
        # No Docker engine.
        _, _, _, _, token, _ = join_line(s)
        r = run_installer(s, pin, "agent --token %s" % token, root, env={"BERTH_DOCKER_SOCKET": "/nonexistent"})
        check(r.returncode != 0 and "--install-docker" in r.stderr, "no Docker: %s" % r.stderr)
        check(not os.path.exists(os.path.join(root, "usr/local/bin/berth")), "nothing installed after refusals")


def test_renewal_keeps_the_server_key_so_the_pin_holds():
    with Server(args=["--cert-lifetime", "6s"]) as s:
        line, pin, url, _, _, _ = join_line(s)

        def serial():
            out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % s.port], input=b"",
                                 capture_output=True, timeout=WAIT).stdout
            return subprocess.run(["openssl", "x509", "-noout", "-serial"], input=out, capture_output=True).stdout

        first = serial()
        wait_until(lambda: serial() != first, wait=20, step=0.5, what="a renewed server certificate")
        check(key_pin_of_listener(s) == pin, "the renewed certificate keeps the key")
        r = curl("-fsSL", "--pinnedpubkey", pin, "-k", url + "/install.sh")
        check(r.returncode == 0, "the join line still works after the renewal: %r" % r.stderr)


def test_install_sh_for_a_server_writes_its_env_and_waits_until_it_joined():
    with Server() as s:
        _, pin, _, role, token, _ = join_line(s, "--role", "server")
        root = scratch_dir("root")
        r = run_installer(s, pin, "server --token %s" % token, root)
        check(r.returncode == 0, "install.sh server: %s" % r.stderr)
        env = os.path.join(root, "etc/berth/server.env")
        check(mode(env) == 0o600, "server.env mode %o" % mode(env))
        with open(env) as f:
            check(f.read() == 'BERTH_SERVER=%s\nBERTH_TOKEN=%s\nBERTH_SERVER_FLAGS="--join %s"\n' % (s.url, token, s.url),
                  "server.env contents")
        check(os.path.exists(os.path.join(root, "etc/systemd/system/berth-server.service")), "the server unit")

        # An agent token is not a server token.
        _, _, _, _, agent_token, _ = join_line(s)
        r = run_installer(s, pin, "server --token %s" % agent_token, scratch_dir("root"))
        check(r.returncode != 0 and "not a server token" in r.stderr, "agent token for a server: %s" % r.stderr)

        # Run again with a systemctl that runs the installed server as the unit
        # would (its env file, BERTH_SERVER_FLAGS): the installer waits until the
        # new server is a member of the cluster. (Last: once it is stopped, the
        # cluster of two has lost its majority.)
        d = scratch_dir("stub")
        stub, log, pidfile = os.path.join(d, "systemctl"), os.path.join(d, "server.log"), os.path.join(d, "pid")
        with open(stub, "w") as f:
            f.write("#!/bin/sh\n"
                    "[ \"$1\" = restart ] || exit 0\n"
                    "set -a; . %(r)s/etc/berth/server.env; set +a\n"
                    "setsid %(r)s/usr/local/bin/berth server --data %(r)s/var/lib/berth --listen 127.0.0.1:0 "
                    "--no-agent $BERTH_SERVER_FLAGS >>%(log)s 2>&1 </dev/null &\n"
                    "echo $! >%(pid)s\n" % {"r": root, "log": log, "pid": pidfile})
        os.chmod(stub, 0o755)
        try:
            r = run_installer(s, pin, "server --token %s" % token, root,
                              env={"BERTH_SYSTEMCTL": stub, "BERTH_WAIT_SECONDS": "60"})
            check(r.returncode == 0, "install.sh with the server run: %s\nserver log: %s"
                  % (r.stderr, open(log).read()[-2000:] if os.path.exists(log) else ""))
            check("a member of its cluster as server" in r.stderr, "it says the server joined: %s" % r.stderr)
            with open(pidfile) as f, open("/proc/%s/cmdline" % f.read().strip(), "rb") as g:
                cmdline = g.read()
            check(b"--join" in cmdline and token.split("::")[-1].encode() not in cmdline,
                  "the token is not on the server's command line: %r" % cmdline)
            with open(os.path.join(root, "var/lib/berth/member")) as f:
                new_id = f.read().split()[0]
            r = expect_status(s.request("GET", "/v1/servers"), 200, "the cluster's servers")
            ids = [m["id"] for m in r.json()["servers"]]
            check(new_id in ids, "server %s is a member: %r" % (new_id, ids))
        finally:
            if os.path.exists(pidfile):
                subprocess.run(["sh", "-c", "kill $(cat %s) 2>/dev/null" % pidfile])
