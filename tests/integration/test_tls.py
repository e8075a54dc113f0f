"""TLS, the cluster CA, tokens that pin it, token lifecycle and node identities,
checked with real clients: openssl s_client, curl, the berth CLI and agents.

Every server here speaks TLS with the CA it made at first start (DATA/ca.crt).
"""

import hashlib
import json
import os
import re
import signal
import ssl
import subprocess
import threading
import time

from harness import (WAIT, Agent, DockerAgent, Server, check, cli, expect_error, expect_exit, expect_status,
                     scratch_dir, timeout, wait_until)


def pin_of(s):
    with open(s.ca_file) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def s_client(s, *args, stdin=b""):
    return subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % s.port] + list(args),
                          input=stdin, capture_output=True, timeout=WAIT)


def token(s, role, **extra):
    body = {"role": role}
    body.update(extra)
    r = expect_status(s.request("POST", "/v1/tokens", body), 201, "create a %s token" % role)
    return r.json()["token"]


def cli_env(s, tok=None):
    return {"BERTH_SERVER": s.url, "BERTH_TOKEN": tok or s.token}


def test_tls_listener_offers_tls12_with_ecdhe_aead_only():
    with Server() as s:
        out = s_client(s, "-CAfile", s.ca_file, "-verify_return_error", "-showcerts")
        text = out.stdout.decode(errors="replace")
        check(out.returncode == 0, "s_client: %s %s" % (text[-500:], out.stderr[-300:]))
        check("Protocol  : TLSv1.2" in text or "New, TLSv1.2" in text, "not TLS 1.2: %s" % text[-800:])
        check(re.search(r"Cipher is ECDHE-ECDSA-(AES128-GCM-SHA256|AES256-GCM-SHA384|CHACHA20-POLY1305)", text),
              "cipher: %s" % text[-800:])
        check("Verify return code: 0 (ok)" in text, "chain does not verify against ca.crt: %s" % text[-600:])
        # The chain: the server's certificate, issued by the cluster CA, then the CA.
        check(re.search(r"0 s:CN\s*=\s*\S+\s*\n\s*i:CN\s*=\s*berth cluster CA", text), "depth 0: %s" % text[:1500])
        check(re.search(r"1 s:CN\s*=\s*berth cluster CA", text), "depth 1: %s" % text[:1500])
        # Older protocols and weak suites are refused.
        for args in (["-tls1"], ["-tls1_1"], ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"],
                     ["-tls1_2", "-cipher", "AES128-GCM-SHA256"], ["-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256"]):
            r = s_client(s, *args)
            got = r.stdout.decode(errors="replace")
            check(r.returncode != 0 and "Cipher is (NONE)" in got, "%s was accepted: %s" % (args, got[-500:]))
        # Sessions resume, by ticket and by the session cache.
        for extra in ([], ["-no_ticket"]):
            r = s_client(s, "-reconnect", *extra)
            got = r.stdout.decode(errors="replace")
            check(got.count("Reused, TLSv1.2") >= 4, "%s: sessions not resumed: %s" % (extra, got[-600:]))
        s.assert_serving("the refused handshakes")


def test_curl_trusts_the_ca_file_and_names_match():
    with Server() as s:
        for host in ("127.0.0.1", "localhost"):
            r = subprocess.run(["curl", "-sS", "--cacert", s.ca_file, "-H", "Authorization: Bearer " + s.token,
                                "https://%s:%d/v1/clusters" % (host, s.port)], capture_output=True, text=True,
                               timeout=WAIT)
            check(r.returncode == 0 and "default" in r.stdout, "curl to %s: %s %s" % (host, r.stdout, r.stderr))
        r = subprocess.run(["curl", "-sS", "https://127.0.0.1:%d/healthz" % s.port], capture_output=True, text=True,
                           timeout=WAIT)
        check(r.returncode == 60, "curl without the CA must fail verification (60), got %d" % r.returncode)
        # The CA is public, for trust setup.
        r = s.request("GET", "/v1/ca", token=None)
        with open(s.ca_file, "rb") as f:
            check(r.status == 200 and r.body == f.read(), "GET /v1/ca: %r" % r)
        check(r.header("X-Berth-Ca-Sha256") == pin_of(s), "fingerprint header %r" % r.header("X-Berth-Ca-Sha256"))


