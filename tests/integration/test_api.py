"""The /v1 API, /metrics and the Unix-socket listener."""

import os
import re
import stat

from harness import (Server, TestFailure, build_request, check, connect_unix, expect_error, expect_status,
                     run_server_once, scratch_dir)

ARN_PREFIX = "arn:aws:ecs:local:000000000000:cluster/"
LABELS = r'(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?'  # {a="x",b="{y}"}, optional


def check_cluster_shape(c, name, status="ACTIVE"):
    check(c.get("clusterName") == name, "clusterName %r, want %r" % (c.get("clusterName"), name))
    check(c.get("clusterArn") == ARN_PREFIX + name, "clusterArn %r" % c.get("clusterArn"))
    check(c.get("status") == status, "status %r, want %r" % (c.get("status"), status))
    for k in ("registeredContainerInstancesCount", "runningTasksCount", "pendingTasksCount", "activeServicesCount"):
        check(c.get(k) == 0, "%s is %r, want 0" % (k, c.get(k)))


def test_default_cluster_exists():
    with Server() as s:
        r = expect_status(s.request("GET", "/v1/clusters"), 200)
        clusters = r.json()["clusters"]
        check([c["clusterName"] for c in clusters] == ["default"], "fresh server clusters: %r" % clusters)
        check_cluster_shape(clusters[0], "default")
        r = expect_status(s.request("GET", "/v1/clusters/default"), 200)
        check_cluster_shape(r.json()["cluster"], "default")


def test_create_describe_list_delete():
    with Server() as s:
        r = expect_status(s.create_cluster("web"), 201, "create web")
        check_cluster_shape(r.json()["cluster"], "web")
        r = expect_status(s.request("GET", "/v1/clusters/web"), 200, "describe web")
        check_cluster_shape(r.json()["cluster"], "web")
        for n in ("zeta", "Alpha", "alpha-2", "b_1", "9lives"):
            expect_status(s.create_cluster(n), 201, "create " + n)
        names = s.cluster_names()
        check(names == sorted(names), "list is not sorted by name: %r" % names)
        check(set(names) == {"default", "web", "zeta", "Alpha", "alpha-2", "b_1", "9lives"}, "list: %r" % names)

        r = expect_status(s.request("DELETE", "/v1/clusters/web"), 200, "delete web")
        check_cluster_shape(r.json()["cluster"], "web", status="INACTIVE")
        msg = expect_error(s.request("GET", "/v1/clusters/web"), 404, "ClusterNotFound", "describe after delete")
        check("web" in msg, "404 message %r" % msg)
        expect_error(s.request("DELETE", "/v1/clusters/web"), 404, "ClusterNotFound", "delete twice")
        check("web" not in s.cluster_names(), "deleted cluster still listed")
        # A list filtered by a cluster that does not exist is a 404, not an empty page.
        for what in ("services", "tasks", "nodes"):
            msg = expect_error(s.request("GET", "/v1/%s?cluster=web" % what), 404, "ClusterNotFound", what)
            check("web" in msg, "%s: 404 message %r" % (what, msg))
        expect_status(s.request("GET", "/v1/services?cluster=zeta"), 200, "services of an existing cluster")
        expect_status(s.create_cluster("web"), 201, "re-create after delete")


def test_duplicate_create_is_409():
    with Server() as s:
        expect_status(s.create_cluster("twice"), 201)
        msg = expect_error(s.create_cluster("twice"), 409, "ClusterAlreadyExists", "second create")
        check("twice" in msg, "409 message %r" % msg)
        expect_error(s.create_cluster("default"), 409, "ClusterAlreadyExists", "create default")
        check(s.cluster_names().count("twice") == 1, "duplicate listed")


