"""The HTTP/1.1 layer seen from a raw socket: keep-alive, pipelining, chunked
and partial bodies, size limits, malformed requests, auth, routing, HTTP/1.0."""

import re

from harness import (Server, build_request, check, chunked, expect_error, expect_status, timeout)


def test_healthz_is_open():
    with Server() as s:
        r = expect_status(s.request("GET", "/healthz", token=None), 200)
        check(r.json() == {"status": "ok"}, "healthz body %r" % r.body)
        check(r.header("Content-Type", "").startswith("application/json"), "healthz content type")


def test_keepalive_many_requests_on_one_socket():
    with Server() as s, s.raw() as c:
        for i in range(120):
            if i % 10 == 5:
                c.send(build_request("POST", "/v1/clusters", '{"clusterName":"ka-%d"}' % i, token=s.token))
                want = 201
            elif i % 2:
                c.send(build_request("GET", "/v1/clusters", token=s.token))
                want = 200
            else:
                c.send(build_request("GET", "/healthz"))
                want = 200
            r = c.read_response()
            expect_status(r, want, "request %d on the kept-alive socket" % i)
            check(not r.closes(), "request %d answered with Connection: close" % i)
        check(c.is_open_after(0.2), "the server closed a keep-alive connection between requests")
        names = s.cluster_names()
        check(all("ka-%d" % i in names for i in range(5, 120, 10)), "clusters created on the socket are missing")


def test_pipelining_answers_in_order_with_a_post_in_the_middle():
    with Server() as s, s.raw() as c:
        t = s.token
        c.send(build_request("GET", "/healthz")
               + build_request("POST", "/v1/clusters", '{"clusterName":"pipe-1"}', token=t)
               + build_request("GET", "/v1/clusters/pipe-1", token=t)
               + build_request("GET", "/no/such/route", token=t)
               + build_request("POST", "/v1/clusters", '{"clusterName":"pipe-1"}', token=t)
               + build_request("DELETE", "/v1/clusters/pipe-1", token=t)
               + build_request("GET", "/v1/clusters/pipe-1", token=t)
               + build_request("GET", "/v1/version", token=t))
        rs = [c.read_response() for _ in range(8)]
        got = [r.status for r in rs]
        check(got == [200, 201, 200, 404, 409, 200, 404, 200], "pipelined statuses in order: %r" % got)
        check(rs[0].json() == {"status": "ok"}, "first answer is not healthz: %r" % rs[0])
        check(rs[2].json()["cluster"]["clusterName"] == "pipe-1", "GET after POST: %r" % rs[2])
        check(rs[5].json()["cluster"]["status"] == "INACTIVE", "DELETE answer: %r" % rs[5])
        check("version" in rs[7].json(), "last answer is not the version: %r" % rs[7])
        # The connection is still usable afterwards.
        c.send(build_request("GET", "/healthz"))
        expect_status(c.read_response(), 200, "request after the pipelined batch")


def test_pipelining_fifty_creates_and_reads():
    with Server() as s, s.raw() as c:
        batch = b""
        for i in range(25):
            batch += build_request("POST", "/v1/clusters", '{"clusterName":"pl-%02d"}' % i, token=s.token)
            batch += build_request("GET", "/v1/clusters/pl-%02d" % i, token=s.token)
        c.send(batch)
        for i in range(25):
            r1, r2 = c.read_response(), c.read_response()
            expect_status(r1, 201, "create pl-%02d" % i)
            expect_status(r2, 200, "describe pl-%02d" % i)
            check(r1.json()["cluster"]["clusterName"] == "pl-%02d" % i, "answer %d out of order: %r" % (2 * i, r1))
            check(r2.json()["cluster"]["clusterName"] == "pl-%02d" % i, "answer %d out of order: %r" % (2 * i + 1, r2))


def test_request_sent_in_tiny_pieces():
    with Server() as s, s.raw() as c:
        req = build_request("POST", "/v1/clusters", '{"clusterName":"bytewise"}', token=s.token)
        c.send_slowly(req, step=1, delay=0.002, stop_when_readable=False)
        expect_status(c.read_response(), 201, "request sent a byte at a time")
        # Two requests split at an awkward place: inside the second request line.
        two = build_request("GET", "/v1/clusters/bytewise", token=s.token) + build_request("GET", "/healthz")
        cut = len(two) - 20
        c.send(two[:cut])
        c.send_slowly(two[cut:], step=7, delay=0.01, stop_when_readable=False)
        expect_status(c.read_response(), 200, "first of a split pair")
        expect_status(c.read_response(), 200, "second of a split pair")


