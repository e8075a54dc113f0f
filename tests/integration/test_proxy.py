"""`berth proxy`: the load-balancing data plane run alone from a configuration
file, driven by real curl and raw sockets against backends the test starts on
loopback (python http.server threads and small socket servers)."""

import hashlib
import http.server
import json
import os
import signal
import socket
import socketserver
import subprocess
import threading
import time

from harness import (BINARY, WAIT, TestFailure, check, closed_port, port_refuses, scratch_dir, timeout,
                     wait_until)


# --- backends ---


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return data, True
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n), False

    def _answer(self, body, extra=None):
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.server.name)
        self.send_header("X-Seen-Forwarded-For", self.headers.get("X-Forwarded-For", ""))
        self.send_header("X-Seen-Forwarded-Port", self.headers.get("X-Forwarded-Port", ""))
        self.send_header("X-Seen-Connection", self.headers.get("Connection", ""))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.server.hits += 1
        if self.server.name.startswith("broken"):
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/big/"):
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = bytes(range(256)) * 256
            sent = 0
            while sent < n:
                part = block[:min(len(block), n - sent)]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                sent += len(part)
            self.wfile.write(b"0\r\n\r\n")
            return
        self._answer(("%s %s\n" % (self.server.name, self.path)).encode())

    def do_POST(self):
        self.server.hits += 1
        data, was_chunked = self._body()
        self._answer(("%s %d %s\n" % (self.server.name, len(data), hashlib.sha256(data).hexdigest())).encode(),
                     {"X-Was-Chunked": str(was_chunked)})


class Backend:
    """An HTTP server on 127.0.0.1 answering '<name> <path>' (GET), '<name> <length> <sha256>'
    (POST), and /big/N: N bytes, chunked."""

    def __init__(self, name):
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.name = name
        self.httpd.hits = 0
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def hits(self):
        return self.httpd.hits


class _Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