def test_invalid_cluster_names_are_400_naming_the_field():
    with Server() as s:
        bad = ["", "a" * 256, "has space", "sl/ash", "dot.ted", "\u00e9t\u00e9", "tab\there", "new\nline"]
        for name in bad:
            msg = expect_error(s.create_cluster(name), 400, "InvalidParameter", "name %r" % name[:20])
            check("clusterName" in msg, "message does not name clusterName: %r" % msg)
        for body, what in (({}, "missing"), ({"clusterName": 5}, "number"), ({"clusterName": None}, "null"),
                           ({"clusterName": ["x"]}, "array")):
            msg = expect_error(s.request("POST", "/v1/clusters", body), 400, "InvalidParameter", what + " name")
            check("clusterName" in msg, "message does not name clusterName (%s): %r" % (what, msg))
        expect_error(s.request("POST", "/v1/clusters", []), 400, "InvalidParameter", "array body")
        expect_error(s.request("POST", "/v1/clusters", '"x"', {"Content-Type": "application/json"}), 400,
                     "InvalidParameter", "string body")
        check(s.cluster_names() == ["default"], "invalid creates left clusters: %r" % s.cluster_names())
        expect_status(s.create_cluster("a" * 255), 201, "255-character name")
        expect_status(s.create_cluster("A-z_0-9"), 201, "letters, digits, - and _")


def test_malformed_json_is_400_with_position():
    with Server() as s:
        def post(body):
            return s.request("POST", "/v1/clusters", body, {"Content-Type": "application/json"})

        cases = [
            ('{\n  "clusterName": x\n}', 19, 2, 18),   # the x
            ('{"clusterName":"x"} junk', 20, 1, 21),   # trailing garbage
            ('{"clusterName" "x"}', 15, 1, 16),        # missing colon
            ('{"clusterName":"x",}', 19, 1, 20),       # trailing comma
        ]
        for body, byte, line, col in cases:
            msg = expect_error(post(body), 400, "MalformedJSON", "body %r" % body)
            m = re.search(r"at byte (\d+) \(line (\d+), column (\d+)\)", msg)
            check(m, "MalformedJSON message without a position: %r" % msg)
            got = tuple(int(g) for g in m.groups())
            check(got == (byte, line, col), "position for %r is %r, want %r" % (body, got, (byte, line, col)))
        for body in ('{"clusterName": ', "{", "nul", '{"clusterName":"unterminated'):
            msg = expect_error(post(body), 400, "MalformedJSON", "truncated body %r" % body)
            check(re.search(r"at byte \d+ \(line \d+, column \d+\)", msg), "no position: %r" % msg)
        expect_error(post(""), 400, "MalformedJSON", "empty body")
        check(s.cluster_names() == ["default"], "malformed creates left clusters")


def test_version():
    with Server() as s:
        v = expect_status(s.request("GET", "/v1/version"), 200).json()
        check(isinstance(v.get("version"), str) and v["version"], "version: %r" % v)
        check(isinstance(v.get("schemaVersion"), int) and v["schemaVersion"] >= 1, "schemaVersion: %r" % v)
        index = v.get("appliedIndex")
        check(isinstance(index, int) and index >= 1, "appliedIndex: %r" % v)
        expect_status(s.create_cluster("seq"), 201)
        v2 = s.request("GET", "/v1/version").json()
        check(v2["appliedIndex"] > index, "appliedIndex %r after one create (was %r)" % (v2, index))


def test_metrics():
    with Server() as s:
        expect_status(s.create_cluster("m1"), 201)
        expect_status(s.request("GET", "/v1/clusters"), 200)
        expect_error(s.request("GET", "/v1/clusters/none"), 404, "ClusterNotFound")
        r = expect_status(s.request("GET", "/metrics"), 200)
        check(r.header("Content-Type", "").startswith("text/plain"),
              "metrics content type %r" % r.header("Content-Type"))
        text = r.body.decode()
        for family, kind in (("berth_http_requests_total", "counter"),
                             ("berth_store_commit_batch_size", "histogram"),
                             ("berth_loop_lag_seconds", "gauge"),
                             ("berth_http_request_duration_seconds", "histogram")):
            check("# TYPE %s %s" % (family, kind) in text, "no '# TYPE %s %s' in /metrics" % (family, kind))
            check(re.search(r"^%s(_bucket|_sum|_count)?%s \S+$" % (family, LABELS), text, re.M),
                  "no sample of %s" % family)
        check(re.search(r'^berth_http_requests_total\{route="/v1/clusters",status="201"\} 1$', text, re.M),
              "the create is not counted by route and status")
        check(re.search(r'^berth_http_requests_total\{route="/v1/clusters/\{name\}",status="404"\} 1$', text, re.M),
              "the 404 is not counted by route pattern")
        # Every sample line is `name{labels} value` with a number.
        for line in text.splitlines():
            if line and not line.startswith("#"):
                check(re.fullmatch(r'[a-zA-Z_:][a-zA-Z0-9_:]*' + LABELS + r' [-+0-9.eEInfa]+', line),
                      "bad metrics line %r" % line)