def test_ca_show_prints_the_ca_and_its_fingerprint():
    with Server() as s:
        fp = subprocess.run(["openssl", "x509", "-in", s.ca_file, "-noout", "-fingerprint", "-sha256"],
                            capture_output=True, text=True).stdout.strip().split("=", 1)[1]
        for args, env in ((["ca", "show", "--data", s.data_dir], None), (["ca", "show"], cli_env(s))):
            p = expect_exit(cli(args, env=env), 0, " ".join(args))
            check("-----BEGIN CERTIFICATE-----" in p.stdout, "no PEM: %s" % p.stdout)
            check("SHA-256 fingerprint: " + fp in p.stdout, "fingerprint %s not in %s" % (fp, p.stdout))
            check(pin_of(s) in p.stdout, "the token form of the pin is missing: %s" % p.stdout)


def test_a_wrong_pin_is_refused_with_both_fingerprints():
    with Server() as s:
        other = "B10" + "ab" * 32 + "::" + s.token.split("::")[1]
        p = expect_exit(cli(["cluster", "ls"], env=cli_env(s, other)), 3, "cluster ls with a wrong pin")
        check("not the pinned " + "ab" * 32 in p.stderr and pin_of(s) in p.stderr, "message: %s" % p.stderr)
        check(len([l for l in p.stderr.splitlines() if "pinned" in l]) == 1, "not one line: %s" % p.stderr)
        # A bare secret over https without a CA file: told what to give.
        p = expect_exit(cli(["cluster", "ls"], env=cli_env(s, s.token.split("::")[1])), 2, "no pin, no CA file")
        check("CA" in p.stderr and "fingerprint" in p.stderr, "message: %s" % p.stderr)
        # An agent with a wrongly pinned token never joins, and says why.
        bad = "B10" + "cd" * 32 + "::" + token(s, "agent")["secret"].split("::")[1]
        with Agent(s, 1, bad, id_prefix="badpin") as a:
            wait_until(lambda: "not the pinned" in a.logs(), what="the agent to log the pin mismatch")
            check(a.alive(), "the agent died")
        nodes = expect_status(s.request("GET", "/v1/nodes"), 200).json()["containerInstances"]
        check(not nodes, "a node joined with a wrong pin: %r" % nodes)


