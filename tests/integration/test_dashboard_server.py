"""The dashboard's server side (issue 16): its files served from the binary
(web/, built in), browser sessions with their CSRF token, the live change
stream, the overview and the paged lists it reads, and the simulated agent's
logs. The tests take web/ as it is: whatever files the dashboard has."""

import gzip
import os
import re
import sqlite3

from harness import Server, check, expect_error, expect_status, timeout, wait_until

WEB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
       "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


def web_files():
    """Every file under web/ the binary serves (README.md is not), by path."""
    out = []
    for root, _, names in os.walk(WEB):
        for n in names:
            path = os.path.relpath(os.path.join(root, n), WEB)
            if path != "README.md":
                out.append(path)
    return sorted(out)


def check_ui_headers(r, what):
    check(r.header("Content-Security-Policy") == CSP, "%s: CSP %r" % (what, r.header("Content-Security-Policy")))
    check(r.header("X-Content-Type-Options") == "nosniff", "%s: no nosniff" % what)
    check(r.header("Referrer-Policy") == "no-referrer", "%s: Referrer-Policy %r" % (what, r.header("Referrer-Policy")))
    check(r.header("X-Frame-Options") == "DENY", "%s: X-Frame-Options %r" % (what, r.header("X-Frame-Options")))


def body_of(r):
    return gzip.decompress(r.body) if r.header("Content-Encoding") == "gzip" else r.body


def build_hash(s):
    """The build hash the server's page names its assets by."""
    r = expect_status(s.request("GET", "/ui/", token=None, headers={"Accept-Encoding": "identity"}), 200, "GET /ui/")
    m = re.search(rb"/ui/assets/([0-9a-f]{16})", r.body)
    if m:
        return m.group(1).decode()
    got = expect_status(s.request("GET", "/v1/version"), 200, "version").json().get("dashboardBuild")
    check(isinstance(got, str) and len(got) == 16, "GET /v1/version has no dashboardBuild: %r" % got)
    return got


def test_root_redirects_to_the_dashboard():
    with Server() as s:
        r = expect_status(s.request("GET", "/", token=None), 302, "GET /")
        check(r.header("Location") == "/ui/", "Location %r" % r.header("Location"))


def test_client_routes_serve_the_page_with_assets_substituted():
    with Server() as s:
        with open(os.path.join(WEB, "index.html"), "rb") as f:
            raw = f.read()
        h = build_hash(s)
        want = raw.replace(b"__ASSETS__", ("/ui/assets/" + h).encode())
        for path in ["/ui/", "/ui", "/ui/nodes", "/ui/tasks/abc", "/ui/clusters/x/services/y"]:
            r = expect_status(s.request("GET", path, token=None, headers={"Accept-Encoding": "identity"}), 200, path)
            check_ui_headers(r, path)
            check(r.header("Content-Type", "").startswith("text/html"), "%s: Content-Type %r" % (path, r.header("Content-Type")))
            check(r.header("Cache-Control") == "no-cache", "%s: Cache-Control %r" % (path, r.header("Cache-Control")))
            check(r.header("Content-Encoding") is None, "%s: compressed for a client that did not ask" % path)
            check(r.body == want, "%s: the page served is not web/index.html with __ASSETS__ replaced" % path)
            check(b"__ASSETS__" not in r.body, "%s: __ASSETS__ left in the page" % path)
        r = expect_status(s.request("HEAD", "/ui/nodes", token=None), 200, "HEAD /ui/nodes")
        check(r.body == b"", "HEAD answered with a body")
        check_ui_headers(r, "HEAD /ui/nodes")