def test_unix_socket_listener():
    path = os.path.join(scratch_dir("sock"), "berth.sock")
    with Server(args=["--listen-unix", path]) as s:
        check(stat.S_ISSOCK(os.stat(path).st_mode), "%s is not a socket" % path)
        with connect_unix(path, server=s) as c:
            c.send(build_request("GET", "/v1/clusters", token=s.token))
            r = expect_status(c.read_response(), 200, "list over the Unix socket")
            check([x["clusterName"] for x in r.json()["clusters"]] == ["default"], "list %r" % r.body)
            c.send(build_request("POST", "/v1/clusters", '{"clusterName":"via-unix"}', token=s.token))
            expect_status(c.read_response(), 201, "create over the Unix socket")
            c.send(build_request("GET", "/v1/clusters"))
            expect_error(c.read_response(), 401, "Unauthorized", "no token over the Unix socket")
        check("via-unix" in s.cluster_names(), "create over the Unix socket not seen over TCP")
        s.stop()
    check(not os.path.exists(path), "the Unix socket file is left after a clean stop")


def test_unix_socket_left_by_a_crash_is_replaced():
    path = os.path.join(scratch_dir("sock"), "berth.sock")
    s = Server(args=["--listen-unix", path])
    with s:
        s.kill()
        check(os.path.exists(path), "test premise: the socket file should survive kill -9")
        s.start()
        with connect_unix(path, server=s) as c:
            c.send(build_request("GET", "/healthz"))
            expect_status(c.read_response(), 200, "healthz over a re-created Unix socket")


def test_unix_socket_of_a_live_server_is_not_taken_over():
    # A second server (own data dir) given the Unix socket path of a running one must
    # refuse, not unlink the live socket and bind its own in its place.
    path = os.path.join(scratch_dir("sock"), "berth.sock")
    with Server(args=["--listen-unix", path]) as a:
        other = os.path.join(scratch_dir("other"), "data")
        try:
            b = Server(data_dir=other, args=["--listen-unix", path])
        except TestFailure:
            b = None  # refused to start: right
        if b is not None:
            with connect_unix(path) as c:
                c.send(build_request("GET", "/v1/clusters", token=a.token))
                status = c.read_response().status
            b.stop()
            check(False, "a second server started on the live Unix socket path and took it over (the first "
                         "server's token now gets %d there; after the second stops the socket file is %s)"
                  % (status, "still there" if os.path.exists(path) else "gone"))
        check(os.path.exists(path), "the live Unix socket file is gone")
        with connect_unix(path, server=a) as c:
            c.send(build_request("GET", "/v1/clusters", token=a.token))
            expect_status(c.read_response(), 200, "the first server over its own Unix socket")


def test_tcp_port_in_use_is_refused():
    with Server() as a:
        other = os.path.join(scratch_dir("other"), "data")
        p = run_server_once(["--data", other, "--listen", "127.0.0.1:%d" % a.port])
        check(p.returncode == 1, "a second server on a used port: exit %r (want 1)" % p.returncode)
        check(p.stderr.strip(), "no message for a used port")
        expect_status(a.request("GET", "/healthz", token=None), 200, "the first server after the refusal")


def test_nul_in_cluster_name_is_rejected_not_truncated():
    # "ok\u0000junk" is not a valid name; it must not be stored as "ok".
    with Server() as s:
        r = s.request("POST", "/v1/clusters", b'{"clusterName":"ok\\u0000junk"}', {"Content-Type": "application/json"})
        names = s.cluster_names()
        check("ok" not in names, "the name was cut at the NUL and cluster 'ok' created (answer %r)" % r)
        # Refused where JSON is read (no string may hold a NUL), with the position.
        msg = expect_error(r, 400, "MalformedJSON", "clusterName with an escaped NUL")
        check("byte 18" in msg and "\\u0000" in msg, "message does not say where and what: %r" % msg)