def test_chunked_request_body():
    with Server() as s, s.raw() as c:
        hdr = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
        c.send(build_request("POST", "/v1/clusters", None, hdr, token=s.token)
               + chunked('{"clusterName":"chunky"}', sizes=[1, 3, 5]))
        r = expect_status(c.read_response(), 201, "chunked create")
        check(r.json()["cluster"]["clusterName"] == "chunky", "chunked create answer %r" % r)
        # Chunk extensions and a trailer are legal too; and the connection stays usable.
        body = b'{"clusterName":"chunky-2"}'
        c.send(build_request("POST", "/v1/clusters", None, hdr, token=s.token)
               + b"%x;name=value\r\n%s\r\n0\r\nX-Trailer: yes\r\n\r\n" % (len(body), body))
        expect_status(c.read_response(), 201, "chunked create with an extension and a trailer")
        c.send(build_request("GET", "/v1/clusters/chunky", token=s.token))
        expect_status(c.read_response(), 200, "describe after chunked creates")


@timeout(45)
def test_chunked_body_over_one_mib_gets_413():
    with Server() as s, s.raw() as c:
        hdr = {"Transfer-Encoding": "chunked"}
        c.send(build_request("POST", "/v1/clusters", None, hdr, token=s.token))
        big = b'{"clusterName":"huge","pad":"' + b"x" * (1100 * 1024) + b'"}'
        try:
            c.send(chunked(big, sizes=[64 * 1024]))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may stop reading once it has answered
        r = c.read_response()
        msg = expect_error(r, 413, "PayloadTooLarge", "chunked body over 1 MiB")
        check("1048576" in msg, "413 message does not name the limit: %r" % msg)
        check(r.closes(), "413 must carry Connection: close")
        c.wait_closed()
        s.assert_serving()
        check("huge" not in s.cluster_names(), "the oversized request created a cluster")


def test_content_length_over_limit_gets_413_before_the_body():
    with Server() as s, s.raw() as c:
        # Only the head is sent: the answer must not wait for two megabytes.
        c.send(b"POST /v1/clusters HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
               b"Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n" % s.token.encode())
        r = c.read_response()
        msg = expect_error(r, 413, "PayloadTooLarge", "Content-Length 2000000")
        check("2000000" in msg and "1048576" in msg, "413 message: %r" % msg)
        check(r.closes(), "413 must carry Connection: close")
        c.wait_closed()
        s.assert_serving()


def test_body_of_exactly_one_mib_is_accepted():
    with Server() as s:
        head = b'{"clusterName":"exact","pad":"'
        tail = b'"}'
        body = head + b"x" * (1024 * 1024 - len(head) - len(tail)) + tail
        check(len(body) == 1048576, "test bug: body is %d bytes" % len(body))
        expect_status(s.request("POST", "/v1/clusters", body, {"Content-Type": "application/json"}), 201,
                      "a body of exactly 1 MiB")
        over = head + b"x" * (1024 * 1024 - len(head) - len(tail) + 1) + tail
        with s.raw() as c:
            c.send(build_request("POST", "/v1/clusters", over, token=s.token))
            expect_error(c.read_response(), 413, "PayloadTooLarge", "a body of 1 MiB + 1")


def test_huge_headers_get_431_default_limit():
    # Regression: until 459c2dc any error answered before the headers were complete
    # (400, 408, 431) crashed the server with SIGSEGV (no route in Server::Record).
    with Server() as s, s.raw() as c:
        c.send(b"GET /v1/clusters HTTP/1.1\r\nHost: t\r\nX-Filler: " + b"a" * 20000 + b"\r\n\r\n")
        r = c.read_response()
        expect_error(r, 431, "HeadersTooLarge", "20 KB header")
        check(r.closes(), "431 must carry Connection: close")
        c.wait_closed()
        s.assert_serving()