def test_assets_gzip_and_identity_agree_and_etag_gives_304():
    with Server() as s:
        h = build_hash(s)
        types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                 ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json",
                 ".woff2": "font/woff2", ".webmanifest": "application/manifest+json"}
        for path in web_files():
            url = "/ui/assets/%s/%s" % (h, path)
            plain = expect_status(s.request("GET", url, token=None, headers={"Accept-Encoding": "identity"}), 200, url)
            packed = expect_status(s.request("GET", url, token=None, headers={"Accept-Encoding": "gzip, deflate"}),
                                   200, url + " (gzip)")
            for r in (plain, packed):
                check_ui_headers(r, url)
                check(r.header("Cache-Control") == "public, max-age=31536000, immutable",
                      "%s: Cache-Control %r" % (url, r.header("Cache-Control")))
                check("Accept-Encoding" in (r.header("Vary") or ""), "%s: Vary %r" % (url, r.header("Vary")))
                ext = os.path.splitext(path)[1]
                if ext in types:
                    check(r.header("Content-Type", "").startswith(types[ext]),
                          "%s: Content-Type %r" % (url, r.header("Content-Type")))
            check(plain.header("Content-Encoding") is None, "%s: identity answer compressed" % url)
            check(packed.header("Content-Encoding") == "gzip", "%s: gzip not used when asked" % url)
            check(gzip.decompress(packed.body) == plain.body, "%s: gzip and identity bodies differ" % url)
            if path != "index.html":
                with open(os.path.join(WEB, path), "rb") as f:
                    check(plain.body == f.read(), "%s: not the bytes of web/%s" % (url, path))
            for r, enc in ((plain, "identity"), (packed, "gzip")):
                etag = r.header("ETag")
                check(etag and etag.startswith('"'), "%s: no strong ETag: %r" % (url, etag))
                again = s.request("GET", url, token=None, headers={"Accept-Encoding": enc, "If-None-Match": etag})
                expect_status(again, 304, url + " with If-None-Match")
                check(again.body == b"", "a 304 with a body")
            check(plain.header("ETag") != packed.header("ETag"), "%s: one ETag for two encodings" % url)


def test_assets_of_another_build_or_missing_are_404():
    with Server() as s:
        h = build_hash(s)
        other = "0123456789abcdef" if h != "0123456789abcdef" else "fedcba9876543210"
        r = s.request("GET", "/ui/assets/%s/index.html" % other, token=None)
        expect_error(r, 404, "NotFound", "an asset of another build")
        check_ui_headers(r, "404 of another build")
        expect_error(s.request("GET", "/ui/assets/%s/no/such.js" % h, token=None), 404, "NotFound", "a missing asset")
        expect_error(s.request("GET", "/ui/assets/%s/README.md" % h, token=None), 404, "NotFound", "web/README.md")


# --- sessions ---

def make_token(s, role, **extra):
    body = dict(role=role, **extra)
    return expect_status(s.request("POST", "/v1/tokens", body), 201, "create a %s token" % role).json()["token"]


def login(s, secret):
    """POST /v1/session; returns (answer, cookie header value or None)."""
    r = s.request("POST", "/v1/session", {"token": secret}, token=None)
    cookie = None
    set_cookie = r.header("Set-Cookie") or ""
    m = re.match(r"berth_session=([^;]*)", set_cookie)
    if m:
        cookie = "berth_session=" + m.group(1)
    return r, cookie


def with_cookie(cookie, csrf=None, **extra):
    h = {"Cookie": cookie}
    if csrf is not None:
        h["X-CSRF-Token"] = csrf
    h.update(extra)
    return h


def audit_entries(s):
    doc = expect_status(s.request("GET", "/v1/audit?limit=1000"), 200, "audit").json()
    for v in doc.values():
        if isinstance(v, list):
            return v
    return []


