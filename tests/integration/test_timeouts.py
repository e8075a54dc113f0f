"""Connection limits and timeouts: slowloris, stalled bodies, idle keep-alive,
max-connections. Timeouts are configured short; the assertions are about what
happens (408, close), never about how quickly."""

import socket
import time

from harness import (Server, build_request, check, expect_error, expect_status, timeout, wait_until)


@timeout(40)
def test_slowloris_headers_get_408():
    # Regression: until 459c2dc any error answered before the headers were complete
    # (400, 408, 431) crashed the server with SIGSEGV (no route in Server::Record).
    with Server(args=["--header-timeout", "500ms"]) as s, s.raw() as c:
        # 40 s worth of header bytes at one byte per 100 ms: far past the timeout.
        head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 400 + b"\r\n\r\n"
        sent = c.send_slowly(head, step=1, delay=0.1)
        check(sent < len(head), "the server let a 40-second header through")
        r = c.read_response()
        expect_error(r, 408, "RequestTimeout", "slow headers")
        check(r.closes(), "408 must carry Connection: close")
        c.wait_closed()
        s.assert_serving()


@timeout(40)
def test_half_a_request_line_gets_408():
    # Regression: until 459c2dc any error answered before the headers were complete
    # (400, 408, 431) crashed the server with SIGSEGV (no route in Server::Record).
    with Server(args=["--header-timeout", "500ms"]) as s, s.raw() as c:
        c.send(b"GE")
        r = c.read_response()
        expect_error(r, 408, "RequestTimeout", "two bytes then silence")
        c.wait_closed()
        s.assert_serving()


@timeout(40)
def test_stalled_body_gets_408():
    with Server(args=["--body-timeout", "500ms"]) as s, s.raw() as c:
        c.send(b"POST /v1/clusters HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
               b"Content-Length: 100\r\n\r\n{\"clusterName\":" % s.token.encode())
        r = c.read_response()
        expect_error(r, 408, "RequestTimeout", "stalled body")
        check(r.closes(), "408 must carry Connection: close")
        check(c.wait_closed() == b"", "bytes after the 408")
        s.assert_serving()
        check(s.metric("berth_http_timeouts_total") >= 1, "berth_http_timeouts_total did not count the 408")


@timeout(40)
def test_stalled_chunked_body_gets_408():
    with Server(args=["--body-timeout", "500ms"]) as s, s.raw() as c:
        c.send(build_request("POST", "/v1/clusters", None, {"Transfer-Encoding": "chunked"}, token=s.token)
               + b"5\r\n{\"clu")
        expect_error(c.read_response(), 408, "RequestTimeout", "stalled chunked body")
        c.wait_closed()
        s.assert_serving()


@timeout(40)
def test_body_that_keeps_arriving_is_not_cut_off():
    # --body-timeout bounds the silence, not the whole body: bytes every 50 ms
    # over about two seconds, with a 2 s timeout, must go through.
    with Server(args=["--body-timeout", "2s"]) as s, s.raw() as c:
        body = b'{"clusterName":"trickle","pad":"' + b"p" * 10 + b'"}'
        c.send(b"POST /v1/clusters HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n"
               % (s.token.encode(), len(body)))
        sent = c.send_slowly(body, step=1, delay=0.05)
        check(sent == len(body), "the server answered after %d of %d body bytes: %r"
              % (sent, len(body), c.buf[:200]))
        expect_status(c.read_response(), 201, "trickled body")


@timeout(40)
def test_idle_keepalive_connection_is_closed_silently():
    with Server(args=["--idle-timeout", "500ms"]) as s:
        with s.raw() as c:
            c.send(build_request("GET", "/healthz"))
            expect_status(c.read_response(), 200)
            extra = c.wait_closed()
            check(extra == b"", "the idle close sent bytes: %r" % extra)
        with s.raw() as c:
            # Never sends anything at all.
            extra = c.wait_closed()
            check(extra == b"", "closing a silent connection sent bytes: %r" % extra)
        s.assert_serving()


@timeout(40)
def test_idle_timeout_does_not_cut_a_busy_connection():
    # Requests every 100 ms for about two seconds with a 1 s idle timeout: never idle long enough.
    with Server(args=["--idle-timeout", "1s"]) as s, s.raw() as c:
        for i in range(20):
            c.send(build_request("GET", "/healthz"))
            expect_status(c.read_response(), 200, "request %d" % i)
            time.sleep(0.1)


@timeout(40)
def test_max_connections_gets_503():
    with Server(args=["--max-connections", "3"]) as s:
        held = [s.raw() for _ in range(3)]
        try:
            for c in held:  # make sure each one is accepted and counted
                c.send(build_request("GET", "/healthz"))
                expect_status(c.read_response(), 200, "one of the first three connections")
            with s.raw() as extra:
                r = extra.read_response()
                expect_error(r, 503, "TooManyConnections", "fourth connection")
                check(r.closes(), "503 must carry Connection: close")
                check(extra.wait_closed() == b"", "bytes after the 503")
            # The held connections still work.
            held[1].send(build_request("GET", "/healthz"))
            expect_status(held[1].read_response(), 200, "a held connection after the 503")
            # Free one slot: a new connection is served again (once the server has noticed).
            held.pop(0).close()

            def served():
                with s.raw() as c:
                    c.send(build_request("GET", "/healthz"))
                    return c.read_response().status == 200

            wait_until(served, step=0.2, what="a new connection served after one closed")
        finally:
            for c in held:
                c.close()
        check(s.metric("berth_http_rejected_connections_total") >= 1,
              "berth_http_rejected_connections_total did not count the refusal")


@timeout(60)
def test_client_that_does_not_read_is_cut_off_by_write_timeout():
    with Server(args=["--write-timeout", "500ms"]) as s:
        # Make the list answer big (~45 KB), then ask for it 300 times (13 MB) without reading.
        with s.raw() as c:
            c.send(b"".join(build_request("POST", "/v1/clusters", '{"clusterName":"w%s-%03d"}' % ("x" * 200, i),
                                          token=s.token) for i in range(150)))
            for i in range(150):
                expect_status(c.read_response(), 201, "setup create %d" % i)
        with s.raw() as c:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            c.send(build_request("GET", "/v1/clusters", token=s.token) * 300)
            # Judged from the server's side: once the kernel has accepted the answers
            # the client sees the data and the FIN only when it reads, so the client
            # side says nothing about whether the server gave up.
            wait_until(lambda: (s.metric("berth_http_timeouts_total") or 0) >= 1,
                       what="the write timeout to fire for a client that does not read")
            wait_until(lambda: s.metric("berth_http_open_connections") == 1,
                       what="the stalled connection to be dropped (only the /metrics one open)")
        s.assert_serving()


def test_half_closed_client_still_gets_its_answer():
    # Plain HTTP (--no-tls): Python's ssl cannot half-close a TLS session and read
    # on (SSLSocket.shutdown drops the session); the TCP half-close is the case.
    with Server(tls=False) as s:
        for req, want in ((build_request("GET", "/healthz"), 200),
                          (build_request("POST", "/v1/clusters", '{"clusterName":"half"}', token=s.token), 201)):
            with s.raw() as c:
                c.send(req)
                c.sock.shutdown(socket.SHUT_WR)
                expect_status(c.read_response(), want, "answer after the client half-closed")
                c.wait_closed()
        check("half" in s.cluster_names(), "the half-closed create was not kept")