def test_headers_over_configured_limit_get_431():
    # Regression: until 459c2dc any error answered before the headers were complete
    # (400, 408, 431) crashed the server with SIGSEGV (no route in Server::Record).
    with Server(args=["--max-header-bytes", "1KiB"]) as s:
        with s.raw() as c:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Filler: " + b"a" * 600 + b"\r\n\r\n")
            expect_status(c.read_response(), 200, "600-byte header under a 1 KiB limit")
        with s.raw() as c:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Filler: " + b"a" * 2000 + b"\r\n\r\n")
            r = c.read_response()
            msg = expect_error(r, 431, "HeadersTooLarge", "2000-byte header over a 1 KiB limit")
            check("1024" in msg, "431 message does not name the limit: %r" % msg)
            check(r.closes(), "431 must carry Connection: close")
        with s.raw() as c:
            c.send(b"GET /healthz?" + b"q" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            expect_error(c.read_response(), 431, "HeadersTooLarge", "2000-byte request target")
        s.assert_serving()


def test_malformed_http_gets_400_and_close():
    # Regression: until 459c2dc any error answered before the headers were complete
    # (400, 408, 431) crashed the server with SIGSEGV (no route in Server::Record).
    cases = [
        b"GARBAGE\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n",
        b"GET /healthz HTTP/9.9\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
    ]
    with Server() as s:
        for raw in cases:
            with s.raw() as c:
                c.send(raw)
                r = c.read_response()
                expect_error(r, 400, "BadRequest", "malformed request %r" % raw[:40])
                check(r.closes(), "400 for %r must carry Connection: close" % raw[:40])
                c.wait_closed()
            s.assert_serving()


def test_malformed_chunked_body_gets_400():
    with Server() as s, s.raw() as c:
        c.send(build_request("POST", "/v1/clusters", None, {"Transfer-Encoding": "chunked"}, token=s.token)
               + b"zz\r\nnot hex\r\n")
        r = c.read_response()
        expect_error(r, 400, "BadRequest", "bad chunk size")
        check(r.closes(), "400 must carry Connection: close")
        s.assert_serving()


def test_unauthorized_401():
    with Server() as s:
        cases = [
            ("missing", None),
            ("wrong token", {"Authorization": "Bearer berth_not_the_token"}),
            ("non-Bearer", {"Authorization": "Basic YWRtaW46YWRtaW4="}),
            ("empty Bearer", {"Authorization": "Bearer "}),
            ("token without scheme", {"Authorization": s.token}),
        ]
        for what, hdrs in cases:
            for path in ("/v1/clusters", "/metrics", "/v1/version"):
                r = s.request("GET", path, headers=hdrs, token=None)
                expect_error(r, 401, "Unauthorized", "%s on %s" % (what, path))
                check((r.header("WWW-Authenticate") or "").startswith("Bearer"),
                      "401 without WWW-Authenticate: Bearer (%s): %r" % (what, r.headers))
        r = s.request("POST", "/v1/clusters", {"clusterName": "sneaky"}, token=None)
        expect_error(r, 401, "Unauthorized", "create without a token")
        check("sneaky" not in s.cluster_names(), "an unauthenticated create went through")


def test_bearer_scheme_is_case_insensitive():
    # RFC 7235 section 2.1: the auth-scheme is case-insensitive ("bearer" == "Bearer").
    with Server() as s:
        r = s.request("GET", "/v1/clusters", headers={"Authorization": "bearer " + s.token}, token=None)
        expect_status(r, 200, "Authorization: bearer <token> (lower-case scheme)")


def test_unknown_route_404_and_wrong_method_405():
    with Server() as s:
        # (/v2/ is the registry's: its unknown paths answer in the OCI error shape, test_registry.py)
        for path in ("/nope", "/v1", "/v1/clusters/a/b"):
            expect_error(s.request("GET", path), 404, "UnknownRoute", "GET " + path)
        cases = [("PUT", "/v1/clusters", {"GET", "POST"}), ("DELETE", "/v1/clusters", {"GET", "POST"}),
                 ("POST", "/v1/clusters/default", {"GET", "DELETE"}), ("POST", "/healthz", {"GET"}),
                 ("PATCH", "/v1/version", {"GET"})]
        for method, path, allowed in cases:
            r = s.request(method, path)
            expect_error(r, 405, "MethodNotAllowed", "%s %s" % (method, path))
            allow = {m.strip() for m in (r.header("Allow") or "").split(",") if m.strip()}
            check(allowed <= allow, "Allow for %s is %r, want %r" % (path, r.header("Allow"), allowed))


def test_refused_request_with_a_body_closes_the_connection():
    # A 401 for a request whose body was never read must end the connection.
    with Server() as s, s.raw() as c:
        c.send(build_request("POST", "/v1/clusters", '{"clusterName":"nope"}'))
        r = c.read_response()
        expect_error(r, 401, "Unauthorized", "POST without a token")
        check(r.closes(), "401 before the body was read must carry Connection: close")
        c.wait_closed()
        s.assert_serving()


def test_http10():
    with Server() as s:
        with s.raw() as c:
            c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
            r = expect_status(c.read_response(), 200, "HTTP/1.0 request")
            check(r.json() == {"status": "ok"}, "HTTP/1.0 body %r" % r.body)
            check(c.wait_closed() == b"", "extra bytes after the HTTP/1.0 answer")
        with s.raw() as c:
            c.send(b"GET /v1/clusters HTTP/1.0\r\nConnection: keep-alive\r\nAuthorization: Bearer %s\r\n\r\n"
                   % s.token.encode())
            r = expect_status(c.read_response(), 200, "HTTP/1.0 keep-alive request")
            check((r.header("Connection") or "").lower() == "keep-alive", "HTTP/1.0 keep-alive answer %r" % r.headers)
            c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
            expect_status(c.read_response(), 200, "second HTTP/1.0 request on a kept-alive socket")
            c.wait_closed()


def test_connection_close_from_client_is_honoured():
    with Server() as s, s.raw() as c:
        c.send(build_request("GET", "/healthz", headers={"Connection": "close"}))
        r = expect_status(c.read_response(), 200)
        check(r.closes(), "answer to Connection: close lacks Connection: close")
        check(c.wait_closed() == b"", "bytes after the last answer")


def test_expect_100_continue():
    with Server() as s, s.raw() as c:
        body = b'{"clusterName":"continued"}'
        c.send(b"POST /v1/clusters HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nExpect: 100-continue\r\n"
               b"Content-Length: %d\r\n\r\n" % (s.token.encode(), len(body)))
        interim = c.read_response()
        expect_status(interim, 100, "interim answer to Expect: 100-continue")
        c.send(body)
        expect_status(c.read_response(), 201, "create after 100 Continue")


def test_head_has_no_body():
    with Server() as s, s.raw() as c:
        c.send(build_request("HEAD", "/healthz"))
        r = c.read_response(head=True)
        expect_status(r, 200, "HEAD /healthz")
        c.send(build_request("GET", "/healthz"))
        r2 = c.read_response()
        check(r2.status == 200 and r2.body == b'{"status":"ok"}',
              "the HEAD answer carried a body (next answer read as %r)" % r2)


def test_error_bodies_are_json_with_code_and_message():
    with Server() as s:
        r = s.request("GET", "/v1/clusters/none-such")
        msg = expect_error(r, 404, "ClusterNotFound")
        check("none-such" in msg, "404 message does not name the cluster: %r" % msg)
        check(re.fullmatch(r"\d+", r.header("Content-Length") or ""), "error without Content-Length")


@timeout(60)
def test_pipelined_large_answers_all_arrive_in_order():
    # ~45 KB answers, 150 of them (7 MB) asked for at once: the server has to hold
    # back reading while its output queue is full, and must not drop or reorder any.
    with Server() as s, s.raw() as c:
        c.send(b"".join(build_request("POST", "/v1/clusters", '{"clusterName":"big%s-%03d"}' % ("x" * 200, i),
                                      token=s.token) for i in range(150)))
        for i in range(150):
            expect_status(c.read_response(), 201, "setup create %d" % i)
        c.send(build_request("GET", "/v1/clusters", token=s.token) * 150 + build_request("GET", "/healthz"))
        for i in range(150):
            r = expect_status(c.read_response(), 200, "pipelined list %d" % i)
            check(len(r.json()["clusters"]) == 151, "list %d has %d clusters" % (i, len(r.json()["clusters"])))
        r = c.read_response()
        check(r.status == 200 and r.json() == {"status": "ok"}, "the last pipelined answer is %r" % r)