def test_a_session_is_a_cookie_that_acts_as_its_token_with_csrf_for_changes():
    with Server() as s:
        deploy = make_token(s, "deploy")
        r, cookie = login(s, deploy["secret"])
        expect_status(r, 201, "login")
        sess = r.json()["session"]
        check(sess["tokenId"] == deploy["id"] and sess["role"] == "deploy", "session: %r" % sess)
        check(sess["clusters"] == [] and sess["repositories"] == [], "limits of an unlimited token: %r" % sess)
        check(isinstance(sess["expiresAt"], str) and sess["csrf"], "session: %r" % sess)
        set_cookie = r.header("Set-Cookie")
        for attr in ("Path=/", "HttpOnly", "SameSite=Strict", "Secure"):
            check(attr in set_cookie.split("; "), "Set-Cookie lacks %s: %r" % (attr, set_cookie))
        max_age = int(re.search(r"Max-Age=(\d+)", set_cookie).group(1))
        check(12 * 3600 - 60 <= max_age <= 12 * 3600, "Max-Age %d is not 12 h" % max_age)
        secret = cookie.split("=", 1)[1]
        check(sess["csrf"] != secret and secret not in sess["csrf"], "the CSRF token gives the cookie away")

        expect_status(s.request("GET", "/v1/clusters", token=None, headers=with_cookie(cookie)), 200, "read by cookie")
        got = expect_status(s.request("GET", "/v1/session", token=None, headers=with_cookie(cookie)), 200).json()
        check(got["session"]["csrf"] == sess["csrf"] and got["session"]["tokenId"] == deploy["id"], "GET: %r" % got)

        make = {"clusterName": "by-session"}
        expect_error(s.request("POST", "/v1/clusters", make, token=None, headers=with_cookie(cookie)),
                     403, "CsrfTokenMissing", "a change without the CSRF token")
        expect_error(s.request("POST", "/v1/clusters", make, token=None, headers=with_cookie(cookie, "0" * 64)),
                     403, "CsrfTokenInvalid", "a change with a wrong CSRF token")
        evil = with_cookie(cookie, sess["csrf"], Origin="https://evil.example")
        expect_error(s.request("POST", "/v1/clusters", make, token=None, headers=evil),
                     403, "CrossOriginRequest", "a change from another origin")
        same = with_cookie(cookie, sess["csrf"], Origin="https://127.0.0.1:%d" % s.port)
        expect_status(s.request("POST", "/v1/clusters", make, token=None, headers=same), 201, "a change by session")
        check("by-session" in s.cluster_names(), "the session's change is not there")

        # The cookie's secret is no bearer token; a session is not listed as a token.
        expect_error(s.request("GET", "/v1/clusters", token=secret), 401, "Unauthorized", "the cookie as a bearer")
        ids = [t["id"] for t in expect_status(s.request("GET", "/v1/tokens"), 200).json()["tokens"]]
        check(not any(i.startswith("session-") for i in ids), "sessions listed among tokens: %r" % ids)

        # The audit log names the session's token.
        actors = [(e.get("actor"), e.get("method"), e.get("path")) for e in audit_entries(s)]
        check((deploy["id"] + " (session)", "POST", "/v1/clusters") in actors, "audit: %r" % actors)
        check((deploy["id"] + " (session)", "POST", "/v1/session") in actors, "login not audited: %r" % actors)


def test_who_may_open_a_session():
    with Server() as s:
        ro = make_token(s, "read-only")
        r, cookie = login(s, ro["secret"])
        expect_status(r, 201, "read-only login")
        sess = r.json()["session"]
        expect_status(s.request("GET", "/v1/clusters", token=None, headers=with_cookie(cookie)), 200)
        expect_error(s.request("POST", "/v1/clusters", {"clusterName": "nope"}, token=None,
                               headers=with_cookie(cookie, sess["csrf"])), 403, "Forbidden", "read-only change")
        agent = make_token(s, "agent")
        r, cookie = login(s, agent["secret"])
        msg = expect_error(r, 403, "Forbidden", "an agent token's login")
        check("admin, deploy and read-only" in msg and cookie is None, "agent login: %r" % msg)
        expect_error(login(s, "berth_not_a_token")[0], 401, "Unauthorized", "a bad token's login")
        expect_error(s.request("POST", "/v1/session", "not json", token=None), 400, "InvalidParameter", "bad body")
        actors = [(e.get("actor"), e.get("path"), e.get("status")) for e in audit_entries(s)]
        check((agent["id"], "/v1/session", 403) in actors, "refused login not audited: %r" % actors)


def test_logout_and_revocation_end_a_session_and_a_restart_does_not():
    with Server() as s:
        deploy = make_token(s, "deploy")
        r1, c1 = login(s, deploy["secret"])
        r2, c2 = login(s, deploy["secret"])
        expect_status(r1, 201)
        expect_status(r2, 201)
        s.stop()
        s.start()
        expect_status(s.request("GET", "/v1/clusters", token=None, headers=with_cookie(c1)), 200, "after a restart")

        out = s.request("DELETE", "/v1/session", token=None, headers=with_cookie(c1, r1.json()["session"]["csrf"]))
        expect_status(out, 200, "logout")
        check("Max-Age=0" in (out.header("Set-Cookie") or ""), "logout keeps the cookie: %r" % out.header("Set-Cookie"))
        expect_error(s.request("GET", "/v1/clusters", token=None, headers=with_cookie(c1)), 401, "Unauthorized",
                     "a logged-out cookie")
        expect_error(s.request("GET", "/v1/session", token=None, headers=with_cookie(c1)), 401, "Unauthorized",
                     "GET /v1/session logged out")
        expect_status(s.request("GET", "/v1/clusters", token=None, headers=with_cookie(c2)), 200, "the other session")
        expect_status(s.request("DELETE", "/v1/tokens/" + deploy["id"]), 200, "revoke")
        expect_error(s.request("GET", "/v1/clusters", token=None, headers=with_cookie(c2)), 401, "Unauthorized",
                     "a session of a revoked token")


