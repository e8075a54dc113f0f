"""Test harness for the integration suite: real `berth` processes, real sockets.

A test starts servers with `Server(...)` (best as a context manager), talks to
them with `Server.request` (http.client) or `Server.raw()` (a plain socket, for
pipelining, slow or partial sends and chunked bodies), and runs the CLI with
`cli()`. Every server is stopped with SIGTERM and must exit 0; anything still
running when a test ends is killed by `cleanup()`, which the runner calls.

The runner runs each test in its own process with BERTH_BINARY and
BERTH_IT_SCRATCH (a directory removed after the test) in the environment.

No assertion here or in the tests is about speed: waits are generous upper
bounds on the machine being slow, never claims that something was fast.
"""

import http.client
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

BINARY = os.path.abspath(os.environ.get("BERTH_BINARY", "build/berth"))

# How long to wait for anything that should happen "soon": a server to start or
# stop, an answer to arrive, a timeout to fire. Only reached when something is
# broken, so it can be generous.
WAIT = 15.0

_servers = []
_agents = []  # Agent processes (simulators) still to be reaped
_scratch = None
_own_scratch = False  # made here (no BERTH_IT_SCRATCH), so removed by cleanup()
_log_count = [0]


class TestFailure(AssertionError):
    pass


def check(cond, message):
    """Fails the test with `message` unless `cond` holds."""
    if not cond:
        raise TestFailure(message)


def describe_exit(rc):
    """'exit 1', 'SIGSEGV', ... for a process's return code."""
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            return "signal %d" % -rc
    return "exit %d" % rc


def timeout(seconds):
    """Decorator: the runner kills the test after `seconds` (default 30)."""

    def mark(fn):
        fn.timeout = seconds
        return fn

    return mark


def scratch_dir(prefix="t"):
    """A fresh directory under this test's scratch area (removed afterwards)."""
    global _scratch, _own_scratch
    if _scratch is None:
        base = os.environ.get("BERTH_IT_SCRATCH")
        if base:
            os.makedirs(base, exist_ok=True)
            _scratch = base
        else:
            _scratch = tempfile.mkdtemp(prefix="berth-it-")
            _own_scratch = True
    return tempfile.mkdtemp(prefix=prefix + "-", dir=_scratch)


def cleanup():
    """Kills every server this process started that is still running, and removes
    the scratch directory if this process made it."""
    global _scratch, _own_scratch
    for a in list(_agents):
        a.kill()
    _agents.clear()
    for s in list(_servers):
        s.kill()
    _servers.clear()
    if _own_scratch and _scratch:
        shutil.rmtree(_scratch, ignore_errors=True)
        _scratch, _own_scratch = None, False


# --- HTTP answers ---


class Response:
    def __init__(self, status, reason, headers, body, version="HTTP/1.1"):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value), names as sent
        self.body = body  # bytes
        self.version = version

    def header(self, name, default=None):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise TestFailure("answer %d is not JSON (%s): %r" % (self.status, e, self.body[:300]))

    def closes(self):
        return (self.header("Connection") or "").lower() == "close"

    def __repr__(self):
        return "<%d %s %r>" % (self.status, self.reason, self.body[:300])


def expect_status(resp, status, what=""):
    check(resp.status == status, "%sexpected HTTP %d, got %r" % (what + ": " if what else "", status, resp))
    return resp


def expect_error(resp, status, code, what=""):
    """Checks an error answer `{"error":{"code","message"}}`; returns the message."""
    expect_status(resp, status, what)
    doc = resp.json()
    check(isinstance(doc, dict) and isinstance(doc.get("error"), dict),
          "error body is not {\"error\":{...}}: %r" % resp.body[:300])
    err = doc["error"]
    check(err.get("code") == code, "expected error code %s, got %r" % (code, err))
    check(isinstance(err.get("message"), str) and err["message"], "error without a message: %r" % err)
    check(resp.header("Content-Type", "").startswith("application/json"),
          "error Content-Type is %r" % resp.header("Content-Type"))
    return err["message"]