@timeout(60)
def test_token_lifecycle_ttl_uses_ls_rm():
    with Server() as s:
        env = cli_env(s)
        p = expect_exit(cli(["token", "create", "--role", "read-only", "--ttl", "2s"], env=env), 0, "create --ttl")
        short = p.stdout.strip()
        check(short.startswith("B10" + pin_of(s) + "::"), "printed token is not pinned: %r" % short)
        expect_exit(cli(["cluster", "ls"], env=cli_env(s, short)), 0, "the token works before it expires")
        time.sleep(2.5)
        p = expect_exit(cli(["cluster", "ls"], env=cli_env(s, short)), 4, "an expired token")
        check("expired" in p.stderr, "message: %s" % p.stderr)
        # uses: one join per use.
        joiner = token(s, "agent", uses=1)
        check(joiner["usesLeft"] == 1, "usesLeft %r" % joiner)
        r = s.request("POST", "/v1/agent/register", {"nodeId": "use-1", "cpu": 1024, "memory": 1024},
                      token=joiner["secret"])
        expect_status(r, 200, "first join")
        r = s.request("POST", "/v1/agent/register", {"nodeId": "use-2", "cpu": 1024, "memory": 1024},
                      token=joiner["secret"])
        expect_error(r, 401, "Unauthorized", "second join with a one-use token")
        # ls: role, created, last used, expiry, uses left.
        p = expect_exit(cli(["token", "ls"], env=env), 0, "token ls")
        check(p.stdout.splitlines()[0].split() == ["ID", "ROLE", "CREATED", "LAST", "USED", "EXPIRES", "USES", "LEFT",
                                                   "LIMITED", "TO"],
              "header %r" % p.stdout.splitlines()[0])
        rows = {l.split()[0]: l.split() for l in p.stdout.splitlines()[1:]}
        check(rows[joiner["id"]][-2:] == ["0", "-"], "uses left after the join: %r" % rows[joiner["id"]])
        wait_until(lambda: any(t["id"] == "admin" and t.get("lastUsedAt")
                               for t in s.request("GET", "/v1/tokens").json()["tokens"]),
                   what="the admin token's last use to be recorded")
        # rm: in force at once; the last admin token cannot go.
        deploy = token(s, "deploy")
        expect_exit(cli(["cluster", "ls"], env=cli_env(s, deploy["secret"])), 0, "deploy token works")
        expect_exit(cli(["token", "rm", deploy["id"]], env=env), 0, "token rm")
        expect_exit(cli(["cluster", "ls"], env=cli_env(s, deploy["secret"])), 4, "a removed token")
        p = expect_exit(cli(["token", "rm", "admin"], env=env), 1, "removing the last admin token")
        check("last admin token" in p.stderr, "message: %s" % p.stderr)


def _two_token_nodes(s, prefix):
    """Registers PREFIX-a and PREFIX-b, each joined with an agent token of its own;
    returns the two tokens (each node is bound to its own)."""
    a, b = token(s, "agent")["secret"], token(s, "agent")["secret"]
    for node, tok in ((prefix + "-a", a), (prefix + "-b", b)):
        expect_status(s.request("POST", "/v1/agent/register", {"nodeId": node, "cpu": 1024, "memory": 1024},
                                token=tok), 200, "register " + node)
    return a, b


@timeout(60)
def test_agent_routes_are_bound_to_the_node_that_joined():
    with Server() as s:
        a, b = _two_token_nodes(s, "bound")
        # b's token cannot register over, stream for, or report for a's node.
        r = s.request("POST", "/v1/agent/register", {"nodeId": "bound-a", "cpu": 1, "memory": 1}, token=b)
        expect_error(r, 409, "NodeIdentityHeld", "registering over another node")
        expect_error(s.request("GET", "/v1/agent/nodes/bound-a/desired", token=b), 403, "Forbidden", "stream")
        expect_error(s.request("POST", "/v1/agent/nodes/bound-a/report", {"tasks": []}, token=b), 403, "Forbidden",
                     "report")
        expect_error(s.request("POST", "/v1/agent/nodes/bound-a/pull-credentials", {"image": "h:1/x:1"}, token=b),
                     403, "Forbidden", "pull credentials")
        # Only agents use these routes: the read-only and admin tokens are refused.
        ro = token(s, "read-only")["secret"]
        for tok in (ro, s.token):
            expect_error(s.request("GET", "/v1/agent/nodes/bound-a/desired", token=tok), 403, "Forbidden",
                         "a non-agent token opening a stream")
        expect_status(s.request("POST", "/v1/agent/nodes/bound-a/report", {"tasks": []}, token=a), 200, "own report")


def _node_files(state_dir):
    return {n: os.path.exists(os.path.join(state_dir, n)) for n in ("node.key", "node.crt", "ca.crt", "node-id")}