def test_a_session_ends_after_the_session_ttl():
    with Server(args=["--session-ttl", "2s"]) as s:
        deploy = make_token(s, "deploy")
        r, cookie = login(s, deploy["secret"])
        expect_status(r, 201)
        max_age = int(re.search(r"Max-Age=(\d+)", r.header("Set-Cookie")).group(1))
        check(max_age <= 2, "Max-Age %d above --session-ttl 2s" % max_age)
        import time
        time.sleep(2.5)
        # SessionExpired while its row is there; once the leader has forgotten
        # it (within a second or so), Unauthorized.
        r = s.request("GET", "/v1/clusters", token=None, headers=with_cookie(cookie))
        code = r.json().get("error", {}).get("code") if r.status == 401 else None
        check(code in ("SessionExpired", "Unauthorized"), "an expired session: %d %r" % (r.status, r.body))


def session_rows(s):
    """The ids of the sessions state.db holds (rows of role session)."""
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(s.data_dir, "state.db"), uri=True)
    try:
        return [r[0] for r in db.execute("SELECT id FROM tokens WHERE parent != '' ORDER BY id")]
    finally:
        db.close()


@timeout(90)
def test_expired_sessions_leave_state_db_and_a_restart_does_not_bring_them_back():
    with Server(args=["--session-ttl", "2s"]) as s:
        deploy = make_token(s, "deploy")
        r, cookie = login(s, deploy["secret"])
        sid = expect_status(r, 201, "login").json()["session"]["id"]
        r, _ = login(s, deploy["secret"])
        expect_status(r, 201, "a second login")
        check(sid in session_rows(s), "the session is not in state.db: %r" % session_rows(s))
        # The leader forgets sessions past their expiry (a tick a second).
        wait_until(lambda: session_rows(s) == [], wait=30, what="the expired sessions' rows removed")
        s.stop()
        s.start()
        check(session_rows(s) == [], "a restart brought sessions back: %r" % session_rows(s))
        expect_error(s.request("GET", "/v1/clusters", token=None, headers=with_cookie(cookie)), 401, "Unauthorized",
                     "a forgotten session's cookie")
        expect_status(s.request("GET", "/v1/clusters", token=deploy["secret"]), 200, "its token still works")


def test_the_audit_filter_by_token_takes_its_sessions_too():
    with Server() as s:
        deploy = make_token(s, "deploy")
        other = make_token(s, "deploy")
        r, cookie = login(s, deploy["secret"])
        csrf = expect_status(r, 201, "login").json()["session"]["csrf"]
        expect_status(s.request("POST", "/v1/clusters", {"clusterName": "by-token"}, token=deploy["secret"]), 201)
        expect_status(s.request("POST", "/v1/clusters", {"clusterName": "by-session"}, token=None,
                                headers=with_cookie(cookie, csrf)), 201)
        expect_status(s.request("POST", "/v1/clusters", {"clusterName": "by-other"}, token=other["secret"]), 201)
        doc = expect_status(s.request("GET", "/v1/audit?token=" + deploy["id"]), 200, "audit by token").json()
        got = [(e["actor"], e["path"]) for e in doc["events"]]
        check((deploy["id"], "/v1/clusters") in got, "the token's own change is missing: %r" % got)
        check((deploy["id"] + " (session)", "/v1/clusters") in got, "its session's change is missing: %r" % got)
        check(all(a in (deploy["id"], deploy["id"] + " (session)") for a, _ in got), "another's entries: %r" % got)


# --- the change stream ---

import json  # noqa: E402
import socket  # noqa: E402

from harness import Agent  # noqa: E402