def build_request(method, path, body=None, headers=None, token=None, version="HTTP/1.1",
                  content_length=True, host="test"):
    """The bytes of one request. `token` adds a Bearer Authorization header."""
    if isinstance(body, str):
        body = body.encode()
    lines = ["%s %s %s" % (method, path, version), "Host: " + host]
    if token is not None:
        lines.append("Authorization: Bearer " + token)
    for k, v in (headers or {}).items():
        lines.append("%s: %s" % (k, v))
    if body is not None and content_length:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def chunked(data, sizes=None):
    """Encodes `data` as a chunked body; `sizes` cycles through chunk sizes."""
    if isinstance(data, str):
        data = data.encode()
    sizes = sizes or [len(data) or 1]
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        k += 1
        piece = data[i:i + n]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        i += n
    out.append(b"0\r\n\r\n")
    return b"".join(out)


class Closed(Exception):
    """The peer closed (or reset) the connection."""


class RawConn:
    """One client connection on a plain socket, with a read buffer."""

    def __init__(self, sock, server=None):
        self.sock = sock
        self.buf = b""
        self.eof = False
        self.server = server

    def _why(self):
        """Text to add to a failure: whether the server behind this socket died."""
        if self.server is None or self.server.proc is None:
            return ""
        try:
            rc = self.server.proc.wait(1.0)
        except subprocess.TimeoutExpired:
            return ""
        return "; the server is gone (%s)" % describe_exit(rc)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def send_slowly(self, data, step=1, delay=0.05, stop_when_readable=True):
        """Sends `data` `step` bytes at a time. Stops early (returning the count
        sent) once the server answers or closes, if `stop_when_readable`."""
        if isinstance(data, str):
            data = data.encode()
        sent = 0
        while sent < len(data):
            if stop_when_readable and self.readable(0):
                return sent
            try:
                self.sock.sendall(data[sent:sent + step])
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                return sent
            sent += step
            time.sleep(delay)
        return sent

    def readable(self, wait):
        if self.buf or self.eof:
            return True
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        r, _, _ = select.select([self.sock], [], [], wait)
        return bool(r)

    def _fill(self, deadline):
        """Reads more bytes into the buffer; raises Closed at EOF/reset, TestFailure at the deadline."""
        if self.eof:
            raise Closed()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TestFailure("no data from the server within the wait (buffered: %r)%s"
                              % (self.buf[:200], self._why()))
        tls_pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        r, _, _ = select.select([self.sock], [], [], 0 if tls_pending else left)
        if not r and not tls_pending:
            raise TestFailure("no data from the server within the wait (buffered: %r)%s"
                              % (self.buf[:200], self._why()))
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            data = b""
        if not data:
            self.eof = True
            raise Closed()
        self.buf += data

    def read_response(self, wait=WAIT, head=False):
        """Reads one answer. `head`: the request was HEAD (no body follows)."""
        deadline = time.monotonic() + wait
        try:
            while b"\r\n\r\n" not in self.buf:
                self._fill(deadline)
        except Closed:
            raise TestFailure("connection closed before a full answer (got %r)%s" % (self.buf[:300], self._why()))
        head_bytes, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head_bytes.decode("latin-1").split("\r\n")
        m = re.match(r"(HTTP/1\.[01]) (\d{3}) ?(.*)$", lines[0])
        check(m, "bad status line %r" % lines[0])
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        resp = Response(int(m.group(2)), m.group(3), headers, b"", m.group(1))
        if head or resp.status in (204, 304) or 100 <= resp.status < 200:
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        cl = resp.header("Content-Length")
        try:
            if "chunked" in te:
                body = b""
                while True:
                    while b"\r\n" not in self.buf:
                        self._fill(deadline)
                    size_line, self.buf = self.buf.split(b"\r\n", 1)
                    size = int(size_line.split(b";")[0], 16)
                    while len(self.buf) < size + 2:
                        self._fill(deadline)
                    body += self.buf[:size]
                    self.buf = self.buf[size + 2:]
                    if size == 0:
                        break
                resp.body = body
            elif cl is not None:
                n = int(cl)
                while len(self.buf) < n:
                    self._fill(deadline)
                resp.body, self.buf = self.buf[:n], self.buf[n:]
            else:
                while True:
                    self._fill(deadline)
        except Closed:
            if cl is not None or "chunked" in te:
                raise TestFailure("connection closed in the middle of a body (%r)%s" % (resp, self._why()))
            resp.body, self.buf = self.buf, b""
        return resp

    def wait_closed(self, wait=WAIT):
        """Waits for EOF or reset; returns any bytes that arrived before it."""
        deadline = time.monotonic() + wait
        try:
            while True:
                self._fill(deadline)
        except Closed:
            data, self.buf = self.buf, b""
            return data

    def is_open_after(self, seconds):
        """True if nothing (no data, no EOF) arrives for `seconds`."""
        return not self.readable(seconds)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def connect_tcp(port, host="127.0.0.1", wait=WAIT, server=None, tls=None):
    """A raw connection; `tls` (an ssl.SSLContext) makes it a TLS session first."""
    s = socket.create_connection((host, port), timeout=wait)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(wait)
    if tls is not None:
        s = tls.wrap_socket(s, server_hostname=host)
    return RawConn(s, server)