@timeout(180)
def test_docker_agent_joins_with_a_certificate_renews_it_and_is_refused_when_revoked():
    import dockerd
    dockerd.ensure_docker()
    with Server(args=["--cert-lifetime", "12s", "--heartbeat-interval", "500ms"]) as s:
        tok = token(s, "agent", uses=1)["secret"]
        agent = DockerAgent(s, tok, args=["--docker-certs-dir", scratch_dir("certs.d")])
        try:
            node = agent.node_id(wait=60)
            wait_until(lambda: all(_node_files(agent.state_dir).values()), wait=30, what="the node's key and certificate")
            key = os.path.join(agent.state_dir, "node.key")
            check(oct(os.stat(key).st_mode & 0o777) == "0o600", "node.key mode %o" % (os.stat(key).st_mode & 0o777))
            with open(os.path.join(agent.state_dir, "node.crt")) as f:
                first = f.read()
            subj = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "extendedKeyUsage"],
                                  input=first, capture_output=True, text=True).stdout
            check("CN = " + node in subj and "TLS Web Client Authentication" in subj, "node certificate: %s" % subj)
            v = subprocess.run(["openssl", "verify", "-CAfile", s.ca_file], input=first, capture_output=True, text=True)
            check(v.returncode == 0, "node certificate not from the cluster CA: %s" % v.stdout + v.stderr)
            node_doc = expect_status(s.request("GET", "/v1/nodes/" + node), 200).json()["containerInstance"]
            check(node_doc["agentConnected"], "agent not connected: %r" % node_doc)
            # Renewed by itself before it ends (a third of 12 s left), and still connected.
            wait_until(lambda: open(os.path.join(agent.state_dir, "node.crt")).read() != first, wait=30,
                       what="the node certificate to be renewed")
            time.sleep(6)  # past the first certificate's end
            wait_until(lambda: s.request("GET", "/v1/nodes/" + node).json()["containerInstance"]["agentConnected"],
                       what="the agent connected after its renewal")
            # A restart keeps the identity: same node, no new join (the token had one use).
            agent.restart()
            check(agent.node_id() == node, "node id changed across a restart")
            wait_until(lambda: s.request("GET", "/v1/nodes/" + node).json()["containerInstance"]["agentConnected"],
                       wait=60, what="the restarted agent to connect with its certificate")
            # A server restart keeps the CA, the node and its identity: the agent comes
            # back under the same id with its certificate (its one-use token is spent,
            # so it could not have joined again).
            s.stop()
            s.start()
            wait_until(lambda: s.request("GET", "/v1/nodes/" + node).json()["containerInstance"]["agentConnected"],
                       wait=60, what="the agent to connect again after the server's restart")
            check(agent.node_id() == node, "node id changed across the server's restart")
            check(len(s.request("GET", "/v1/nodes").json()["containerInstances"]) == 1, "a second node appeared")
            # Revoked: refused at once, stream closed, never back under that id.
            expect_status(s.request("POST", "/v1/nodes/%s/revoke" % node, {}), 200, "revoke")
            wait_until(lambda: s.request("GET", "/v1/nodes/" + node).status == 404, what="the node to be gone")
            agent.restart()
            wait_until(lambda: "revoked" in agent.logs(), wait=60, what="the agent to be told it was revoked")
            check(s.request("GET", "/v1/nodes/" + node).status == 404, "a revoked node came back")
        finally:
            agent.kill()


@timeout(90)
def test_no_tls_still_works_end_to_end():
    with Server(tls=False) as s:
        check(any("WARNING: --no-tls" in l for l in s.stdout_lines), "no warning at start: %r" % s.stdout_lines)
        tok = token(s, "agent")["secret"]
        env = {"BERTH_SERVER": s.url, "BERTH_TOKEN": s.token}
        expect_exit(cli(["cluster", "create", "plain"], env=env), 0, "cluster create over http")
        with Agent(s, 2, tok, id_prefix="plain") as _:
            wait_until(lambda: len(s.request("GET", "/v1/nodes").json()["containerInstances"]) == 2,
                       what="two simulated nodes over plain HTTP")


@timeout(60)
def test_restart_keeps_ca_certificate_and_tokens():
    with Server() as s:
        pin = pin_of(s)
        with open(os.path.join(s.data_dir, "server.crt")) as f:
            cert = f.read()
        tok = token(s, "deploy")["secret"]
        s.stop()
        s.start()
        check(pin_of(s) == pin, "the CA changed across a restart")
        with open(os.path.join(s.data_dir, "server.crt")) as f:
            check(f.read() == cert, "the server certificate was made anew without cause")
        expect_exit(cli(["cluster", "ls"], env=cli_env(s, tok)), 0, "a pinned token after the restart")