class EventStream:
    """GET /v1/stream read line by line: `next_event()` gives the next event as a
    dict of its fields (comments under ":"), or None once the server ended it."""

    def __init__(self, s, cluster, headers=None, token="admin", query=""):
        hdrs = dict(headers or {})
        if token == "admin":
            token = s.token
        if token:
            hdrs["Authorization"] = "Bearer " + token
        self.conn = s.http_connection(30)
        self.conn.request("GET", "/v1/stream?cluster=%s%s" % (cluster, query), headers=hdrs)
        self.r = self.conn.getresponse()

    def next_event(self, wait=30):
        self.conn.sock.settimeout(wait)
        ev = {}
        while True:
            try:
                line = self.r.readline()
            except (socket.timeout, TimeoutError):
                raise AssertionError("no event within %ss" % wait)
            if not line:
                return None
            line = line.decode().rstrip("\n")
            if line == "":
                if ev:
                    return ev
                continue
            if line.startswith(":"):
                ev.setdefault(":", []).append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            ev[name] = value[1:] if value.startswith(" ") else value

    def next_change(self, wait=30):
        while True:
            ev = self.next_event(wait)
            check(ev is not None, "the stream ended before a change event")
            if ev.get("event") == "change":
                ev["json"] = json.loads(ev["data"])
                return ev

    def close(self):
        self.conn.close()


def run_node_and_task(s, count=1):
    agent = make_token(s, "agent")
    a = Agent(s, 1, agent["secret"], id_prefix="dash")
    wait_until(lambda: any(n["agentConnected"] for n in
                           s.request("GET", "/v1/nodes").json()["containerInstances"]), wait=30, what="a node")
    body = {"family": "web", "containerDefinitions": [{"name": "main", "image": "busybox:latest",
                                                       "cpu": 128, "memory": 64}]}
    expect_status(s.request("POST", "/v1/taskdefinitions", body), 201, "register web")
    return a


@timeout(60)
def test_the_change_stream_names_tasks_once_a_task_runs():
    with Server() as s:
        with run_node_and_task(s):
            cluster = s.request("GET", "/v1/nodes").json()["containerInstances"][0]["cluster"]
            st = EventStream(s, cluster)
            expect_status(st.r, 200, "open the stream")
            check(st.r.getheader("Content-Type", "").startswith("text/event-stream"), "Content-Type")
            check(st.r.getheader("Cache-Control") == "no-store", "Cache-Control %r" % st.r.getheader("Cache-Control"))
            first = st.next_event()
            check(first.get("retry") == "2000", "the stream does not start with retry: 2000: %r" % first)
            expect_status(s.request("POST", "/v1/tasks", {"taskDefinition": "web", "cluster": cluster}), 200, "run")
            while True:
                ev = st.next_change()
                epoch, _, seq = ev["id"].partition("-")
                check(epoch.isdigit() and seq.isdigit() and int(seq) == ev["json"]["seq"], "event id %r" % ev)
                if "tasks" in ev["json"]["changed"]:
                    check(ev["json"]["tasks"] >= 1, "a task changed but tasks is %r" % ev["json"])
                    break
            st.close()


def test_last_event_id_resumes_or_says_everything_changed():
    with Server() as s:
        expect_status(s.create_cluster("c1"), 201)
        st = EventStream(s, "c1")
        check(st.next_event().get("retry") == "2000", "retry first")
        expect_status(s.create_cluster("c2"), 201)
        ev = st.next_change()
        check(ev["json"]["changed"] == ["clusters"], "creating a cluster: %r" % ev["json"])
        last = ev["id"]
        st.close()

        # Up to date: nothing until the next change, which names only what changed.
        st = EventStream(s, "c1", headers={"Last-Event-ID": last})
        check(st.next_event().get("retry") == "2000", "retry first")
        expect_status(s.create_cluster("c3"), 201)
        ev = st.next_change()
        check(ev["json"]["changed"] == ["clusters"], "an up-to-date client was told more: %r" % ev["json"])
        check(ev["json"]["seq"] > int(last.split("-")[1]), "seq did not grow: %r after %s" % (ev, last))
        st.close()

        # Another epoch (a restarted server), or an older event: everything changed, at once.
        for stale in ("1-0", "%s-0" % last.split("-")[0]):
            st = EventStream(s, "c1", query="&lastEventId=" + stale)
            check(st.next_event().get("retry") == "2000", "retry first")
            ev = st.next_change()
            check(ev["json"]["changed"] == ["nodes", "tasks", "services", "taskdefinitions", "repositories",
                                            "clusters"], "stale id %s: %r" % (stale, ev["json"]))
            st.close()
        expect_error(s.request("GET", "/v1/stream?cluster=nope"), 404, "ClusterNotFound", "a stream of no cluster")
        expect_error(s.request("GET", "/v1/stream"), 400, "InvalidParameter", "a stream without a cluster")


