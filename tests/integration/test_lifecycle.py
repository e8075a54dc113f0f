"""Server lifecycle: first start, restart, the data-directory lock, crash
safety under kill -9, graceful shutdown, and command streams with and without
group commit."""

import http.client
import json
import hashlib
import os
import ssl
import shutil
import signal
import sqlite3
import stat
import threading

from harness import (Server, build_request, check, expect_status, port_refuses, run_server_once, scratch_dir,
                     timeout, wait_until)


def integrity_check(db_path):
    """PRAGMA integrity_check on a stopped server's database; returns the rows."""
    db = sqlite3.connect(db_path)
    try:
        return [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
    finally:
        db.close()


def db_cluster_names(db_path):
    db = sqlite3.connect(db_path)
    try:
        return {r[0] for r in db.execute("SELECT name FROM clusters").fetchall()}
    finally:
        db.close()


def test_first_start_creates_data_dir_token_and_default_cluster():
    with Server() as s:
        d = s.data_dir
        check(stat.S_IMODE(os.stat(d).st_mode) == 0o700, "data dir mode %o" % stat.S_IMODE(os.stat(d).st_mode))
        tok = os.path.join(d, "admin-token")
        check(stat.S_IMODE(os.stat(tok).st_mode) == 0o600, "admin-token mode %o" % stat.S_IMODE(os.stat(tok).st_mode))
        with open(tok) as f:
            text = f.read()
        check(text == s.token + "\n", "admin-token is not token + newline: %r" % text)
        # Pinned as k3s's are: "B10" + the CA's SHA-256 + "::" + the secret.
        with open(os.path.join(d, "ca.crt"), "rb") as f:
            der = ssl.PEM_cert_to_DER_cert(f.read().decode())
        pin = hashlib.sha256(der).hexdigest()
        check(s.token.startswith("B10" + pin + "::berth_") and len(s.token) > 90, "token %r (CA %s)" % (s.token, pin))
        check(any("shown this once" in l and s.token in l for l in s.stdout_lines),
              "first start does not print the new token: %r" % s.stdout_lines)
        check(any(pin in l for l in s.stdout_lines), "first start does not print the CA fingerprint")
        for name, mode in (("ca.crt", 0o600), ("ca.key", 0o600), ("server.crt", 0o600), ("server.key", 0o600)):
            got = stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode)
            check(got == mode, "%s mode %o, not %o" % (name, got, mode))
        check(os.path.exists(os.path.join(d, "state.db")), "no state.db")
        check(s.cluster_names() == ["default"], "clusters %r" % s.cluster_names())


def test_restart_keeps_clusters_and_token():
    with Server() as s:
        for n in ("keep-1", "keep-2", "keep-3"):
            expect_status(s.create_cluster(n), 201)
        expect_status(s.request("DELETE", "/v1/clusters/keep-2"), 200)
        tok_path = os.path.join(s.data_dir, "admin-token")
        before = os.stat(tok_path)
        old_token = s.token
        s.stop()
        check(integrity_check(os.path.join(s.data_dir, "state.db")) == ["ok"], "integrity_check after a clean stop")
        s.start()
        check(s.token == old_token, "the admin token changed across a restart")
        # Printed at first start only: a restart says where it is, never what it is.
        check(not any(old_token.split("::")[-1] in l for l in s.stdout_lines),
              "a restart printed the admin token: %r" % s.stdout_lines)
        check(any("admin token is in " + tok_path in l for l in s.stdout_lines),
              "restart does not say where the token is: %r" % s.stdout_lines)
        after = os.stat(tok_path)
        check((after.st_ino, after.st_mtime_ns, after.st_size) == (before.st_ino, before.st_mtime_ns, before.st_size),
              "admin-token was rewritten on restart")
        check(stat.S_IMODE(after.st_mode) == 0o600, "admin-token mode %o" % stat.S_IMODE(after.st_mode))
        check(s.cluster_names() == ["default", "keep-1", "keep-3"], "after restart: %r" % s.cluster_names())
        expect_status(s.request("GET", "/v1/clusters/keep-1", token=old_token), 200, "old token after restart")


def test_second_server_on_the_same_data_dir_is_refused():
    with Server() as s:
        p = run_server_once(["--data", s.data_dir, "--listen", "127.0.0.1:0"])
        check(p.returncode == 1, "second server exit %d (want 1); stderr %r" % (p.returncode, p.stderr))
        check("in use" in p.stderr, "second server message: %r" % p.stderr)
        expect_status(s.request("GET", "/v1/clusters"), 200, "first server after the refused second one")


def _modes(data_dir):
    """{name: mode} of the data directory ("." ) and of what it holds at its top."""
    out = {".": stat.S_IMODE(os.lstat(data_dir).st_mode)}
    for name in os.listdir(data_dir):
        st = os.lstat(os.path.join(data_dir, name))
        if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            out[name] = stat.S_IMODE(st.st_mode)
    return out