@timeout(60)
def test_server_certificate_is_renewed_without_a_restart():
    with Server(args=["--cert-lifetime", "6s"]) as s:
        def serial():
            out = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % s.port],
                                 input=b"", capture_output=True, timeout=WAIT).stdout
            x = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=out, capture_output=True)
            return x.stdout.strip()
        first = serial()
        check(first.startswith(b"serial="), "no serial: %r" % first)
        wait_until(lambda: serial() != first, wait=20, step=0.5, what="a new server certificate on the listener")
        s.assert_serving("the renewal")


def _sh(*args, check_rc=True, **kw):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=120, **kw)
    if check_rc and r.returncode != 0:
        raise AssertionError("%s failed: %s" % (" ".join(args), r.stderr.strip()))
    return r


@timeout(300)
def test_docker_verifies_the_registry_through_certs_d_and_pulls_with_node_credentials():
    """A server on another host (a network namespace at 10.213.x.2, not loopback, so
    Docker verifies its certificate): a push fails until the agent has written the
    cluster CA to /etc/docker/certs.d/HOST:PORT/ca.crt, then goes through; the
    agent's engine pulls a task's image with the node's pull credentials (no
    `docker login` anywhere the daemon could use)."""
    import dockerd
    dockerd.ensure_docker()
    tag = "%05d" % (os.getpid() % 100000)
    ns, veth = "berth-tls-" + tag, "bt" + tag
    net = "10.213.%d" % (os.getpid() % 250 + 1)
    _sh("ip", "netns", "add", ns)
    certs_dir, ref, agent = None, None, None
    try:
        _sh("ip", "link", "add", veth + "h", "type", "veth", "peer", "name", veth + "n")
        _sh("ip", "link", "set", veth + "n", "netns", ns)
        _sh("ip", "addr", "add", net + ".1/30", "dev", veth + "h")
        _sh("ip", "link", "set", veth + "h", "up")
        for cmd in (["ip", "addr", "add", net + ".2/30", "dev", veth + "n"], ["ip", "link", "set", veth + "n", "up"],
                    ["ip", "link", "set", "lo", "up"]):
            _sh("ip", "netns", "exec", ns, *cmd)
        with Server(host=net + ".2", wrapper=["ip", "netns", "exec", ns], args=["--heartbeat-interval", "500ms"]) as s:
            host = "%s:%d" % (s.host, s.port)
            certs_dir = "/etc/docker/certs.d/" + host
            ref = host + "/certs/box:1"
            cfg = scratch_dir("docker-config")
            r = _sh("docker", "--config", cfg, "login", host, "-u", "admin", "--password-stdin", input=s.token,
                    check_rc=False)
            check(r.returncode != 0 and "certificate" in r.stderr, "login before the CA was trusted: %r" % r.stderr)
            agent = DockerAgent(s, token(s, "agent")["secret"])
            node = agent.node_id(wait=60)
            wait_until(lambda: os.path.exists(certs_dir + "/ca.crt"), wait=30, what="the agent to write " + certs_dir)
            with open(certs_dir + "/ca.crt") as f, open(s.ca_file) as g:
                check(f.read().strip() == g.read().strip(), "certs.d holds another CA")
            _sh("docker", "--config", cfg, "login", host, "-u", "admin", "--password-stdin", input=s.token)
            _sh("docker", "tag", dockerd.IMAGE, ref)
            _sh("docker", "--config", cfg, "push", ref)
            _sh("docker", "rmi", ref)  # the agent must pull it, with its node's credentials
            td = {"family": "certs", "containerDefinitions": [
                {"name": "main", "image": ref, "memory": 16, "stopTimeout": 1, "command": ["sleep", "3600"]}]}
            expect_status(s.request("POST", "/v1/taskdefinitions", td), 201, "register")
            ran = expect_status(s.request("POST", "/v1/tasks", {"taskDefinition": "certs"}), 200, "run").json()
            task_id = ran["tasks"][0]["taskId"]

            def running():
                t = s.request("GET", "/v1/tasks/" + task_id).json()["task"]
                check(t["lastStatus"] != "STOPPED", "the task stopped: %r" % t.get("stoppedReason"))
                return t["lastStatus"] == "RUNNING"
            wait_until(running, wait=120, what="the task on the registry's image RUNNING")
            check(_sh("docker", "image", "inspect", ref, check_rc=False).returncode == 0, "the image was not pulled")
            check("no pull credentials" not in agent.logs(), "the agent pulled without credentials")
            # `berth registry trust` writes the same for a workstation's Docker.
            work = scratch_dir("workstation-certs")
            p = expect_exit(cli(["registry", "trust", "--docker-certs-dir", work],
                                env={"BERTH_SERVER": s.url, "BERTH_TOKEN": s.token}), 0, "registry trust")
            with open(os.path.join(work, host, "ca.crt")) as f, open(s.ca_file) as g:
                check(f.read().strip() == g.read().strip(), "registry trust wrote another CA: %s" % p.stdout)
            expect_status(s.request("POST", "/v1/tasks/%s/stop" % task_id, {"reason": "done"}), 200, "stop")
            agent.kill()
            agent = None
            ids = _sh("docker", "ps", "-aq", "--filter", "label=berth.node=" + node).stdout.split()
            if ids:
                _sh("docker", "rm", "-f", *ids, check_rc=False)
    finally:
        if agent:
            agent.kill()
        if ref:
            _sh("docker", "rmi", "-f", ref, check_rc=False)
        if certs_dir:
            subprocess.run(["rm", "-rf", certs_dir])
        subprocess.run(["ip", "link", "del", veth + "h"], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _open_stream(s, node, tok):
    """A node's desired-state stream, read line by line (pings skipped)."""
    conn = s.http_connection(WAIT)
    conn.request("GET", "/v1/agent/nodes/%s/desired?changes=1" % node, headers={"Authorization": "Bearer " + tok})
    resp = conn.getresponse()
    if resp.status != 200:  # (reading the body of a 200 would wait for the stream's end)
        check(False, "stream of %s: HTTP %d %r" % (node, resp.status, resp.read()[:200]))
    return conn, resp


def _stream_ends(resp):
    """True once the stream ends (EOF); pings and lines before it are skipped."""
    while True:
        try:
            line = resp.readline()
        except TimeoutError:
            return False  # still open after WAIT seconds
        except (OSError, ValueError):
            return True
        if not line:
            return True


class _Reporting:
    """Reports for a node every 200 ms, as its agent would, so that its stream is
    never closed for silence while a test waits for another reason."""

    def __init__(self, s, node, tok):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(s, node, tok), daemon=True)
        self.thread.start()

    def _run(self, s, node, tok):
        while not self.stop.wait(0.2):
            try:
                s.request("POST", "/v1/agent/nodes/%s/report" % node, {"tasks": []}, token=tok)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(WAIT)


