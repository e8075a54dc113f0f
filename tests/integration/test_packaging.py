"""Running under systemd, and the Debian package.

berth's own sd_notify (src/base/notify.h) is checked against a real Unix
datagram socket standing in for systemd's: READY=1 once the server serves,
RELOADING=1 then READY=1 around a SIGHUP that takes a replaced certificate,
STOPPING=1 at SIGTERM; the agent's READY=1 only once it registered. The units
pass `systemd-analyze verify` (which needs no running systemd). The .deb is
built by packaging/deb.sh (what `make deb` runs), inspected, installed with
dpkg and removed again.
"""

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import dockerd
from harness import (BINARY, WAIT, Agent, DockerAgent, Server, check, closed_port, expect_status, scratch_dir, timeout,
                     wait_until)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LONG = 90.0  # anything Docker does on a loaded 2-core machine


class NotifySocket:
    """An AF_UNIX datagram socket like systemd's $NOTIFY_SOCKET, abstract or a
    path, that keeps every datagram as a dict of its KEY=VALUE lines."""

    def __init__(self, abstract=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = "berth-it-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.address = os.path.join(scratch_dir("notify"), "notify")
            self.sock.bind(self.address)
        self.messages = []
        self.seen = 0  # messages before this one were looked at by next()

    def receive(self, wait):
        """Waits up to `wait` seconds for one datagram; keeps and returns it (None if none)."""
        self.sock.settimeout(wait)
        try:
            text = self.sock.recv(4096).decode()
        except (socket.timeout, BlockingIOError):
            return None
        check(text.endswith("\n"), "a notify datagram ends with a newline: %r" % text)
        fields = dict(line.split("=", 1) for line in text.splitlines())
        self.messages.append(fields)
        return fields

    def _drain(self, wait):
        if self.receive(wait) is not None:
            while self.receive(0) is not None:
                pass

    def next(self, key, wait=WAIT):
        """The next message (after those already returned) holding `key`=1, or
        with `key` at all for STATUS; fails after `wait` seconds."""
        deadline = time.monotonic() + wait
        while True:
            for i in range(self.seen, len(self.messages)):
                m = self.messages[i]
                if key in m and (key == "STATUS" or m[key] == "1"):
                    self.seen = i + 1
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s within %ss; got %r" % (key, wait, self.messages))
            self._drain(min(left, 0.2))

    def nothing_with(self, key, wait):
        """No message holding `key` arrives within `wait` seconds."""
        self._drain(wait)
        got = [m for m in self.messages[self.seen:] if key in m]
        check(not got, "expected no %s yet, got %r" % (key, got))

    def close(self):
        self.sock.close()


def served_certificate(port):
    """The DER of the certificate a new TLS connection to 127.0.0.1:port is given."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        with ctx.wrap_socket(raw) as s:
            return s.getpeercert(binary_form=True)


def openssl(*args, data=None):
    r = subprocess.run(["openssl"] + list(args), input=data, capture_output=True, timeout=60)
    check(r.returncode == 0, "openssl %s: %s" % (" ".join(args), r.stderr.decode()))
    return r.stdout


def replacement_certificate(data_dir):
    """Writes, as an operator would, a new server key and certificate from the
    cluster CA (with the same names as the one served) over server.key and
    server.crt. Returns the new certificate's DER."""
    work = scratch_dir("cert")
    san = openssl("x509", "-in", os.path.join(data_dir, "server.crt"), "-noout", "-ext", "subjectAltName").decode()
    names = san.split("\n", 1)[1].strip().replace("IP Address:", "IP:")
    key = os.path.join(work, "server.key")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", key, "-out", key + ".p8")
    csr = os.path.join(work, "server.csr")
    openssl("req", "-new", "-key", key, "-subj", "/CN=replaced by the operator", "-out", csr)
    ext = os.path.join(work, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n" % names)
    crt = os.path.join(work, "server.crt")
    openssl("x509", "-req", "-in", csr, "-CA", os.path.join(data_dir, "ca.crt"), "-CAkey",
            os.path.join(data_dir, "ca.key"), "-CAcreateserial", "-days", "90", "-extfile", ext, "-out", crt)
    with open(crt) as f, open(os.path.join(data_dir, "ca.crt")) as ca:
        chain = f.read() + ca.read()
    for name, text in (("server.key", open(key + ".p8").read()), ("server.crt", chain)):
        tmp = os.path.join(data_dir, name + ".new")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(text)
        os.rename(tmp, os.path.join(data_dir, name))
    return openssl("x509", "-in", crt, "-outform", "DER")


@timeout(90)
def test_packaging_server_notifies_ready_reload_and_stopping():
    ns = NotifySocket(abstract=True)
    # READY=1 is sent once the listener is bound: a connection made the moment it
    # arrives (no retry) is taken. A watcher thread does that while the server starts.
    s = Server(start=False, ready_check=False)
    s.port = closed_port()
    seen = {}

    def watch():
        deadline = time.monotonic() + 2 * WAIT
        while time.monotonic() < deadline:
            m = ns.receive(0.5)
            if m is not None and m.get("READY") == "1":
                try:
                    socket.create_connection(("127.0.0.1", s.port), timeout=WAIT).close()
                    seen["connect"] = "taken"
                except OSError as e:
                    seen["connect"] = str(e)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    os.environ["NOTIFY_SOCKET"] = ns.address
    try:
        s.start()
    finally:
        del os.environ["NOTIFY_SOCKET"]
    watcher.join(2 * WAIT)
    check(seen.get("connect") == "taken", "a connection the moment READY=1 came: %r (%r)" % (seen, ns.messages))
    ready = ns.next("READY")
    expect_status(s.request("GET", "/healthz", token=None), 200, "healthz once READY=1 came")
    check(ready.get("MAINPID") == str(s.proc.pid), "MAINPID is the server's pid: %r" % ready)
    status = ready.get("STATUS", "")
    check("serving https://127.0.0.1:%d" % s.port in status and "leader, term " in status and "1 server" in status,
          "STATUS says where it serves and its part in the cluster: %r" % status)

    # SIGHUP: the operator's replacement certificate is served to new connections.
    before = served_certificate(s.port)
    replaced = replacement_certificate(s.data_dir)
    check(served_certificate(s.port) == before, "a replaced file is not served before the reload")
    s.proc.send_signal(signal.SIGHUP)
    reloading = ns.next("RELOADING")
    check(re.fullmatch(r"\d+", reloading.get("MONOTONIC_USEC", "")), "RELOADING=1 carries MONOTONIC_USEC: %r"
          % reloading)
    ready = ns.next("READY")
    check("serving https://" in ready.get("STATUS", ""), "READY=1 after the reload, with a status: %r" % ready)
    s.assert_serving("SIGHUP")
    check(served_certificate(s.port) == replaced, "new connections get the replaced certificate after SIGHUP")
    check(openssl("x509", "-in", os.path.join(s.data_dir, "server.crt"), "-outform", "DER") == replaced,
          "the operator's certificate is kept, not issued anew")
    wait_until(lambda: "reloaded on SIGHUP" in s.logs(), what="the reload's log line")
    line = [l for l in s.logs().splitlines() if "reloaded on SIGHUP" in l][-1]
    check('reloaded="server certificate"' in line, "the log says what was reloaded: %r" % line)
    # Still a working server over the CA clients trust.
    expect_status(s.request("GET", "/v1/clusters"), 200, "list clusters over the replaced certificate")

    s.stop()
    stopping = ns.next("STOPPING")
    check("shutting down" in stopping.get("STATUS", ""), "STOPPING=1 with a status: %r" % stopping)
    ns.close()


@timeout(60)
def test_packaging_refused_certificate_keeps_serving_the_old_one():
    ns = NotifySocket(abstract=False)  # a socket by path, this time
    os.environ["NOTIFY_SOCKET"] = ns.address
    try:
        s = Server()
    finally:
        del os.environ["NOTIFY_SOCKET"]
    ns.next("READY")
    before = served_certificate(s.port)
    # A certificate whose key is another's: refused, and the served one stays.
    replacement_certificate(s.data_dir)
    other = scratch_dir("key")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", os.path.join(other, "k"))
    shutil.copy(os.path.join(other, "k"), os.path.join(s.data_dir, "server.key"))
    s.proc.send_signal(signal.SIGHUP)
    ns.next("RELOADING")
    ns.next("READY")
    s.assert_serving("a SIGHUP with a mismatched key")
    check(served_certificate(s.port) == before, "the certificate served before is kept")
    wait_until(lambda: "reloaded on SIGHUP" in s.logs(), what="the reload's log line")
    check("is not the key of the server certificate" in s.logs(), "the log says why: %s" % s.logs()[-1500:])
    s.stop()
    ns.close()


def agent_token(s):
    r = expect_status(s.request("POST", "/v1/tokens", {"role": "agent"}), 201, "create an agent token")
    return r.json()["token"]["secret"]


@timeout(180)
def test_packaging_agent_ready_once_registered_survives_sighup():
    dockerd.ensure_docker()
    s = Server()
    token = agent_token(s)
    s.stop()  # the agent starts with its server away; the port stays the server's
    ns = NotifySocket()
    os.environ["NOTIFY_SOCKET"] = ns.address
    try:
        a = DockerAgent(s, token, args=["--docker-certs-dir", scratch_dir("certs.d")])
    finally:
        del os.environ["NOTIFY_SOCKET"]
    # Not ready while no server took its registration.
    ns.nothing_with("READY", 4)
    check(a.alive(), "the agent waits for its server: %s" % a.logs()[-1500:])
    s.start()
    ready = ns.next("READY", wait=LONG)
    node = a.node_id()
    check(ready.get("MAINPID") == str(a.proc.pid), "MAINPID is the agent's pid: %r" % ready)
    check(ready.get("STATUS", "").startswith("registered as node " + node + " with https://127.0.0.1:%d" % s.port),
          "STATUS names the node and the server: %r" % ready)

    # SIGHUP (systemctl reload, a closed terminal) is noted, never fatal.
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP" in a.logs(), what="the agent's SIGHUP log line")
    time.sleep(1)
    check(a.alive(), "the agent survives SIGHUP: %s" % a.logs()[-1500:])
    r = expect_status(s.request("GET", "/v1/nodes"), 200, "list nodes")
    check(any(n["nodeId"] == node and n["agentConnected"] for n in r.json()["containerInstances"]),
          "the node is still connected after SIGHUP: %r" % r.json())

    a.proc.send_signal(signal.SIGTERM)
    stopping = ns.next("STOPPING")
    check("containers keep running" in stopping.get("STATUS", ""), "STOPPING=1 with a status: %r" % stopping)
    code = a.kill(signal.SIGTERM)
    check(code == 0, "the agent exits 0 after SIGTERM, not %r: %s" % (code, a.logs()[-1500:]))
    s.stop()
    ns.close()


@timeout(60)
def test_packaging_simulated_agent_survives_sighup():
    with Server() as s:
        token = expect_status(s.request("POST", "/v1/tokens", {"role": "agent"}), 201).json()["token"]["secret"]
        with Agent(s, 2, token, id_prefix="hup") as a:
            wait_until(lambda: len(expect_status(s.request("GET", "/v1/nodes"), 200).json()["containerInstances"]) == 2,
                       what="the simulated nodes")
            a.proc.send_signal(signal.SIGHUP)
            time.sleep(1)
            check(a.alive(), "the simulated agent died of SIGHUP: exit %r\n%s" % (a.proc.poll(), a.logs()[-1000:]))


@timeout(60)
def test_packaging_watchdog_pings_from_the_loop():
    ns = NotifySocket()
    os.environ["NOTIFY_SOCKET"] = ns.address
    os.environ["WATCHDOG_USEC"] = "400000"  # a ping every 200 ms
    try:
        s = Server()
    finally:
        del os.environ["NOTIFY_SOCKET"]
        del os.environ["WATCHDOG_USEC"]
    ns.next("READY")
    for _ in range(3):
        ns.next("WATCHDOG", wait=5)
    # A stopped process (as a stuck loop) sends none.
    s.proc.send_signal(signal.SIGSTOP)
    try:
        ns._drain(0.5)
        ns.seen = len(ns.messages)
        ns.nothing_with("WATCHDOG", 1.5)
    finally:
        s.proc.send_signal(signal.SIGCONT)
    ns.next("WATCHDOG", wait=5)
    s.stop()
    ns.close()


def unit_copies(binary):
    """The units with ExecStart's /usr/local/bin/berth made `binary` (verify
    checks the executable exists), in a directory of their own."""
    out = scratch_dir("units")
    for unit in ("berth-server.service", "berth-agent.service"):
        with open(os.path.join(REPO, "systemd", unit)) as f:
            text = f.read()
        with open(os.path.join(out, unit), "w") as f:
            f.write(text.replace("/usr/local/bin/berth", binary))
    return out


def verify(path):
    """`systemd-analyze verify` of one unit file: (exit code, what it printed).
    It exits 0 on unknown keys and bad values and only prints them, so both count."""
    r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, SYSTEMD_LOG_COLOR="0"))
    return r.returncode, (r.stdout + r.stderr).strip()