def _loose(modes):
    return {n: oct(m) for n, m in modes.items() if m != (0o700 if n == "." or n in ("agent", "registry", "raft") else 0o600)}


@timeout(60)
def test_data_directory_is_private_and_loose_modes_are_tightened_or_refused():
    s = Server()
    try:
        expect_status(s.request("POST", "/v1/clusters", {"clusterName": "modes"}), 201, "a change")
        modes = _modes(s.data_dir)
        check({"state.db", "admin-token", "ca.key", "server.key"} <= set(modes), "files: %r" % sorted(modes))
        check(not _loose(modes), "modes at first start: %r" % _loose(modes))
        s.stop()
        # Loose but not writable by all (an untar, a copy): tightened at the next start.
        os.chmod(s.data_dir, 0o775)
        for name in ("state.db", "ca.key", "admin-token"):
            os.chmod(os.path.join(s.data_dir, name), 0o644)
        s.start()
        check(not _loose(_modes(s.data_dir)), "not tightened: %r" % _loose(_modes(s.data_dir)))
        check("tightened the modes of the data directory" in s.logs(), "no word of it in the log")
        expect_status(s.request("GET", "/v1/clusters/modes"), 200, "the cluster after the restart")
        s.stop()
        # Writable by every user: refused, with the path and the mode, and nothing lost.
        os.chmod(s.data_dir, 0o777)
        p = run_server_once(["--data", s.data_dir, "--listen", "127.0.0.1:0"])
        check(p.returncode == 1, "exit %d (want 1); stderr %r" % (p.returncode, p.stderr))
        check("writable by every user" in p.stderr and s.data_dir in p.stderr and "0777" in p.stderr,
              "message: %r" % p.stderr)
        check(stat.S_IMODE(os.stat(s.data_dir).st_mode) == 0o777, "the refused directory was changed")
        os.chmod(s.data_dir, 0o700)
        s.start()
        expect_status(s.request("GET", "/v1/clusters/modes"), 200, "the cluster after the refusal")
        s.stop()
        # A data directory given through a symbolic link is that directory.
        link = os.path.join(scratch_dir("link"), "data")
        os.symlink(s.data_dir, link)
        s2 = Server(data_dir=link)
        try:
            expect_status(s2.request("GET", "/v1/clusters/modes"), 200, "the cluster through the link")
        finally:
            s2.stop()
    finally:
        if s.alive():
            s.stop()


def test_bad_server_flags_are_usage_errors():
    d = os.path.join(scratch_dir("flags"), "data")
    for flags in (["--max-header-bytes", "100"], ["--header-timeout", "0"], ["--header-timeout", "soon"],
                  ["--max-connections", "0"], ["--no-such-flag"], ["--log-level", "loud"], ["extra-arg"],
                  ["--apply-budget", "soon"], ["--apply-budget", "-1ms"]):
        p = run_server_once(["--data", d, "--listen", "127.0.0.1:0"] + flags)
        check(p.returncode == 2, "berth server %s: exit %d (want 2); stderr %r" % (flags, p.returncode, p.stderr))
        check(p.stderr.strip(), "berth server %s: no message" % flags)


def test_sigint_stops_cleanly():
    with Server() as s:
        expect_status(s.create_cluster("int"), 201)
        s.signal(signal.SIGINT)
        check(s.wait_exit() == 0, "exit code after SIGINT: %r" % s.returncode)
        s.start()
        check("int" in s.cluster_names(), "cluster lost across SIGINT")


# --- concurrent create streams ---


class CreateStream:
    """Client threads, each on its own keep-alive connection, creating clusters
    with unique names until told to stop (or until `per_thread` each)."""

    def __init__(self, server, prefix, threads, per_thread=None):
        self.server, self.prefix, self.per_thread = server, prefix, per_thread
        self.acked, self.sent, self.unexpected = set(), set(), []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, t):
        conn = self.server.http_connection(30)
        hdrs = {"Authorization": "Bearer " + self.server.token, "Content-Type": "application/json"}
        i = 0
        try:
            while not self.stop.is_set() and (self.per_thread is None or i < self.per_thread):
                name = "%s-%d-%d" % (self.prefix, t, i)
                with self.lock:
                    self.sent.add(name)
                try:
                    conn.request("POST", "/v1/clusters", json.dumps({"clusterName": name}), hdrs)
                    r = conn.getresponse()
                    body = r.read()
                except (OSError, http.client.HTTPException):
                    return  # the server went away
                with self.lock:
                    if r.status == 201:
                        self.acked.add(name)
                    else:
                        self.unexpected.append((name, r.status, body[:200]))
                i += 1
        finally:
            conn.close()

    def acked_count(self):
        with self.lock:
            return len(self.acked)

    def join(self):
        for t in self.threads:
            t.join(60)
        check(not any(t.is_alive() for t in self.threads), "client threads did not finish")