@timeout(60)
def test_removed_or_expired_tokens_end_their_streams_and_registry_sessions():
    with Server() as s:
        # rm: the stream of the node it joined closes at once.
        agent = token(s, "agent")
        expect_status(s.request("POST", "/v1/agent/register", {"nodeId": "rm-1", "cpu": 1024, "memory": 1024},
                                token=agent["secret"]), 200, "register")
        conn, resp = _open_stream(s, "rm-1", agent["secret"])
        with _Reporting(s, "rm-1", agent["secret"]):
            time.sleep(1)
            check(s.request("GET", "/v1/nodes/rm-1").json()["containerInstance"]["agentConnected"], "not connected")
            expect_status(s.request("DELETE", "/v1/tokens/" + agent["id"]), 200, "token rm")
            check(_stream_ends(resp), "the stream stayed open")
        check("closing the stream of a node whose token was revoked" in s.logs(), "closed for another reason")
        conn.close()
        expect_error(s.request("POST", "/v1/agent/nodes/rm-1/report", {"tasks": []}, token=agent["secret"]), 401,
                     "Unauthorized", "a report with the removed token")
        # Expiry: the stream closes when the token expires, without a request.
        short = token(s, "agent", ttlSeconds=3)
        expect_status(s.request("POST", "/v1/agent/register", {"nodeId": "ttl-1", "cpu": 1024, "memory": 1024},
                                token=short["secret"]), 200, "register")
        conn, resp = _open_stream(s, "ttl-1", short["secret"])
        with _Reporting(s, "ttl-1", short["secret"]):
            check(_stream_ends(resp), "the stream stayed open")
        check("closing the stream of a node whose token expired" in s.logs(), "closed for another reason")
        conn.close()
        # A registry session (a /v2/token bearer token) ends with its API token.
        deploy = token(s, "deploy")
        import base64
        basic = base64.b64encode(("x:" + deploy["secret"].split("::")[1]).encode()).decode()
        r = s.request("GET", "/v2/token?service=berth&scope=repository:sess/a:pull,push",
                      headers={"Authorization": "Basic " + basic}, token=None)
        expect_status(r, 200, "registry token")
        bearer = r.json()["token"]
        expect_status(s.request("GET", "/v2/", token=bearer), 200, "/v2/ with the registry token")
        expect_status(s.request("DELETE", "/v1/tokens/" + deploy["id"]), 200, "token rm")
        r = s.request("GET", "/v2/", token=bearer)
        check(r.status == 401, "the registry session outlived its token: %r" % r)