def connect_unix(path, wait=WAIT, server=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(wait)
    s.connect(path)
    return RawConn(s, server)


# --- servers ---


def _allow_core_dumps():
    """In the child before exec: a crash leaves a core (where kernel.core_pattern
    says) to read with the unstripped build/release/src/berth of the same build."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass


class Server:
    """One `berth server` process on 127.0.0.1:0 with its own data directory, over
    TLS (trusting the server's own CA, DATA/ca.crt) unless `tls` is False."""

    def __init__(self, data_dir=None, args=(), start=True, ready_check=True, local_agent=False, tls=True,
                 host="127.0.0.1", wrapper=()):
        """`host`: the address to listen on and talk to; `wrapper`: a command the
        server runs under (e.g. ["ip", "netns", "exec", NS] for another host)."""
        self.data_dir = data_dir or os.path.join(scratch_dir("srv"), "data")
        self.host = host
        self.wrapper = list(wrapper)
        self.tls = tls
        self.scheme = "https" if tls else "http"
        if not tls:
            args = list(args) + ["--no-tls"]
        # The local agent (all-in-one) only where a test asks for it: it would run
        # this host's Docker engine as a node of every server.
        self.args = list(args) + ([] if local_agent else ["--no-agent"])
        # After the "listening on" line, wait for a /healthz answer too: the loop is
        # then running with its signal handlers installed. Off only for tests of
        # what happens right at the listening line.
        self.ready_check = ready_check
        self.proc = None
        self.port = None
        self.token = None
        self.stdout_lines = []
        self.returncode = None
        self.exit_expected = False  # the test stopped, killed or signalled it
        if start:
            self.start()

    def start(self):
        """Starts the process and waits for its 'listening on' line."""
        check(self.proc is None or self.proc.poll() is not None, "server already running")
        self.stdout_lines = []
        self.returncode = None
        self.exit_expected = False
        _log_count[0] += 1
        self.log_path = os.path.join(os.path.dirname(self.data_dir.rstrip("/")),
                                     "server-%d.log" % _log_count[0])
        self._log = open(self.log_path, "ab")
        # A restart keeps the port, as a real server's address stays put (agents
        # find it again there).
        listen = "%s:%d" % (self.host, self.port or 0)
        cmd = self.wrapper + [BINARY, "server", "--data", self.data_dir, "--listen", listen] + self.args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
                                     preexec_fn=_allow_core_dumps)
        if self not in _servers:
            _servers.append(self)
        got_line = threading.Event()

        def pump():
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.stdout_lines.append(line)
                if "listening on" in line:
                    got_line.set()
            got_line.set()

        threading.Thread(target=pump, daemon=True).start()
        got_line.wait(WAIT)
        listening = [l for l in self.stdout_lines if "listening on" in l]
        if not listening:
            rc = self.proc.poll()
            self.kill()
            raise TestFailure("server did not start (%s); stdout %r; log:\n%s"
                              % (describe_exit(rc), self.stdout_lines, self.logs()[-2000:]))
        m = re.search(r"bound to [^\s)]*:(\d+)\)", listening[0])
        check(m, "cannot find the port in %r" % listening[0])
        self.port = int(m.group(1))
        check(listening[0].startswith("berth: listening on %s://" % self.scheme),
              "expected %s in %r" % (self.scheme, listening[0]))
        try:
            with open(os.path.join(self.data_dir, "admin-token")) as f:
                self.token = f.read().strip()
        except FileNotFoundError:
            self.token = None  # removed after the first start; the test knows the token
        if self.ready_check:
            r = self.request("GET", "/healthz", token=None)
            check(r.status == 200, "healthz right after start: %r" % r)
        return self

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, AttributeError):
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.exit_expected = True
        if self.alive():
            self.proc.send_signal(sig)

    def wait_exit(self, wait=WAIT):
        """Waits for the process to exit; returns its exit code."""
        try:
            self.returncode = self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            raise TestFailure("server pid %d did not exit within %ss" % (self.proc.pid, wait))
        self._log.close()
        if self in _servers:
            _servers.remove(self)
        return self.returncode

    def stop(self, wait=WAIT):
        """SIGTERM; the server must exit with code 0."""
        self.exit_expected = True
        check(self.alive(), "server exited early (%s); log:\n%s"
              % (describe_exit(self.proc.poll()), self.logs()[-2000:]))
        self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(wait)
        check(rc == 0, "server ended with %s after SIGTERM; log:\n%s" % (describe_exit(rc), self.logs()[-2000:]))

    def kill(self):
        """SIGKILL (a crash) and reap."""
        self.exit_expected = True
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            pass
        self.returncode = self.proc.returncode
        if not self._log.closed:
            self._log.close()
        if self in _servers:
            _servers.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and not self.exit_expected:
            self.stop()  # fails the test if the server died on its own
        else:
            self.kill()

    # --- clients ---

    @property
    def url(self):
        return "%s://%s:%d" % (self.scheme, self.host, self.port)

    @property
    def ca_file(self):
        return os.path.join(self.data_dir, "ca.crt")

    def ssl_context(self):
        """A client context trusting this server's CA (None without TLS)."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.ca_file)

    def http_connection(self, wait=WAIT):
        """An http.client connection to this server (HTTPS over its CA with TLS)."""
        if self.tls:
            return http.client.HTTPSConnection(self.host, self.port, timeout=wait, context=self.ssl_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=wait)

    def request(self, method, path, body=None, headers=None, token="admin", wait=WAIT):
        """One request on a fresh http.client connection. `token`: "admin" for the
        admin token, None for no Authorization header, or a token string."""
        if token == "admin":
            token = self.token
        hdrs = dict(headers or {})
        if token is not None:
            hdrs.setdefault("Authorization", "Bearer " + token)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        conn = self.http_connection(wait)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, r.reason, r.getheaders(), r.read())
        finally:
            conn.close()

    def assert_serving(self, after="the error"):
        """The server is still running and answers /healthz on a new connection."""
        check(self.alive(), "the server died after %s (%s); log tail:\n%s"
              % (after, describe_exit(self.proc.poll()), self.logs()[-1500:]))
        expect_status(self.request("GET", "/healthz", token=None), 200, "healthz after " + after)

    def raw(self):
        """A raw connection to this server, a TLS session when the server speaks TLS
        (failures on it say if the server died)."""
        return connect_tcp(self.port, host=self.host, server=self, tls=self.ssl_context())

    def create_cluster(self, name):
        return self.request("POST", "/v1/clusters", {"clusterName": name})

    def cluster_names(self):
        r = expect_status(self.request("GET", "/v1/clusters"), 200, "list clusters")
        return [c["clusterName"] for c in r.json()["clusters"]]

    def metric(self, name):
        """The value of one unlabelled metric line (or a full `name{labels}`), or None."""
        text = expect_status(self.request("GET", "/metrics"), 200, "metrics").body.decode()
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return None


class Agent:
    """One `berth agent --simulate N` process against `server` (a Server), with its
    own log file. Killed by `cleanup()` if the test does not stop it."""

    def __init__(self, server, nodes, token, id_prefix="sim", args=()):
        _log_count[0] += 1
        self.log_path = os.path.join(scratch_dir("agent"), "agent-%d.log" % _log_count[0])
        self._log = open(self.log_path, "ab")
        cmd = [BINARY, "agent", "--simulate", str(nodes), "--server", server.url,
               "--token", token, "--id-prefix", id_prefix] + list(args)
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _agents.append(self)

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        """Ends the process with `sig` (SIGKILL: the nodes vanish without a word) and reaps it."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(WAIT)
        if not self._log.closed:
            self._log.close()
        if self in _agents:
            _agents.remove(self)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