@timeout(60)
def test_packaging_units_pass_systemd_analyze_verify():
    check(shutil.which("systemd-analyze"), "systemd-analyze is installed (Debian's systemd)")
    units = unit_copies(BINARY)
    for unit in ("berth-server.service", "berth-agent.service"):
        rc, said = verify(os.path.join(units, unit))
        check(rc == 0 and said == "", "systemd-analyze verify %s: exit %d, %r" % (unit, rc, said))
        with open(os.path.join(units, unit)) as f:
            lines = set(l.strip() for l in f)
        for want in ("Type=notify", "NotifyAccess=main", "Restart=always", "NoNewPrivileges=true",
                     "ProtectSystem=strict", "RestrictNamespaces=true", "SystemCallArchitectures=native"):
            check(want in lines, "%s has %s" % (unit, want))
    # The check can fail: a misspelt key, and an ExecStart that is not there.
    with open(os.path.join(units, "berth-agent.service")) as f:
        text = f.read()
    bad = scratch_dir("bad-units")
    with open(os.path.join(bad, "berth-agent.service"), "w") as f:
        f.write(text.replace("ProtectSystem=strict", "ProtectSytem=strict"))
    rc, said = verify(os.path.join(bad, "berth-agent.service"))
    check("Unknown key" in said and "ProtectSytem" in said, "a misspelt key is reported: %r" % said)
    with open(os.path.join(bad, "berth-agent.service"), "w") as f:
        f.write(text.replace(BINARY, BINARY + "-missing"))
    rc, said = verify(os.path.join(bad, "berth-agent.service"))
    check(rc != 0 and "not executable" in said, "a missing binary fails: %d %r" % (rc, said))