@timeout(60)
def test_only_the_asked_node_answers_a_logs_request():
    with Server() as s:
        a, b = _two_token_nodes(s, "logs")
        conn, resp = _open_stream(s, "logs-a", a)  # only logs-a is connected: the task lands there
        expect_status(s.request("POST", "/v1/agent/nodes/logs-a/report", {"tasks": []}, token=a), 200, "report")
        wait_until(lambda: s.request("GET", "/v1/nodes/logs-a").json()["containerInstance"]["agentConnected"],
                   what="logs-a connected")
        body = {"family": "logs", "containerDefinitions": [{"name": "main", "image": "busybox:latest",
                                                            "cpu": 128, "memory": 64}]}
        expect_status(s.request("POST", "/v1/taskdefinitions", body), 201, "register task definition")
        ran = expect_status(s.request("POST", "/v1/tasks", {"taskDefinition": "logs"}), 200, "run").json()
        check(len(ran["tasks"]) == 1 and ran["tasks"][0]["nodeId"] == "logs-a", "placement: %r" % ran)
        task = ran["tasks"][0]["taskId"]
        got = {}

        def client():
            r = s.request("GET", "/v1/tasks/%s/logs?container=main" % task)
            got["status"], got["body"] = r.status, r.body

        t = threading.Thread(target=client)
        t.start()
        request_id = None
        while request_id is None:
            line = resp.readline()
            check(line, "the stream ended before the logs request")
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and msg.get("type") == "logs":
                request_id = msg["requestId"]
        # Another node's agent, an admin and a read-only token cannot answer it.
        frame = b"6\nhello\n"
        for tok, status in ((b, 403), (s.token, 403), (token(s, "read-only")["secret"], 403)):
            r = s.request("POST", "/v1/agent/logs/" + request_id, frame, token=tok)
            check(r.status == status, "answer with another credential: HTTP %d %r" % (r.status, r.body[:200]))
        # The asked node's own agent can.
        r = s.request("POST", "/v1/agent/logs/" + request_id, frame + b"0\n", token=a)
        expect_status(r, 200, "the asked node's answer")
        t.join(WAIT)
        check(got.get("status") == 200 and got.get("body") == b"hello\n", "the client got %r" % got)
        conn.close()