class DockerAgent(Agent):
    """One `berth agent` process for this host's real Docker engine, with its own
    state directory (so its node id survives a restart) and log file."""

    def __init__(self, server, token, state_dir=None, attrs=(), args=()):
        self.server, self.token = server, token
        self.state_dir = state_dir or scratch_dir("agent-state")
        self.attrs, self.args = list(attrs), list(args)
        self._start()

    def _start(self):
        _log_count[0] += 1
        self.log_path = os.path.join(scratch_dir("agent"), "agent-%d.log" % _log_count[0])
        self._log = open(self.log_path, "ab")
        cmd = [BINARY, "agent", "--server", self.server.url, "--token", self.token,
               "--state-dir", self.state_dir]
        for a in self.attrs:
            cmd += ["--attr", a]
        self.proc = subprocess.Popen(cmd + self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        _agents.append(self)

    def node_id(self, wait=WAIT):
        path = os.path.join(self.state_dir, "node-id")
        wait_until(lambda: os.path.exists(path), wait=wait, what="the agent's node id in " + path)
        with open(path) as f:
            return f.read().strip()

    def restart(self, sig=signal.SIGTERM):
        self.kill(sig)
        self._start()


def run_server_once(args, wait=WAIT):
    """Runs `berth server ARGS` expecting it to exit by itself; returns CompletedProcess."""
    try:
        return subprocess.run([BINARY, "server"] + list(args), capture_output=True, text=True,
                              timeout=wait, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise TestFailure("berth server %s did not exit within %ss" % (" ".join(args), wait))


def wait_until(cond, wait=WAIT, step=0.05, what="condition"):
    deadline = time.monotonic() + wait
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure("%s did not hold within %ss" % (what, wait))
        time.sleep(step)


def port_refuses(port):
    """True if a TCP connect to 127.0.0.1:port is refused."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


def closed_port():
    """A TCP port on 127.0.0.1 that nothing listens on (bound then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- CLI ---


def cli(args, home=None, env=None, wait=WAIT, input=None):
    """Runs `berth ARGS` with a clean environment: HOME=`home` (a fresh scratch
    directory if None), no XDG_CONFIG_HOME/BERTH_* unless given in `env`;
    `input` (text) on stdin, else nothing."""
    e = {k: v for k, v in os.environ.items()
         if k not in ("XDG_CONFIG_HOME", "BERTH_SERVER", "BERTH_TOKEN")}
    e["HOME"] = home or scratch_dir("home")
    e.update(env or {})
    try:
        stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        return subprocess.run([BINARY] + list(args), capture_output=True, text=True, env=e,
                              timeout=wait, **stdin)
    except subprocess.TimeoutExpired:
        raise TestFailure("berth %s did not exit within %ss" % (" ".join(args), wait))


def expect_exit(proc, code, what):
    check(proc.returncode == code, "%s: expected exit %d, got %d\nstdout: %s\nstderr: %s"
          % (what, code, proc.returncode, proc.stdout[-1000:], proc.stderr[-1000:]))
    return proc