def test_the_change_stream_keeps_alive_and_closes_on_logout():
    with Server(args=["--stream-keepalive", "200ms"]) as s:
        expect_status(s.create_cluster("c1"), 201)
        ro = make_token(s, "read-only")
        r, cookie = login(s, ro["secret"])
        csrf = expect_status(r, 201).json()["session"]["csrf"]
        st = EventStream(s, "c1", headers={"Cookie": cookie}, token=None)
        expect_status(st.r, 200, "a stream by session")
        check(st.next_event().get("retry") == "2000", "retry first")
        ev = st.next_event()
        check("keepalive" in ev.get(":", []), "expected a keepalive comment: %r" % ev)
        expect_status(s.request("DELETE", "/v1/session", token=None, headers=with_cookie(cookie, csrf)), 200)
        while True:
            ev = st.next_event()
            if ev is None:
                break
            check(list(ev) == [":"], "after logout: %r" % ev)
        st.close()


@timeout(90)
def test_a_change_stream_ends_at_its_sessions_expiry_not_at_the_next_keepalive():
    with Server(args=["--session-ttl", "3s", "--stream-keepalive", "60s"]) as s:
        expect_status(s.create_cluster("c1"), 201)
        ro = make_token(s, "read-only")
        r, cookie = login(s, ro["secret"])
        expect_status(r, 201, "login")
        st = EventStream(s, "c1", headers={"Cookie": cookie}, token=None)
        expect_status(st.r, 200, "a stream by session")
        check(st.next_event().get("retry") == "2000", "retry first")
        # The next keepalive is a minute away; the session ends in 3 s.
        ev = st.next_event(wait=30)
        check(ev is None, "the stream went on past its session's expiry: %r" % ev)
        st.close()


@timeout(90)
def test_a_change_stream_ends_when_its_bearer_token_expires():
    with Server(args=["--stream-keepalive", "60s"]) as s:
        expect_status(s.create_cluster("c1"), 201)
        ro = make_token(s, "read-only", ttlSeconds=3)
        st = EventStream(s, "c1", token=ro["secret"])
        expect_status(st.r, 200, "a stream by a token that expires")
        check(st.next_event().get("retry") == "2000", "retry first")
        ev = st.next_event(wait=30)
        check(ev is None, "the stream went on past its token's expiry: %r" % ev)
        st.close()


def test_a_token_past_its_bound_of_streams_is_told_429():
    with Server(args=["--max-streams-per-token", "2"]) as s:
        expect_status(s.create_cluster("c1"), 201)
        ro = make_token(s, "read-only")
        held = [EventStream(s, "c1", token=ro["secret"]) for _ in range(2)]
        for st in held:
            expect_status(st.r, 200, "a stream within the bound")
            check(st.next_event().get("retry") == "2000", "retry first")
        over = EventStream(s, "c1", token=ro["secret"])
        check(over.r.status == 429, "a third stream of one token: status %d" % over.r.status)
        check(over.r.getheader("Retry-After") == "5", "Retry-After %r" % over.r.getheader("Retry-After"))
        err = json.loads(over.r.read())["error"]
        check(err["code"] == "TooManyStreams" and ro["id"] in err["message"], "429: %r" % err)
        over.close()
        # The bound is per token: the admin's stream opens.
        admin = EventStream(s, "c1")
        expect_status(admin.r, 200, "another token's stream")
        admin.close()
        # One closed, the token may open another.
        held.pop().close()

        def reopened():
            st = EventStream(s, "c1", token=ro["secret"])
            if st.r.status == 200:
                held.append(st)
                return True
            st.close()
            return False
        wait_until(reopened, wait=30, what="a stream in the place of a closed one")
        for st in held:
            st.close()


# --- the overview and paged lists ---

def registered(n, name):
    return [r["integerValue"] for r in n["registeredResources"] if r["name"] == name][0]