def crash_and_recover(args):
    with Server(args=args) as s:
        stream = CreateStream(s, "crash", threads=16).start()
        wait_until(lambda: stream.acked_count() >= 300, wait=60, what="300 acknowledged creates")
        s.kill()  # kill -9 in the middle of the stream
        stream.stop.set()
        stream.join()
        check(not stream.unexpected, "creates answered other than 201: %r" % stream.unexpected[:5])
        acked = set(stream.acked)

        # The files exactly as the crash left them, checked on a copy.
        copy = scratch_dir("crashcopy")
        for f in os.listdir(s.data_dir):
            if f.startswith("state.db"):
                shutil.copy2(os.path.join(s.data_dir, f), copy)
        check(integrity_check(os.path.join(copy, "state.db")) == ["ok"], "integrity_check right after kill -9")

        s.start()
        names = set(s.cluster_names())
        lost = acked - names
        check(not lost, "%d acknowledged creates lost by the crash, e.g. %r" % (len(lost), sorted(lost)[:5]))
        phantom = {n for n in names if n.startswith("crash-")} - stream.sent
        check(not phantom, "clusters nobody asked for: %r" % sorted(phantom)[:5])
        # The server still takes writes after recovery.
        expect_status(s.create_cluster("after-crash"), 201, "create after recovery")
        s.stop()
        db = os.path.join(s.data_dir, "state.db")
        check(integrity_check(db) == ["ok"], "integrity_check after recovery and a clean stop")
        check(acked | {"after-crash"} <= db_cluster_names(db), "acknowledged clusters missing from the table")


@timeout(90)
def test_crash_safety_kill9_during_create_stream():
    crash_and_recover([])


@timeout(90)
def test_crash_safety_kill9_without_group_commit():
    crash_and_recover(["--no-group-commit"])


def wait_token_touched(s):
    """Waits for the admin token's first use to be recorded (a TouchTokens command,
    then none for a minute), so command and transaction counts after it are exact."""
    wait_until(lambda: any(t["id"] == "admin" and t.get("lastUsedAt")
                           for t in s.request("GET", "/v1/tokens").json()["tokens"]),
               what="the admin token's last use to be recorded")


def create_stream_all_succeed(args):
    with Server(args=args) as s:
        wait_token_touched(s)
        stream = CreateStream(s, "burst", threads=8, per_thread=40).start()
        stream.join()
        check(not stream.unexpected, "creates answered other than 201: %r" % stream.unexpected[:5])
        check(len(stream.acked) == 320, "%d of 320 creates acknowledged" % len(stream.acked))
        names = set(s.cluster_names())
        check(stream.acked <= names, "%d acknowledged clusters missing from the list" % len(stream.acked - names))
        applied = s.metric('berth_store_commands_total{outcome="applied"}')
        batches = s.metric("berth_store_commit_batch_size_count")
        batched = s.metric("berth_store_commit_batch_size_sum")
        # 320 creates, plus the default cluster and the admin token at first start,
        # and the record of the admin token's first use.
        check(applied == 323, "applied commands %r, want 323" % applied)
        check(batched == 323, "commands over all batches %r, want 323" % batched)
        return batches


def frozen_burst(s, n):
    """`n` creates that reach the server in one loop iteration: each connection
    sends all of its request but the last byte, the server is stopped (SIGSTOP),
    the last bytes go out, and it is continued: its next poll finds every request
    complete at once. Returns the transactions those n commands took."""
    wait_token_touched(s)
    conns = []
    for i in range(n):
        body = json.dumps({"clusterName": "frozen-%d" % i}).encode()
        c = s.raw()
        c.send(b"POST /v1/clusters HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (s.token.encode(), len(body))
               + body[:-1])
        conns.append((c, body[-1:]))
    before = s.metric("berth_store_commit_batch_size_count")
    s.signal(signal.SIGSTOP)
    try:
        for c, last in conns:
            c.send(last)
    finally:
        s.signal(signal.SIGCONT)
    for c, _ in conns:
        expect_status(c.read_response(), 201, "a frozen-burst create")
        c.close()
    return s.metric("berth_store_commit_batch_size_count") - before


@timeout(60)
def test_create_stream_with_group_commit():
    batches = create_stream_all_succeed([])
    check(1 <= batches <= 322, "batch count %r" % batches)
    # Commands submitted in one loop iteration share one transaction: 100
    # creates that arrive together take a handful of commits, not 100.
    with Server() as s:
        burst = frozen_burst(s, 100)
        check(burst <= 5, "100 creates that arrived together took %r transactions" % burst)