def echo_server():
    """A TCP echo server on 127.0.0.1; returns its port."""
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def head_server(answer):
    """A server on 127.0.0.1 that reads each connection's request head, then
    calls answer(conn, head) and closes the connection. Returns its port."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)

    def serve():
        while True:
            c, _ = lsock.accept()
            head = b""
            while b"\r\n\r\n" not in head:
                data = c.recv(4096)
                if not data:
                    break
                head += data
            answer(c, head)
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    return lsock.getsockname()[1]


def upgrade_server():
    """Answers one HTTP request with 101 Switching Protocols, then echoes bytes
    upper-cased: a stand-in for a websocket server. Returns its port."""
    def answer(c, head):
        ok = b"upgrade: berth-echo" in head.lower()
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: berth-echo\r\nConnection: Upgrade\r\n\r\n"
                  if ok else b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        while ok:
            data = c.recv(4096)
            if not data:
                break
            c.sendall(data.upper())
    return head_server(answer)


# --- the proxy ---


def target(tid, port, state="healthy"):
    return {"id": tid, "address": "127.0.0.1", "port": port, "state": state}


def http_config(port, groups, rules=None, version=1, default="web", extra_listeners=None):
    """A document with one HTTP listener on `port`; groups: {name: [targets]}."""
    listeners = [{"port": port, "protocol": "HTTP", "address": "127.0.0.1", "defaultTargetGroup": default,
                  "rules": rules or []}] + (extra_listeners or [])
    tgs = [{"name": n, "protocol": "TCP" if n.startswith("tcp") else "HTTP", "targets": t} for n, t in groups.items()]
    return {"version": version, "listeners": listeners, "targetGroups": tgs}


class Proxy:
    """`berth proxy --config FILE` on a fresh file; stopped with SIGTERM (must exit 0)."""

    def __init__(self, config, args=()):
        self.dir = scratch_dir("proxy")
        self.path = os.path.join(self.dir, "proxy.json")
        self.write(config)
        self.log_path = os.path.join(self.dir, "proxy.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([BINARY, "proxy", "--config", self.path] + list(args),
                                     stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.port = config["listeners"][0]["port"]
        wait_until(self._listening, what="the proxy listening on %d" % self.port)

    def _listening(self):
        if self.proc.poll() is not None:
            raise TestFailure("berth proxy exited %s: %s" % (self.proc.returncode, self.logs()))
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def write(self, config):
        text = config if isinstance(config, str) else json.dumps(config)
        with open(self.path + ".new", "w") as f:
            f.write(text)
        os.rename(self.path + ".new", self.path)

    def logs(self):
        with open(self.log_path) as f:
            return f.read()

    def reload(self, config, expect):
        """Writes `config`, sends SIGHUP, waits for a log line containing `expect`."""
        before = self.logs().count(expect)
        self.write(config)
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.logs().count(expect) > before, what="'%s' in the proxy's log" % expect)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise TestFailure("berth proxy did not stop on SIGTERM")
        self.log.close()
        if exc[0] is None:
            check(self.proc.returncode == 0, "berth proxy exited %s: %s" % (self.proc.returncode, self.logs()[-2000:]))


def curl(port, path="/", host=None, extra=()):
    """Runs curl against the proxy; returns (status, body, headers as a lower-cased dict)."""
    args = ["curl", "-sS", "-D", "-", "--max-time", "20", "http://127.0.0.1:%d%s" % (port, path)]
    if host:
        args += ["-H", "Host: " + host]
    p = subprocess.run(args + list(extra), capture_output=True, timeout=WAIT + 10)
    check(p.returncode == 0, "curl failed (%d): %s" % (p.returncode, p.stderr.decode(errors="replace")))
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, body, headers


# --- tests ---


def test_proxy_routes_by_host_and_path():
    web, api = Backend("web"), Backend("api")
    port = closed_port()
    rules = [{"priority": 10, "hosts": ["api.example.com"], "paths": ["/v1/*"], "targetGroup": "api"}]
    with Proxy(http_config(port, {"web": [target("w", web.port)], "api": [target("a", api.port)]}, rules)):
        status, body, h = curl(port, "/v1/users", host="API.example.com:8080")
        check(status == 200 and body == b"api /v1/users\n", "Host and path rule: %d %r" % (status, body))
        check(h.get("x-seen-forwarded-for") == "127.0.0.1", "X-Forwarded-For at the target: %r" % h)
        check(h.get("x-seen-forwarded-port") == str(port), "X-Forwarded-Port at the target: %r" % h)
        check(h.get("x-seen-connection") == "", "hop-by-hop Connection reached the target: %r" % h)
        status, body, _ = curl(port, "/v2/users", host="api.example.com")
        check(body == b"web /v2/users\n", "path not matching: default group expected, got %r" % body)
        status, body, _ = curl(port, "/v1/users", host="www.example.com")
        check(body == b"web /v1/users\n", "host not matching: default group expected, got %r" % body)


def test_proxy_answers_503_without_a_healthy_target():
    web = Backend("web")
    port = closed_port()
    cfg = http_config(port, {"web": [target("w", web.port, "draining"), target("x", web.port + 0, "unhealthy")]})
    cfg["targetGroups"][0]["targets"][1]["id"] = "x"
    with Proxy(cfg):
        status, body, _ = curl(port, "/")
        check(status == 503, "expected 503, got %d" % status)
        check(b"no healthy target" in body, "503 body should say why: %r" % body)
        check(web.hits == 0, "a draining or unhealthy target got a request")


def test_proxy_retries_a_refused_connect_on_another_target():
    web = Backend("web")
    dead = closed_port()
    port = closed_port()
    cfg = http_config(port, {"web": [target("dead", dead), target("live", web.port)]})
    cfg["targetGroups"][0]["algorithm"] = "round_robin"  # the dead target is tried first, every other time
    with Proxy(cfg):
        for i in range(30):
            # A new connection each time, so no kept-alive target connection hides the refusal.
            status, body, _ = curl(port, "/r%d" % i)
            check(status == 200, "request %d failed with %d: %r" % (i, status, body))
        check(web.hits == 30, "the live target answered %d of 30" % web.hits)


def test_proxy_ejects_a_target_that_answers_5xx():
    good, broken = Backend("good"), Backend("broken")
    port = closed_port()
    # Round robin would send the broken target every other request for ever;
    # ejection takes it out after three 500s in a row, for a span that grows.
    cfg = http_config(port, {"web": [target("good", good.port), target("broken", broken.port)]})
    cfg["targetGroups"][0]["algorithm"] = "round_robin"
    with Proxy(cfg) as p:
        codes = [curl(port, "/e%d" % i)[0] for i in range(60)]
        check(set(codes) <= {200, 500}, "answers %r" % codes)
        failed = codes.count(500)
        check(failed >= 3, "the broken target's 500s pass through until it is ejected: %r" % codes)
        # Three 500s eject it; each ejection that follows lasts twice as long,
        # so however slowly the 60 requests go, far fewer than half fail.
        check(failed <= 15, "%d of 60 requests went to the broken target: %r" % (failed, codes))
        check("target ejected" in p.logs(), "no ejection logged: %s" % p.logs()[-1000:])


def test_proxy_sends_nothing_new_to_a_draining_target():
    a, b = Backend("a"), Backend("b")
    port = closed_port()
    with Proxy(http_config(port, {"web": [target("a", a.port), target("b", b.port)]})) as p:
        for i in range(10):
            curl(port, "/")
        check(a.hits > 0 and b.hits > 0, "both healthy targets should take requests: %d/%d" % (a.hits, b.hits))
        before = b.hits
        p.reload(http_config(port, {"web": [target("a", a.port), target("b", b.port, "draining")]}, version=2),
                 "reloaded")
        for i in range(20):
            status, body, _ = curl(port, "/")
            check(body.startswith(b"a "), "request %d went to %r" % (i, body))
        check(b.hits == before, "the draining target took %d new requests" % (b.hits - before))


@timeout(60)
def test_proxy_streams_a_chunked_upload_and_a_large_download():
    web = Backend("web")
    port = closed_port()
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = os.path.join(scratch_dir("up"), "upload.bin")
    with open(src, "wb") as f:
        f.write(data)
    with Proxy(http_config(port, {"web": [target("w", web.port)]})):
        # `-T -` from a pipe: curl sends it chunked, with no length.
        p = subprocess.run(["curl", "-sS", "-T", "-", "-X", "POST", "-H", "Expect:", "-D", "-",
                            "http://127.0.0.1:%d/up" % port], stdin=open(src, "rb"), capture_output=True,
                           timeout=WAIT * 2)
        check(p.returncode == 0, "upload failed: %s" % p.stderr)
        want = "web %d %s" % (len(data), hashlib.sha256(data).hexdigest())
        check(want.encode() in p.stdout, "the target got another body: %r" % p.stdout[-300:])
        check(b"X-Was-Chunked: True" in p.stdout, "the upload did not arrive chunked: %r" % p.stdout[:400])
        n = 64 * 1024 * 1024 + 3
        p = subprocess.run(["curl", "-sS", "--max-time", "60", "http://127.0.0.1:%d/big/%d" % (port, n)],
                           capture_output=True, timeout=90)
        check(p.returncode == 0, "download failed: %s" % p.stderr)
        check(len(p.stdout) == n, "downloaded %d bytes of %d" % (len(p.stdout), n))
        block = bytes(range(256)) * 256
        check(p.stdout[:len(block)] == block and p.stdout[-3:] == block[:3], "the download's bytes differ")


def test_proxy_passes_an_upgrade_through():
    port = closed_port()
    up = upgrade_server()
    with Proxy(http_config(port, {"web": [target("u", up)]})):
        c = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        c.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: berth-echo\r\nConnection: Upgrade\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = c.recv(4096)
            check(chunk, "connection closed before the 101: %r" % head)
            head += chunk
        check(head.startswith(b"HTTP/1.1 101"), "expected 101, got %r" % head)
        rest = head.partition(b"\r\n\r\n")[2]
        for word in (b"hello", b"websocket", b"x" * 100000):
            c.sendall(word)
            got = rest
            rest = b""
            while len(got) < len(word):
                chunk = c.recv(65536)
                check(chunk, "the tunnel closed after %d bytes" % len(got))
                got += chunk
            check(got == word.upper(), "the tunnel carried %r for %r" % (got[:40], word[:40]))
        c.close()


def test_proxy_tcp_listener_splices_and_retries():
    echo = echo_server()
    dead = closed_port()
    http_port, tcp_port = closed_port(), closed_port()
    tcp_listener = [{"port": tcp_port, "protocol": "TCP", "address": "127.0.0.1", "defaultTargetGroup": "tcp"}]
    cfg = http_config(http_port, {"web": [], "tcp": [target("dead", dead), target("echo", echo)]},
                      extra_listeners=tcp_listener)
    with Proxy(cfg):
        for i in range(10):
            c = socket.create_connection(("127.0.0.1", tcp_port), timeout=WAIT)
            msg = (b"line %d " % i) * 5000
            c.sendall(msg)
            got = b""
            while len(got) < len(msg):
                chunk = c.recv(65536)
                check(chunk, "connection %d closed after %d bytes" % (i, len(got)))
                got += chunk
            check(got == msg, "connection %d: echoed bytes differ" % i)
            c.close()


def test_proxy_reloads_on_sighup_and_keeps_serving_on_a_bad_file():
    a, b = Backend("a"), Backend("b")
    port = closed_port()
    with Proxy(http_config(port, {"web": [target("a", a.port)]})) as p:
        check(curl(port, "/")[1].startswith(b"a "), "before the reload")
        p.reload(http_config(port, {"web": [target("b", b.port)]}, version=2), "reloaded")
        check(curl(port, "/")[1].startswith(b"b "), "after the reload, the new target should answer")
        bad = http_config(port, {"web": [target("b", b.port)]}, version=3)
        bad["listeners"][0]["rules"] = [{"priority": 1, "paths": ["nope"], "targetGroup": "web"}]
        p.reload(bad, "reload refused")
        check('listeners[0].rules[0].paths[0]: must start with \\"/\\"' in p.logs(),
              "the refusal should name the field: %s" % p.logs()[-600:])
        p.reload("{not json", "reload refused")
        status, body, _ = curl(port, "/")
        check(status == 200 and body.startswith(b"b "), "the old configuration should keep serving: %r" % body)


@timeout(90)
def test_proxy_bounds_request_heads():
    web = Backend("web")
    port = closed_port()
    with Proxy(http_config(port, {"web": [target("w", web.port)]})):
        status, body, _ = curl(port, "/", extra=["-H", "X-Big: " + "b" * 20000])
        check(status == 431, "oversized header: expected 431, got %d" % status)
        check(b"over 16384 bytes" in body, "431 should say what was too large: %r" % body)
        many = []
        for i in range(120):
            many += ["-H", "X-N%d: %d" % (i, i)]
        status, body, _ = curl(port, "/", extra=many)
        check(status == 431 and b"header fields" in body, "too many headers: %d %r" % (status, body))
        c = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        c.sendall(b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
        answer = c.recv(4096)
        check(answer.startswith(b"HTTP/1.1 400"), "malformed request: %r" % answer)
        c.close()
        # A head that never ends is answered 408 at the header deadline (10 s),
        # not held for ever.
        c = socket.create_connection(("127.0.0.1", port), timeout=60)
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        answer = c.recv(4096)
        check(answer.startswith(b"HTTP/1.1 408"), "unfinished head: %r" % answer)
        c.close()
        check(web.hits == 0, "a refused request reached the target")


def test_proxy_keeps_alive_and_answers_pipelined_requests_in_order():
    a = Backend("a")
    port = closed_port()
    with Proxy(http_config(port, {"web": [target("a", a.port)]})):
        c = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        c.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)))
        got = b""
        while got.count(b"a /p") < 5:
            chunk = c.recv(65536)
            check(chunk, "closed after %r" % got)
            got += chunk
        order = [int(x.split(b"\n")[0]) for x in got.split(b"a /p")[1:]]
        check(order == [0, 1, 2, 3, 4], "pipelined answers out of order: %r" % order)
        c.close()


def raw_server(answer):
    """Answers every request with the bytes `answer`, then closes. Returns its port."""
    return head_server(lambda c, head: c.sendall(answer))


def test_proxy_takes_bare_line_feeds_from_targets_and_answers_502_for_a_malformed_head():
    # busybox httpd's CGI answers end header lines with a bare LF after its own
    # status line, and end the body with the connection.
    loose = raw_server(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\n\nloose body\n")
    broken = raw_server(b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n")
    port = closed_port()
    with Proxy(http_config(port, {"web": [target("l", loose)], "bad": [target("b", broken)]},
                           [{"priority": 1, "hosts": ["bad.example.com"], "paths": [], "targetGroup": "bad"}])):
        status, body, h = curl(port, "/")
        check(status == 200 and body == b"loose body\n", "a bare-LF head: %d %r" % (status, body))
        check(h.get("content-type") == "text/plain", "its header passed on: %r" % h)
        status, body, _ = curl(port, "/", host="bad.example.com")
        check(status == 502 and b"malformed response" in body, "a malformed head: %d %r" % (status, body))


class Nginx:
    """A private nginx (Debian's nginx-light) on 127.0.0.1:`port` that takes the
    PROXY protocol and logs, per request, the address its header gave."""

    def __init__(self, port):
        self.dir = scratch_dir("nginx")
        self.access_log = os.path.join(self.dir, "access.log")
        built = subprocess.run(["nginx", "-V"], capture_output=True, text=True).stderr
        # Every temporary directory the build has goes under our own, so that
        # nothing under /var is needed.
        temps = "".join("    %s_temp_path %s/%s;\n" % (kind, self.dir, kind)
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
                        if kind == "client_body" or "--http-%s-temp-path" % kind in built)
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""daemon off;
master_process off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log;
events { worker_connections 64; }
http {
%(temps)s    log_format pp '$proxy_protocol_addr $proxy_protocol_port $remote_addr "$request"';
    access_log %(dir)s/access.log pp;
    server {
        listen 127.0.0.1:%(port)d proxy_protocol;
        location / { return 200 "seen $proxy_protocol_addr\\n"; }
    }
}
""" % {"dir": self.dir, "port": port, "temps": temps})
        self.proc = subprocess.Popen(["nginx", "-p", self.dir, "-e", os.path.join(self.dir, "error.log"), "-c", conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.port = port
        wait_until(self._listening, what="nginx listening on %d" % port)

    def _listening(self):
        if self.proc.poll() is not None:
            raise TestFailure("nginx exited %s: %s" % (self.proc.returncode, self.errors()))
        return not port_refuses(self.port)

    def errors(self):
        try:
            with open(os.path.join(self.dir, "error.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def logged(self):
        try:
            with open(self.access_log) as f:
                return f.read().splitlines()
        except OSError:
            return []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def test_proxy_sends_the_proxy_protocol_to_nginx():
    # nginx's own port is probed by port_refuses above, without a header: it logs
    # those as broken headers, never as requests.
    v1_port, v2_port, nginx_port = closed_port(), closed_port(), closed_port()
    listeners = [{"port": p, "protocol": "TCP", "address": "127.0.0.1", "defaultTargetGroup": g}
                 for p, g in ((v1_port, "tcp-v1"), (v2_port, "tcp-v2"))]
    groups = [{"name": g, "protocol": "TCP", "proxyProtocol": v, "targets": [target("n", nginx_port)]}
              for g, v in (("tcp-v1", "v1"), ("tcp-v2", "v2"))]
    with Nginx(nginx_port) as nginx, Proxy({"version": 1, "listeners": listeners, "targetGroups": groups}):
        for port, path in ((v1_port, "/through-v1"), (v2_port, "/through-v2")):
            status, body, _ = curl(port, path)
            check(status == 200 and body == b"seen 127.0.0.1\n",
                  "through %s: %d %r (nginx: %s)" % (path, status, body, nginx.errors()))
            wait_until(lambda: any(path in line for line in nginx.logged()), what="nginx logging " + path)
            line = [x for x in nginx.logged() if path in x][0]
            addr, sport = line.split()[0], line.split()[1]
            check(addr == "127.0.0.1", "nginx logged PROXY address %r: %r" % (addr, line))
            check(sport.isdigit() and int(sport) > 0, "nginx logged PROXY port %r: %r" % (sport, line))


# --- UDP ---


class UdpEcho:
    """A UDP target on 127.0.0.1 answering each datagram with its name, ":" and the datagram."""

    def __init__(self, name):
        self.name = name.encode()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sources = set()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            data, peer = self.sock.recvfrom(65535)
            self.sources.add(peer)
            self.sock.sendto(self.name + b":" + data, peer)


def udp_ask(sock, port, data):
    """Sends `data` to the proxy's UDP port from `sock`; returns the answer (bounded by WAIT)."""
    sock.settimeout(WAIT)
    sock.sendto(data, ("127.0.0.1", port))
    try:
        return sock.recvfrom(65535)[0]
    except socket.timeout:
        raise TestFailure("no UDP answer to %r" % data)


def udp_answers(port):
    """True when the proxy's UDP port `port` answers a datagram within a second."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    try:
        s.sendto(b"probe", ("127.0.0.1", port))
        return bool(s.recvfrom(65535)[0])
    except OSError:
        return False
    finally:
        s.close()


def test_proxy_udp_listener_keeps_a_flow_per_client():
    a, b = UdpEcho("a"), UdpEcho("b")
    echo = echo_server()
    port = closed_port()

    def config(version, dns):
        # A TCP listener on the same port number first (the Proxy helper waits
        # for it): UDP is a port family of its own. Each version adds a UDP
        # listener of its own, whose first answer shows the version applied.
        return {"version": version,
                "listeners": [{"port": port, "protocol": "TCP", "address": "127.0.0.1", "defaultTargetGroup": "tcp"},
                              {"port": port, "protocol": "UDP", "address": "127.0.0.1", "defaultTargetGroup": "dns"},
                              {"port": marks[version], "protocol": "UDP", "address": "127.0.0.1",
                               "defaultTargetGroup": "dns"}],
                "targetGroups": [{"name": "tcp", "protocol": "TCP", "targets": [target("e", echo)]},
                                 {"name": "dns", "protocol": "UDP", "targets": dns}]}

    marks = {v: closed_port() for v in (1, 2, 3)}
    one = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    two = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with Proxy(config(1, [target("a", a.port), target("b", b.port)])) as p:
        check("protocol=UDP" in p.logs(), "the UDP listener should be logged: %s" % p.logs()[-600:])
        first = udp_ask(one, port, b"one")
        check(first in (b"a:one", b"b:one"), "first client: %r" % first)
        mine, other = first[:1], (b"b" if first[:1] == b"a" else b"a")
        check(udp_ask(two, port, b"two") == other + b":two", "least connections: the second client to the other")
        for i in range(5):
            check(udp_ask(one, port, b"%d" % i) == mine + b":%d" % i, "the first client keeps its target")
        check(len(a.sources) == 1 and len(b.sources) == 1, "one flow socket per client: %r %r" % (a.sources, b.sources))

        # The TCP listener on the same number works too.
        c = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        c.sendall(b"tcp")
        check(c.recv(16) == b"tcp", "the TCP echo through the same port number")
        c.close()

        # The first client's target draining: its flow stays, a new client goes elsewhere.
        ids = {b"a": a, b"b": b}
        p.reload(config(2, [target(mine.decode(), ids[mine].port, "draining"),
                            target(other.decode(), ids[other].port)]), "reloaded")
        wait_until(lambda: udp_answers(marks[2]), what="version 2 applied")
        check(udp_ask(one, port, b"still") == mine + b":still", "a draining target keeps its flow")
        three = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        check(udp_ask(three, port, b"new") == other + b":new", "a new flow avoids the draining target")

        # Removed: its flows close, and the client's next datagram goes to the other.
        p.reload(config(3, [target(other.decode(), ids[other].port)]), "reloaded")
        wait_until(lambda: udp_answers(marks[3]), what="version 3 applied")
        check(udp_ask(one, port, b"moved") == other + b":moved", "a removed target's client moves")


# --- stickiness and metrics ---


def scrape(port):
    """GET /metrics on 127.0.0.1:port; returns {series text: value}."""
    p = subprocess.run(["curl", "-sS", "--max-time", "10", "http://127.0.0.1:%d/metrics" % port],
                       capture_output=True, timeout=WAIT + 10)
    check(p.returncode == 0, "scrape failed: %s" % p.stderr.decode(errors="replace"))
    out = {}
    for line in p.stdout.decode().splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


def test_proxy_lb_cookie_pins_a_client_across_requests():
    a, b = Backend("a"), Backend("b")
    port = closed_port()
    cfg = http_config(port, {"web": [target("a", a.port), target("b", b.port)]})
    cfg["targetGroups"][0]["algorithm"] = "round_robin"
    cfg["targetGroups"][0]["stickiness"] = {"type": "lb_cookie", "durationSeconds": 120}
    with Proxy(cfg):
        status, body, h = curl(port, "/")
        check(status == 200, "first request: %d" % status)
        cookie = h.get("set-cookie", "")
        check(cookie.startswith("BERTHLB=") and cookie.endswith("; Max-Age=120; Path=/"), "Set-Cookie: %r" % cookie)
        name = body.split()[0]
        jar = cookie.split(";")[0]
        for _ in range(8):
            _, again, h2 = curl(port, "/", extra=("-H", "Cookie: x=1; " + jar))
            check(again.split()[0] == name, "the cookie's target %r, got %r" % (name, again))
            check("set-cookie" not in h2, "a pinned answer set a cookie again: %r" % h2)
        seen = {curl(port, "/")[1].split()[0] for _ in range(6)}
        check(seen == {b"a", b"b"}, "clients without a cookie should spread: %r" % seen)


def test_proxy_metrics_count_requests_by_target_and_the_proxys_own_503():
    web, other = Backend("web"), Backend("other")
    port, metrics_port = closed_port(), closed_port()
    cfg = http_config(port, {"web": [target("w1", web.port)], "gone": [target("g", other.port, "unhealthy")]},
                      rules=[{"priority": 1, "hosts": ["gone.example"], "targetGroup": "gone"}])
    with Proxy(cfg, args=("--metrics-listen", "127.0.0.1:%d" % metrics_port, "--proxy-threads", "2")):
        for _ in range(10):
            check(curl(port, "/")[0] == 200, "a request to web failed")
        check(curl(port, "/", host="gone.example")[0] == 503, "no healthy target: 503 expected")
        m = scrape(metrics_port)
        key = 'berth_proxy_target_responses_total{target_group="web",target="w1",class="2xx"}'
        check(m.get(key) == 10, "2xx on w1: %r" % {k: v for k, v in m.items() if "responses" in k})
        check(m.get('berth_proxy_local_responses_total{target_group="gone",code="503"}') == 1,
              "the proxy's own 503: %r" % {k: v for k, v in m.items() if "local" in k})
        check(m.get('berth_proxy_local_responses_total{target_group="web",code="503"}') == 0, "web had no 503")
        lst = '{listener="127.0.0.1:%d/HTTP"}' % port
        check(m.get("berth_proxy_requests_total" + lst) == 11, "requests on the listener: %r" % m.get(
            "berth_proxy_requests_total" + lst))
        check(m.get('berth_proxy_target_response_seconds_count{target_group="web"}') == 10, "latency count")
        # The endpoint serves only GET /metrics.
        check(curl(metrics_port, "/other")[0] == 404, "an unknown path on the metrics listener")