@timeout(90)
def test_the_overview_adds_up_nodes_tasks_and_services():
    with Server(args=["--heartbeat-interval", "500ms"]) as s:
        agent = make_token(s, "agent")
        with Agent(s, 3, agent["secret"], id_prefix="ov"):
            wait_until(lambda: sum(n["agentConnected"] for n in
                                   s.request("GET", "/v1/nodes").json()["containerInstances"]) == 3,
                       wait=30, what="3 nodes")
            nodes = s.request("GET", "/v1/nodes").json()["containerInstances"]
            cluster = nodes[0]["cluster"]
            version = s.request("GET", "/v1/version").json()["version"]
            check(all(n["agentVersion"] == version and n["lastHeartbeatAt"] for n in nodes),
                  "nodes' agent versions and heartbeats: %r" % [(n.get("agentVersion"), n.get("lastHeartbeatAt"))
                                                                for n in nodes])
            body = {"family": "web", "containerDefinitions": [{"name": "main", "image": "busybox:latest",
                                                               "cpu": 128, "memory": 64}]}
            expect_status(s.request("POST", "/v1/taskdefinitions", body), 201)
            expect_status(s.request("POST", "/v1/tasks", {"taskDefinition": "web", "cluster": cluster, "count": 2}),
                          200, "run 2")
            expect_status(s.request("POST", "/v1/services", {"serviceName": "svc", "taskDefinition": "web",
                                                             "desiredCount": 1, "cluster": cluster}), 201, "service")

            def overview():
                return expect_status(s.request("GET", "/v1/overview?cluster=" + cluster), 200, "overview").json()

            wait_until(lambda: overview()["tasks"]["running"] == 3 and overview()["services"][0]["steady"],
                       wait=60, what="3 running tasks and a steady service")
            ov = overview()
            check(ov["cluster"] == cluster, "cluster %r" % ov)
            check(ov["nodes"]["total"] == 3 and ov["nodes"]["active"] == 3 and ov["nodes"]["connected"] == 3
                  and ov["nodes"]["disconnected"] == 0, "nodes %r" % ov["nodes"])
            check(ov["resources"]["cpu"]["registered"] == sum(registered(n, "CPU") for n in nodes),
                  "cpu registered %r" % ov["resources"])
            check(ov["resources"]["memory"]["registered"] == sum(registered(n, "MEMORY") for n in nodes),
                  "memory registered %r" % ov["resources"])
            check(ov["resources"]["cpu"]["allocated"] == 3 * 128 and ov["resources"]["memory"]["allocated"] == 3 * 64,
                  "allocated %r" % ov["resources"])
            check(sum(z["nodes"] for z in ov["zones"]) == 3, "zones %r" % ov["zones"])
            check(ov["tasks"]["pending"] == 0 and ov["tasks"]["stoppedLastHour"] == 0, "tasks %r" % ov["tasks"])
            svc = ov["services"][0]
            check(ov["servicesTotal"] == 1 and svc["serviceName"] == "svc" and svc["desiredCount"] == 1
                  and svc["runningCount"] == 1 and svc["taskDefinition"] == "web:1", "services %r" % ov["services"])
            check(ov["events"] and all(e["service"] == "svc" for e in ov["events"]), "events %r" % ov["events"])
            times = [e["createdAt"] for e in ov["events"]]
            check(times == sorted(times, reverse=True), "events not newest first: %r" % times)
            expect_error(s.request("GET", "/v1/overview"), 400, "InvalidParameter", "an overview without cluster")

            # Paging and filters of the lists the dashboard reads.
            got, token = [], None
            while True:
                doc = expect_status(s.request("GET", "/v1/nodes?maxResults=2" +
                                              ("&nextToken=" + token if token else "")), 200).json()
                check(doc["total"] == 3 and len(doc["containerInstances"]) <= 2, "a page: %r" % doc)
                got += [n["nodeId"] for n in doc["containerInstances"]]
                token = doc.get("nextToken")
                if not token:
                    break
            check(sorted(got) == sorted(n["nodeId"] for n in nodes), "paged nodes %r" % got)
            doc = s.request("GET", "/v1/nodes?q=" + nodes[1]["nodeId"]).json()
            check([n["nodeId"] for n in doc["containerInstances"]] == [nodes[1]["nodeId"]] and doc["total"] == 1,
                  "q=: %r" % doc)
            doc = s.request("GET", "/v1/nodes?status=DRAINING").json()
            check(doc["containerInstances"] == [] and doc["total"] == 0, "status=DRAINING: %r" % doc)
            doc = s.request("GET", "/v1/services?cluster=%s&maxResults=1" % cluster).json()
            check(len(doc["services"]) == 1 and doc["total"] == 1 and "nextToken" not in doc, "services %r" % doc)
            doc = s.request("GET", "/v1/tasks?lastStatus=RUNNING&cluster=" + cluster).json()
            check(doc["total"] == 3 and all(t["lastStatus"] == "RUNNING" for t in doc["tasks"]), "tasks %r" % doc)
            doc = s.request("GET", "/v1/tasks?lastStatus=STOPPED&cluster=" + cluster).json()
            check(doc["total"] == 0, "no stopped tasks: %r" % doc)