@timeout(60)
def test_create_stream_without_group_commit():
    batches = create_stream_all_succeed(["--no-group-commit"])
    check(batches == 323, "--no-group-commit: %r transactions for 323 commands, want one each" % batches)
    with Server(args=["--no-group-commit"]) as s:
        burst = frozen_burst(s, 100)
        check(burst == 100, "--no-group-commit: %r transactions for 100 creates, want one each" % burst)


# --- graceful shutdown ---


def start_slow_create(s, name):
    """A create whose headers the server has parsed (it said 100 Continue) and whose
    body has only partly arrived. Returns (connection, rest of the body)."""
    body = json.dumps({"clusterName": name}).encode()
    c = s.raw()
    c.send(b"POST /v1/clusters HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
           b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (s.token.encode(), len(body)))
    expect_status(c.read_response(), 100, "interim 100 Continue")
    c.send(body[:7])
    return c, body[7:]


@timeout(60)
def test_graceful_shutdown_finishes_the_request_in_flight():
    with Server() as s:
        c, rest = start_slow_create(s, "in-flight")
        s.signal(signal.SIGTERM)
        wait_until(lambda: port_refuses(s.port), what="new connections refused after SIGTERM")
        check(s.alive(), "the server exited with a request in flight (exit %r)" % s.proc.poll())
        c.send(rest)
        r = expect_status(c.read_response(), 201, "the in-flight create")
        check(r.closes(), "an answer during shutdown must carry Connection: close")
        c.wait_closed()
        c.close()
        check(s.wait_exit() == 0, "exit code after a graceful shutdown: %r" % s.returncode)
        s.start()
        check("in-flight" in s.cluster_names(), "the create answered during shutdown was not kept")


@timeout(60)
def test_graceful_shutdown_closes_idle_connections():
    with Server(args=["--shutdown-grace", "60s"]) as s, s.raw() as c:
        c.send(build_request("GET", "/healthz"))
        expect_status(c.read_response(), 200)
        s.signal(signal.SIGTERM)
        check(c.wait_closed() == b"", "bytes on an idle connection at shutdown")
        # Well before the 60 s grace: idle connections do not hold the shutdown up.
        check(s.wait_exit(30) == 0, "exit code %r" % s.returncode)


@timeout(60)
def test_shutdown_grace_expires_for_a_stalled_request():
    with Server(args=["--shutdown-grace", "1s", "--body-timeout", "120s"]) as s:
        c, _ = start_slow_create(s, "never-finished")
        s.signal(signal.SIGTERM)
        c.wait_closed(30)
        check(s.wait_exit(30) == 0, "exit code after the grace expired: %r" % s.returncode)
        c.close()
        s.start()
        check("never-finished" not in s.cluster_names(), "a create whose body never arrived was stored")


@timeout(60)
def test_shutdown_with_half_sent_headers_exits_cleanly():
    # Regression: until 459c2dc any error answered before the headers were complete
    # (400, 408, 431) crashed the server with SIGSEGV (no route in Server::Record).
    # A client that sent half a request when SIGTERM arrives: its header timeout
    # fires during the shutdown, and the server must still exit 0.
    with Server(args=["--header-timeout", "500ms", "--shutdown-grace", "10s"]) as s, s.raw() as c:
        c.send(b"GET /v1/clusters HTTP/1.1\r\nHost: t\r\nX-Half: ")
        s.signal(signal.SIGTERM)
        c.wait_closed(30)
        rc = s.wait_exit(30)
        check(rc == 0, "exit code %r after SIGTERM with half-sent headers; log tail:\n%s" % (rc, s.logs()[-1000:]))


def test_restart_without_the_token_file_keeps_the_token_valid():
    with Server() as s:
        token = s.token
        s.stop()
        os.unlink(os.path.join(s.data_dir, "admin-token"))
        s.start()
        check(not os.path.exists(os.path.join(s.data_dir, "admin-token")), "a new token file was written")
        check(any("no longer exists" in l for l in s.stdout_lines), "no notice about the missing file: %r"
              % s.stdout_lines)
        s.token = token
        expect_status(s.request("GET", "/v1/clusters"), 200, "the first-start token after the file was removed")


@timeout(90)
def test_sigterm_right_after_the_listening_line_is_graceful():
    # Once "listening on" is printed a supervisor may send SIGTERM at any moment;
    # it must always be a graceful stop (exit 0), never death by the signal.
    d = os.path.join(scratch_dir("race"), "data")
    for i in range(20):
        s = Server(data_dir=d, ready_check=False)
        s.signal(signal.SIGTERM)
        rc = s.wait_exit()
        check(rc == 0, "start %d: SIGTERM just after the listening line ended the server with %r%s"
              % (i + 1, rc, " (killed by the signal: no handler yet)" if rc == -signal.SIGTERM else ""))