def dpkg(*args, ok=True):
    """dpkg ARGS, waiting out another dpkg's lock (apt on a shared machine)."""
    deadline = time.monotonic() + 120
    while True:
        r = subprocess.run(["dpkg"] + list(args), capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if r.returncode != 0 and "lock" in r.stderr and time.monotonic() < deadline:
            time.sleep(2)
            continue
        if ok:
            check(r.returncode == 0, "dpkg %s: %s%s" % (" ".join(args), r.stdout, r.stderr))
        return r


@timeout(240)
def test_packaging_deb_built_inspected_installed_and_purged():
    out = scratch_dir("deb")
    r = subprocess.run([os.path.join(REPO, "packaging", "deb.sh"), BINARY, out], capture_output=True, text=True,
                       timeout=180)
    check(r.returncode == 0, "deb.sh: %s" % r.stderr)
    version = json.loads(subprocess.run([BINARY, "version", "--json"], capture_output=True, text=True,
                                        timeout=30).stdout)["version"]
    deb = r.stdout.strip()
    check(deb == os.path.join(out, "berth_%s_amd64.deb" % version), "the package's name: %r" % deb)

    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, timeout=60).stdout
    entries = {}
    for line in listing.splitlines():
        parts = line.split()
        entries[parts[-1]] = (parts[0], parts[1])
    for path, mode in (("./usr/bin/berth", "-rwxr-xr-x"),
                       ("./lib/systemd/system/berth-server.service", "-rw-r--r--"),
                       ("./lib/systemd/system/berth-agent.service", "-rw-r--r--"),
                       ("./usr/share/doc/berth/README.md", "-rw-r--r--"),
                       ("./usr/share/doc/berth/copyright", "-rw-r--r--")):
        check(path in entries, "the package holds %s: %s" % (path, listing))
        check(entries[path] == (mode, "root/root"), "%s is %s root/root: %r" % (path, mode, entries[path]))
    files = [p for p, (m, _) in entries.items() if not m.startswith("d")]
    check(len(files) == 5, "nothing else in the package: %s" % listing)

    info = subprocess.run(["dpkg-deb", "-I", deb], capture_output=True, text=True, timeout=60).stdout
    fields = dict(re.findall(r"^ ([A-Z][\w-]*): (.*)$", info, re.M))
    for k, v in (("Package", "berth"), ("Version", version), ("Architecture", "amd64"), ("Recommends", "docker.io")):
        check(fields.get(k) == v, "control %s: %r in %s" % (k, fields.get(k), info))
    check("Depends" not in fields and fields.get("Maintainer") and fields.get("Description"),
          "no Depends (static), a maintainer and a description: %s" % info)
    for script in ("postinst", "prerm", "postrm"):
        check(re.search(r"\b%s\b.*\bsh\b" % script, info), "a %s script: %s" % (script, info))
    unit = subprocess.run("dpkg-deb --fsys-tarfile %s | tar -xO ./lib/systemd/system/berth-agent.service" % deb,
                          shell=True, capture_output=True, text=True, timeout=60).stdout
    check("ExecStart=/usr/bin/berth agent" in unit and "/usr/local/bin/berth" not in unit,
          "the packaged units run /usr/bin/berth: %s" % unit)

    # Installed on this machine: root only, and never over a berth that is not this test's.
    if os.geteuid() != 0:
        print("SKIP dpkg -i: not root")
        return
    with open("/tmp/berth-it-dpkg.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        theirs = [p for p in ("/etc/berth", "/var/lib/berth", "/var/lib/berth-agent", "/usr/bin/berth")
                  if os.path.exists(p)]
        if theirs or dpkg("-s", "berth", ok=False).returncode == 0:
            print("SKIP dpkg -i: berth is already on this machine (%s)" % ", ".join(theirs))
            return
        try:
            r = dpkg("-i", deb)
            check("systemctl enable --now berth-server" in r.stdout, "postinst says how to start: %r" % r.stdout)
            got = subprocess.run(["/usr/bin/berth", "version"], capture_output=True, text=True, timeout=30)
            check(got.returncode == 0 and got.stdout.startswith("berth %s " % version),
                  "berth version from the package: %r" % got.stdout)
            for d in ("/etc/berth", "/var/lib/berth", "/var/lib/berth-agent"):
                st = os.stat(d)
                check(oct(st.st_mode & 0o7777) == "0o700" and st.st_uid == 0, "%s is root's, 0700" % d)
            for u in ("berth-server", "berth-agent"):
                check(os.path.exists("/lib/systemd/system/%s.service" % u), "the %s unit is installed" % u)
            with open("/etc/berth/agent.env", "w") as f:
                f.write("BERTH_SERVER=https://127.0.0.1:7070\n")  # an operator's configuration
            dpkg("-r", "berth")
            for p in ("/usr/bin/berth", "/lib/systemd/system/berth-server.service",
                      "/lib/systemd/system/berth-agent.service", "/usr/share/doc/berth/README.md"):
                check(not os.path.exists(p), "%s is gone after dpkg -r" % p)
            check(os.path.exists("/etc/berth/agent.env"), "dpkg -r keeps the configuration")
            dpkg("--purge", "berth")
            for p in ("/etc/berth", "/var/lib/berth", "/var/lib/berth-agent"):
                check(not os.path.exists(p), "%s is gone after dpkg --purge" % p)
            check(dpkg("-s", "berth", ok=False).returncode != 0, "berth is no longer known to dpkg")
        finally:
            if dpkg("-s", "berth", ok=False).returncode == 0:
                dpkg("--purge", "berth", ok=False)