# --- the simulated agent's logs ---

@timeout(60)
def test_the_simulated_agent_answers_log_requests_and_follows():
    with Server() as s:
        with run_node_and_task(s):
            r = expect_status(s.request("POST", "/v1/tasks", {"taskDefinition": "web"}), 200, "run").json()
            task_id = r["tasks"][0]["taskArn"].rsplit("/", 1)[-1]
            wait_until(lambda: s.request("GET", "/v1/tasks/" + task_id).json()["task"]["lastStatus"] == "RUNNING",
                       wait=30, what="the task running")
            body = expect_status(s.request("GET", "/v1/tasks/%s/logs" % task_id), 200, "logs").body.decode()
            lines = body.splitlines()
            check(len(lines) == 3 and all(("task %s container main: tick %d" % (task_id, i)) in lines[i]
                                          for i in range(3)), "the log: %r" % body)
            body = expect_status(s.request("GET", "/v1/tasks/%s/logs?tail=1" % task_id), 200, "tail").body.decode()
            check(len(body.splitlines()) == 1 and "tick 2" in body, "tail=1 keeps the newest line: %r" % body)
            check(expect_status(s.request("GET", "/v1/tasks/%s/logs?tail=0" % task_id), 200, "tail 0").body == b"",
                  "tail=0 sends no line")
            conn = s.http_connection(30)
            conn.request("GET", "/v1/tasks/%s/logs?follow=true" % task_id,
                         headers={"Authorization": "Bearer " + s.token})
            resp = conn.getresponse()
            expect_status(resp, 200, "follow")
            seen = []
            while not any("tick 4" in line for line in seen):
                line = resp.readline().decode()
                check(line, "the followed log ended: %r" % seen)
                seen.append(line)
            conn.close()
            check(all(("tick %d" % i) in seen[i] for i in range(5)), "lines in order: %r" % seen)
            expect_status(s.request("GET", "/v1/tasks/%s/logs?container=nope" % task_id), 404, "no such container")


# --- sessions on a cluster of servers, and login failures ---

@timeout(120)
def test_a_session_opened_on_a_follower_works_everywhere_and_its_changes_say_where_the_leader_is():
    from test_cluster import leader_of, three_servers
    servers = three_servers()
    try:
        leader = leader_of(servers)
        follower = [x for x in servers if x is not leader][0]
        other = [x for x in servers if x is not leader and x is not follower][0]
        deploy = make_token(leader, "deploy")
        wait_until(lambda: follower.request("GET", "/v1/clusters", token=deploy["secret"]).status == 200,
                   wait=30, what="the token on the follower")
        r, cookie = login(follower, deploy["secret"])
        sess = expect_status(r, 201, "login on a follower").json()["session"]
        for s in servers:
            wait_until(lambda: s.request("GET", "/v1/clusters", token=None, headers=with_cookie(cookie)).status == 200,
                       wait=30, what="the session on every server")
        r = follower.request("POST", "/v1/clusters", {"clusterName": "x"}, token=None,
                             headers=with_cookie(cookie, sess["csrf"]))
        expect_error(r, 421, "NotLeader", "a session's change on a follower")
        check(r.json()["error"]["leader"] == leader.url, "the leader named: %r (leader %s)" % (r.json(), leader.url))
        expect_status(leader.request("POST", "/v1/clusters", {"clusterName": "x"}, token=None,
                                     headers=with_cookie(cookie, sess["csrf"])), 201, "the change on the leader")
        expect_status(other.request("DELETE", "/v1/session", token=None, headers=with_cookie(cookie, sess["csrf"])),
                      200, "logout on a follower")
        for s in servers:
            wait_until(lambda: s.request("GET", "/v1/clusters", token=None, headers=with_cookie(cookie)).status == 401,
                       wait=30, what="the session ended on every server")
    finally:
        for s in servers:
            s.kill()


def test_failed_logins_count_towards_the_per_address_bound():
    with Server(args=["--limit-loopback", "--auth-failures-per-minute", "3"]) as s:
        for i in range(3):
            expect_error(login(s, "berth_not_a_token_%d" % i)[0], 401, "Unauthorized", "bad login %d" % i)
        r = login(s, "berth_not_a_token")[0]
        expect_error(r, 429, "TooManyAuthenticationFailures", "a login past the bound")
        check(r.header("Retry-After"), "429 without Retry-After")
