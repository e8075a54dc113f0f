"""A history checker in the style of Jepsen (issue 13): three servers on loopback,
concurrent clients that create and delete clusters, set services' desired counts
and push tags, a nemesis that kills (-9) and freezes (SIGSTOP) servers, then a
check of the whole history with history.py: every acknowledged write is there
afterwards, nothing refused shows, and the reads that must be linearizable are.

First the checker itself on hand-made histories, so it can be seen to fail.

Environment: BERTH_HISTORY_SEED replays a run's random choices (the seed is
printed; timing still differs from run to run), BERTH_HISTORY_OPS the number of
operations (default 500), BERTH_HISTORY_REGISTRY=0 leaves the tag pushes out.

What counts as what, client side (the outcome of each operation):
- a refused connection, or a TLS handshake that did not finish: nothing was
  sent, `fail`; the client tries another server next time;
- 307 NotLeader: followed to its Location (the same operation), at most 3 hops;
  a 307 not followed is `fail`;
- 503 NoLeader (the gate, before the change was taken): `fail`;
- 503 NotLeader or "the change was not made" (a proposal refused before the log
  took it), 500/507 storage errors ("nothing was changed"): `fail`, as the
  server says so (the check holds the server to that word); 503 LeadershipLost
  (a proposal dropped once in the log: the next leader may still make it) is
  `info`;
- any other 4xx is a refusal, `fail` (409 ClusterAlreadyExists and 404
  ClusterNotFound are answers: a create that found the name taken, a delete
  that found nothing);
- a timeout or a reset once the request was sent, any other 5xx: `info`.
A client's next operation after a fail or info is a new one, on another server.

The registry on a follower sends its commands to the leader (docs/registry.md);
a registry change refused with "the change was not made" is a `fail`, and the
client then asks that server who leads (GET /v1/servers). Tags name OCI indexes of one base image
pushed at the start, so no blob needs to be on the server that takes the push.

Reads: only a read the server says it served as the leader holding its lease
(answer header `Berth-Read: leader`) must be linearizable; any other read may be
stale and only has to show a value some write that did not fail wrote, and not
one written after it completed. While no server sends `Berth-Read`, the reads
held to linearizability are the final ones, made from the leader after the heal
and after a write of its own term committed (so it has applied everything
acknowledged before).
"""

import base64
import hashlib
import http.client
import json
import os
import random
import re
import signal
import ssl
import threading
import time
import urllib.parse

import history as H
from harness import check, timeout, wait_until
from test_cluster import three_servers

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
REPO = "hist/app"
CLUSTER_KEYS = ["hist-c%d" % i for i in range(4)]
SERVICE_KEYS = ["svc%d" % i for i in range(2)]
TAG_KEYS = ["t%d" % i for i in range(2)]
CONNECT_WAIT = 2.0  # a TCP connect and TLS handshake: longer means frozen or gone
ANSWER_WAIT = 10.0  # an answer once sent: longer is `info`


# --- the checker on hand-made histories ---


def _w(p, k, v, a, b, outcome=H.OK):
    return H.Op(p, H.WRITE, k, value=v, invoke=a, complete=b, outcome=outcome)


def _r(p, k, v, a, b, lin=True):
    return H.Op(p, H.READ, k, result=v, invoke=a, complete=b, linearizable=lin)


def test_history_checker_passes_a_linearizable_history():
    # Two overlapping writes seen in one order, then the other; an info write that
    # lands late; a create that finds the name taken; a stale read allowed.
    ops = [_w(1, "k", 1, 0, 1), _w(2, "k", 2, 0.5, 2), _r(3, "k", 1, 1.5, 3), _r(3, "k", 2, 3.5, 4),
           _w(4, "k", 3, 4.5, None, H.INFO), _r(1, "k", 2, 5, 6), _r(2, "k", 3, 7, 8), _r(4, "k", 1, 9, 10, lin=False),
           H.Op(1, H.CREATE, "c", value="present", result="created", invoke=0, complete=1),
           H.Op(2, H.CREATE, "c", value="present", result="exists", invoke=0.5, complete=1.5),
           H.Op(3, H.DELETE, "c", result="deleted", invoke=2, complete=3, outcome=H.INFO),
           H.Op(3, H.DELETE, "c", result="absent", invoke=4, complete=5),
           H.Op(4, H.CREATE, "c", value="present", invoke=6, complete=7, outcome=H.FAIL),
           _r(1, "c", None, 8, 9)]
    for key, res in H.check_history(ops).items():
        check(res.valid is True, "%s: %r stuck at %r" % (key, res, res.stuck))
    check(not H.check_reads_come_from_writes([o for o in ops if o.key == "k"]), "reads come from writes")


def test_history_checker_fails_a_stale_read():
    ops = [_w(1, "k", 1, 0, 1), _w(2, "k", 2, 1.5, 2), _r(3, "k", 1, 2.5, 3)]
    check(H.check_key(ops).valid is False, "a read of 1 after 2 was acknowledged is stale")
    ops[-1].linearizable = False
    check(H.check_key(ops).valid is True, "unless stale reads are allowed (a follower's)")


def test_history_checker_fails_a_lost_acknowledged_write():
    ops = [_w(1, "k", 1, 0, 1), _w(2, "k", 2, 1.5, 2), _r(3, "k", 1, 5, 6)]
    check(H.check_key(ops).valid is False, "the acknowledged write 2 is lost")
    check(H.lost_acknowledged_writes(ops, ops[-1]) == [ops[1]], "lost: %r" % H.lost_acknowledged_writes(ops, ops[-1]))
    ops = [H.Op(1, H.CREATE, "c", value="present", result="created", invoke=0, complete=1),
           H.Op(2, H.READ, "c", result=None, invoke=2, complete=3)]
    check(H.check_key(ops).valid is False, "an acknowledged create lost")
    ops = [H.Op(1, H.CREATE, "c", value="present", result="created", invoke=0, complete=1),
           H.Op(2, H.DELETE, "c", result="deleted", invoke=2, complete=3),
           H.Op(2, H.READ, "c", result="present", invoke=4, complete=5)]
    check(H.check_key(ops).valid is False, "an acknowledged delete lost")


def test_history_checker_fails_a_refused_write_that_shows():
    ops = [_w(1, "k", 1, 0, 1), _w(2, "k", 2, 1.5, 2, H.FAIL), _r(3, "k", 2, 2.5, 3, lin=False)]
    bad = H.check_reads_come_from_writes(ops)
    check(len(bad) == 1 and "refused" in bad[0][1], "even a stale read may not show a refused write: %r" % bad)
    ops[-1].linearizable = True
    check(H.check_key(ops).valid is False, "nor a linearizable one")
    ops = [H.Op(1, H.CREATE, "c", value="present", invoke=0, complete=1, outcome=H.FAIL),
           H.Op(2, H.READ, "c", result="present", invoke=2, complete=3)]
    check(H.check_key(ops).valid is False, "a refused create that shows")
    # A read of a value written after it completed (from the future).
    ops = [_r(3, "k", 7, 0, 1, lin=False), _w(1, "k", 7, 2, 3)]
    check(H.check_reads_come_from_writes(ops), "a read from the future")


def test_history_checker_shrinks_and_bounds():
    ops = [_w(p, "k", p, p * 0.1, p * 0.1 + 5) for p in range(10)]
    ops += [_r(11, "k", 3, 6, 7), _r(12, "k", 4, 8, 9), _r(13, "k", 3, 10, 11)]
    check(H.check_key(ops).valid is False, "3, 4, then 3 again")
    small = H.shrink(ops)
    check(len(small) <= 5, "a small slice: %r" % small)
    check(H.check_key(small).valid is False, "the slice still fails")
    check(H.check_key(ops, max_steps=5).valid is None, "a bounded search says it does not know")


def test_history_checker_reports_a_violation_with_what_explains_it():
    # As the cluster test would see it: a change refused with 503 NotLeader ("the
    # change was not made") that the final read from the leader shows.
    ops = [H.Op("setup", H.WRITE, "service/a", value=0, invoke=-1, complete=0),
           _w(1, "service/a", 5, 1, 2), _w(2, "service/a", 6, 3, 4, H.FAIL), _r(3, "service/a", 6, 5, 6, lin=False),
           _r(4, "service/a", 5, 7, 8, lin=False), _w(1, "service/a", 7, 9, None, H.INFO)]
    ops[2].note = "503 NotLeader"
    ops.append(H.Op("final", H.READ, "service/a", result=6, invoke=10, complete=11, note="200 final"))
    problems = judge(ops, say=lambda text: None)
    check(len(problems) == 3, "two reads of a refused write, and the key not linearizable: %r" % problems)
    text = problems[-1]
    check("service/a is not linearizable" in text and "final" in text and "503 NotLeader" in text, text)


def _brute_force(ops, state=None):
    """Linearizable by trying every order: an op may go next unless an ok op still
    to place completed before it was invoked; info ops may be left out."""
    if not any(o.outcome == H.OK for o in ops):
        return True
    for op in ops:
        if any(q is not op and q.outcome == H.OK and q.complete < op.invoke for q in ops):
            continue
        accepted, new_state = H.step(state, op)
        if accepted and _brute_force([o for o in ops if o is not op], new_state):
            return True
    return False


def _random_history(rng):
    """Three processes, two or three ops each on one register, with results from a
    real order of effects; then sometimes a result changed or an outcome made info
    or fail, which may or may not leave it linearizable."""
    ops, effects = [], []
    for p in range(3):
        t = rng.uniform(0, 1)
        for _ in range(rng.randint(2, 3)):
            kind = rng.choice([H.READ, H.READ, H.WRITE, H.CREATE, H.DELETE])
            a = round(t, 1)  # coarse times, so that some ends and starts tie
            b = round(a + rng.uniform(0.1, 2), 1)
            value = {H.WRITE: rng.randint(1, 3), H.CREATE: "present"}.get(kind)
            op = H.Op(p, kind, "k", value=value, invoke=a, complete=b)
            ops.append(op)
            effects.append((rng.uniform(a, b), op))
            t = b + rng.uniform(0, 0.5)
    state = None
    for _, op in sorted(effects, key=lambda e: e[0]):
        if op.kind == H.READ:
            op.result = state
        elif op.kind == H.CREATE:
            op.result = "created" if state is None else "exists"
        elif op.kind == H.DELETE:
            op.result = "deleted" if state is not None else "absent"
        _, state = H.step(state, op)
    for op in ops:
        x = rng.random()
        if x < 0.1:
            op.outcome, op.complete = H.INFO, None
        elif x < 0.2:
            op.outcome = H.FAIL
        elif x < 0.3 and op.kind == H.READ:
            op.result = rng.choice([None, 1, 2, 3, "present"])
    return ops


def test_history_checker_agrees_with_a_brute_force_search():
    rng = random.Random(7)
    verdicts = {True: 0, False: 0}
    for _ in range(400):
        ops = _random_history(rng)
        want = _brute_force(H.searched_ops(ops))
        got = H.check_key(ops).valid
        check(got is want, "the search says %r, every order tried says %r:\n%s"
              % (got, want, "\n".join(map(repr, ops))))
        verdicts[want] += 1
    check(verdicts[True] > 50 and verdicts[False] > 50, "both verdicts met: %r" % verdicts)


# --- a client of the cluster ---


class Answer:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def code(self):
        """The error code of a native ({"error":{"code"}}) or OCI ({"errors":[...]}) error."""
        try:
            doc = json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return ""
        if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
            return doc["error"].get("code", "")
        if isinstance(doc, dict) and isinstance(doc.get("errors"), list) and doc["errors"]:
            e = doc["errors"][0]
            return "%s: %s" % (e.get("code", ""), e.get("message", ""))
        return ""


class NotSent(Exception):
    """The request never left: the connection or the TLS handshake failed."""


class MaybeSent(Exception):
    """The request was (perhaps partly) sent, and no full answer came."""


class Cluster:
    """The servers, the admin token, and one request at a time to any of them."""

    def __init__(self, servers, token):
        self.servers = servers
        self.token = token
        self.ctx = ssl.create_default_context(cafile=servers[0].ca_file)
        self.lock = threading.Lock()
        self.in_flight = {}  # port -> changes sent there without an answer yet

    def by_port(self, port):
        for s in self.servers:
            if s.port == port:
                return s
        return None

    def send(self, s, method, path, body=None, headers=None):
        """One request on a new connection; raises NotSent or MaybeSent."""
        hdrs = dict(headers or {})
        if path.startswith("/v2/"):
            hdrs.setdefault("Authorization", "Basic " + base64.b64encode(("x:" + self.token).encode()).decode())
        else:
            hdrs.setdefault("Authorization", "Bearer " + self.token)
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPSConnection(s.host, s.port, timeout=CONNECT_WAIT, context=self.ctx)
        try:
            try:
                conn.connect()
            except (OSError, ssl.SSLError) as e:
                raise NotSent("%s: %s" % (type(e).__name__, e))
            conn.sock.settimeout(ANSWER_WAIT)
            change = method not in ("GET", "HEAD")
            if change:
                with self.lock:
                    self.in_flight[s.port] = self.in_flight.get(s.port, 0) + 1
            try:
                conn.request(method, path, body=body, headers=hdrs)
                r = conn.getresponse()
                return Answer(r.status, r.getheaders(), r.read())
            except (OSError, ssl.SSLError, http.client.HTTPException) as e:
                raise MaybeSent("%s: %s" % (type(e).__name__, e))
            finally:
                if change:
                    with self.lock:
                        self.in_flight[s.port] -= 1
        finally:
            conn.close()

    def wait_for_a_change_in_flight(self, s, wait):
        """Waits up to `wait` seconds for a change sent to `s` that has no answer
        yet (the nemesis strikes then, for faults to meet writes)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.in_flight.get(s.port, 0) > 0:
                return True
            time.sleep(0.001)
        return False

    def leader_named_by(self, s):
        """The server `s` says leads (GET /v1/servers), or None."""
        try:
            v = json.loads(self.send(s, "GET", "/v1/servers").body)
            address = [x["address"] for x in v["servers"] if x["id"] == v["leaderId"] and not x.get("self")]
        except (NotSent, MaybeSent, ValueError, KeyError):
            return None
        return self.by_port(int(address[0].rsplit(":", 1)[1])) if address else None

    def leader(self, skip=()):
        """The live server that says it leads (the highest term if several do), or None."""
        best, term = None, -1
        for s in self.servers:
            if not s.alive() or s in skip:
                continue
            try:
                a = self.send(s, "GET", "/v1/servers")
                v = json.loads(a.body)
            except (NotSent, MaybeSent, ValueError):
                continue
            if a.status == 200 and v.get("leader") and v.get("term", 0) > term:
                best, term = s, v["term"]
        return best


def classify_write(a):
    """(outcome, result or None, note) for a write's final answer (not a 307)."""
    code = a.code()
    note = "%d %s" % (a.status, code[:80])
    if 200 <= a.status < 300:
        return H.OK, None, "%d" % a.status
    if a.status == 409 and code == "ClusterAlreadyExists":
        return H.OK, "exists", note
    if a.status == 404 and code == "ClusterNotFound":
        return H.OK, "absent", note
    if 400 <= a.status < 500:
        return H.FAIL, None, note
    if a.status == 503 and (code == "NoLeader" or code == "NotLeader" or "the change was not made" in code):
        return H.FAIL, None, note
    if a.status in (500, 507) and ("could not be stored" in code or code.startswith("Storage")):
        return H.FAIL, None, note
    return H.INFO, None, note


class Client:
    """One process of the history: runs operations one after another, sending
    writes to the server it believes leads and following 307s."""

    def __init__(self, n, cluster, rng, t0, kinds):
        self.n = n
        self.c = cluster
        self.rng = rng
        self.t0 = t0
        self.kinds = kinds
        self.guess = cluster.servers[0]
        self.read_headers = 0  # reads answered with Berth-Read

    def now(self):
        return time.monotonic() - self.t0

    def other(self, s):
        return self.rng.choice([x for x in self.c.servers if x is not s])

    def write(self, op, method, path, body=None, headers=None, on_ok=None):
        """Runs a change; fills `op`'s outcome, result and times."""
        s = self.guess
        op.invoke = self.now()
        hops = []
        try:
            for _ in range(4):
                a = self.c.send(s, method, path, body, headers)
                if a.status != 307:
                    break
                loc = urllib.parse.urlsplit(a.headers.get("location", ""))
                nxt = self.c.by_port(loc.port)
                hops.append("307 from :%d" % s.port)
                if nxt is None:
                    break
                s = self.guess = nxt
            if a.status == 307:
                op.outcome, op.note = H.FAIL, "307 not followed"
            else:
                op.outcome, result, op.note = classify_write(a)
                if op.outcome == H.OK:
                    op.result = result if result is not None else on_ok(a)
                if op.outcome != H.OK or (a.status >= 500):
                    # The registry on a follower answers 503 without a Location
                    # (its writes are not sent on yet): ask that server who leads.
                    self.guess = (self.c.leader_named_by(s) if "not the cluster's leader" in a.code() else None) \
                        or self.other(s)
        except NotSent as e:
            op.outcome, op.note = H.FAIL, "not sent to :%d (%s)" % (s.port, str(e)[:60])
            self.guess = self.other(s)
        except MaybeSent as e:
            op.outcome, op.note = H.INFO, "no answer from :%d (%s)" % (s.port, str(e)[:60])
            self.guess = self.other(s)
        op.complete = self.now() if op.outcome != H.INFO else None
        op.note = "; ".join(hops + [op.note]) + " @:%d" % s.port
        return op

    def read(self, op, s, path, parse, headers=None, final=False):
        """Runs a read against `s`; `parse(answer)` gives the value or raises ValueError."""
        op.invoke = self.now()
        try:
            a = self.c.send(s, "GET", path, headers=headers)
            op.result = parse(a)
            op.outcome = H.OK
            how = a.headers.get("berth-read")
            if how is not None:
                self.read_headers += 1
            op.linearizable = final or how == "leader"
            op.note = "%d @:%d%s%s" % (a.status, s.port, " Berth-Read: %s" % how if how else "",
                                       " final" if final else "")
        except (NotSent, MaybeSent, ValueError) as e:
            op.outcome, op.note = H.FAIL, "read: %s @:%d" % (str(e)[:60], s.port)
        op.complete = self.now()
        return op

    # --- the operations, one per kind ---

    def create_cluster(self, name):
        op = H.Op(self.n, H.CREATE, "cluster/" + name, value="present")
        return self.write(op, "POST", "/v1/clusters", {"clusterName": name}, on_ok=lambda a: "created")

    def delete_cluster(self, name):
        op = H.Op(self.n, H.DELETE, "cluster/" + name)
        return self.write(op, "DELETE", "/v1/clusters/" + name, on_ok=lambda a: "deleted")

    def read_cluster(self, name, s, final=False):
        def parse(a):
            if a.status == 200:
                return "present"
            if a.status == 404 and a.code() == "ClusterNotFound":
                return None
            raise ValueError("%d %s" % (a.status, a.code()))

        return self.read(H.Op(self.n, H.READ, "cluster/" + name), s, "/v1/clusters/" + name, parse, final=final)

    def set_desired(self, name, value):
        op = H.Op(self.n, H.WRITE, "service/" + name, value=value)
        return self.write(op, "PATCH", "/v1/services/%s?cluster=hist" % name, {"desiredCount": value},
                          on_ok=lambda a: None)

    def read_desired(self, name, s, final=False):
        def parse(a):
            if a.status != 200:
                raise ValueError("%d %s" % (a.status, a.code()))
            return json.loads(a.body)["service"]["desiredCount"]

        return self.read(H.Op(self.n, H.READ, "service/" + name), s, "/v1/services/%s?cluster=hist" % name, parse,
                         final=final)

    def push_tag(self, tag, base, unique):
        body = index_manifest(base, unique)
        op = H.Op(self.n, H.WRITE, "tag/" + tag, value=digest_of(body))
        return self.write(op, "PUT", "/v2/%s/manifests/%s" % (REPO, tag), body,
                          headers={"Content-Type": OCI_INDEX}, on_ok=lambda a: None)

    def read_tag(self, tag, s, final=False):
        def parse(a):
            if a.status == 200:
                return a.headers.get("docker-content-digest")
            if a.status == 404 and a.code().startswith("MANIFEST_UNKNOWN"):
                return None
            raise ValueError("%d %s" % (a.status, a.code()[:60]))

        return self.read(H.Op(self.n, H.READ, "tag/" + tag), s, "/v2/%s/manifests/%s" % (REPO, tag), parse,
                         headers={"Accept": OCI_INDEX + ", " + OCI_MANIFEST}, final=final)


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def index_manifest(base, unique):
    """An OCI index naming the base image, unique by its annotation: it references
    no blob, so any server may take it whatever blobs its disk holds."""
    digest, size = base
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                       "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": size}],
                       "annotations": {"berth.test/write": str(unique)}}).encode()


# --- the run ---


def form_cluster():
    servers = three_servers()
    return servers, servers[0].token


def expect(a, status, what):
    check(a.status == status, "%s: %d %r" % (what, a.status, a.body[:300]))
    return a


def set_up(c, leader, registry):
    """The cluster of the services, the services at desired count 0, and the base
    image the tags' indexes name. Returns the base image's (digest, size) or None."""
    expect(c.send(leader, "POST", "/v1/clusters", {"clusterName": "hist"}), 201, "the services' cluster")
    td = {"family": "hist", "containerDefinitions": [{"name": "main", "image": "busybox:latest", "memory": 16}]}
    expect(c.send(leader, "POST", "/v1/taskdefinitions", td), 201, "the task definition")
    for name in SERVICE_KEYS:
        expect(c.send(leader, "POST", "/v1/services", {"cluster": "hist", "serviceName": name,
                                                       "taskDefinition": "hist", "desiredCount": 0}), 201, name)
    if not registry:
        return None
    expect(c.send(leader, "POST", "/v1/repositories", {"repositoryName": REPO}), 201, "the repository")
    blobs = []
    for data in (json.dumps({"architecture": "amd64", "os": "linux"}).encode(), os.urandom(2000)):
        a = expect(c.send(leader, "POST", "/v2/%s/blobs/uploads/" % REPO), 202, "start an upload")
        d = digest_of(data)
        expect(c.send(leader, "PUT", a.headers["location"] + "?digest=" + d, data,
                      {"Content-Type": "application/octet-stream"}), 201, "a blob")
        blobs.append((d, len(data)))
    m = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blobs[0][0],
                               "size": blobs[0][1]},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blobs[1][0],
                                "size": blobs[1][1]}]}).encode()
    expect(c.send(leader, "PUT", "/v2/%s/manifests/base" % REPO, m, {"Content-Type": OCI_MANIFEST}), 201,
           "the base image")
    return digest_of(m), len(m)


class Nemesis(threading.Thread):
    """Every 1-3 s, one fault at a time: kill -9 of the leader (or of a random
    server) and its restart 0.5-2.5 s later, or SIGSTOP of the leader and SIGCONT
    1-3 s later. One server at most is down, so a majority remains. Each fault
    waits (up to 1 s) for a change sent to its target and not yet answered, so
    faults meet writes in flight."""

    def __init__(self, c, rng, t0):
        super().__init__(daemon=True)
        self.c, self.rng, self.t0 = c, rng, t0
        self.stop_event = threading.Event()
        self.events = []
        self.error = None

    def log(self, what):
        self.events.append("%.3f %s" % (time.monotonic() - self.t0, what))

    def run(self):
        try:
            while not self.stop_event.wait(self.rng.uniform(1.0, 3.0)):
                fault = self.rng.choice(["kill-leader", "kill-leader", "kill-random", "stop-leader", "stop-leader"])
                target = self.c.leader() if fault != "kill-random" else None
                if target is None:
                    target = self.rng.choice(self.c.servers)
                if self.c.wait_for_a_change_in_flight(target, 1.0):
                    # A few ms on, the change is more likely on its way to the followers.
                    time.sleep(self.rng.uniform(0, 0.003))
                    fault += ", a change in flight"
                if fault.startswith("kill"):
                    self.log("kill -9 :%d (%s)" % (target.port, fault))
                    target.kill()
                    self.stop_event.wait(self.rng.uniform(0.5, 2.5))
                    target.start()
                    self.log("restarted :%d" % target.port)
                else:
                    self.log("SIGSTOP :%d (%s)" % (target.port, fault))
                    target.signal(signal.SIGSTOP)
                    self.stop_event.wait(self.rng.uniform(1.0, 3.0))
                    target.signal(signal.SIGCONT)
                    self.log("SIGCONT :%d" % target.port)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e
            self.log("nemesis failed: %r" % e)


def run_history(seed, n_ops, registry):
    """Forms the cluster, runs the clients and the nemesis, heals, reads every key
    from the leader. Returns (history, nemesis events, reads with Berth-Read)."""
    servers, admin = form_cluster()
    c = Cluster(servers, admin)
    base = set_up(c, servers[0], registry)
    t0 = time.monotonic()
    hist = []
    setup_end = 0.0
    for name in SERVICE_KEYS:  # the services were made at desired count 0
        hist.append(H.Op("setup", H.WRITE, "service/" + name, value=0, invoke=-1.0, complete=setup_end))
    left = [n_ops]
    lock = threading.Lock()
    unique = iter(range(1, 1 << 30))
    kinds = ["create", "delete", "read-cluster", "set", "read-service"]
    if registry:
        kinds += ["push", "read-tag"]
    clients = [Client(i, c, random.Random(seed * 100 + i), t0, kinds) for i in range(6)]

    def take():
        with lock:
            if left[0] <= 0:
                return None
            left[0] -= 1
            return next(unique)

    def loop(cl):
        rng = cl.rng
        while True:
            u = take()
            if u is None:
                return
            kind = rng.choice(cl.kinds)
            target = cl.guess if rng.random() < 0.5 else rng.choice(c.servers)
            if kind == "create":
                op = cl.create_cluster(rng.choice(CLUSTER_KEYS))
            elif kind == "delete":
                op = cl.delete_cluster(rng.choice(CLUSTER_KEYS))
            elif kind == "read-cluster":
                op = cl.read_cluster(rng.choice(CLUSTER_KEYS), target)
            elif kind == "set":
                op = cl.set_desired(rng.choice(SERVICE_KEYS), u)
            elif kind == "read-service":
                op = cl.read_desired(rng.choice(SERVICE_KEYS), target)
            elif kind == "push":
                op = cl.push_tag(rng.choice(TAG_KEYS), base, u)
            else:
                op = cl.read_tag(rng.choice(TAG_KEYS), target)
            hist.append(op)
            time.sleep(rng.uniform(0, 0.6))

    nemesis = Nemesis(c, random.Random(seed), t0)
    threads = [threading.Thread(target=loop, args=(cl,), daemon=True) for cl in clients]
    nemesis.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    nemesis.stop_event.set()
    nemesis.join(30)
    check(not nemesis.is_alive(), "the nemesis did not stop")

    # Heal: every server running, a leader, and a write of its term committed.
    for s in servers:
        if s.alive():
            s.signal(signal.SIGCONT)
        else:
            s.start()
    nemesis.log("healed")

    def settled():
        lead = c.leader()
        if lead is None:
            return None
        try:
            a = c.send(lead, "POST", "/v1/clusters", {"clusterName": "hist-barrier-%d" % next(unique)})
        except (NotSent, MaybeSent):
            return None
        return lead if a.status == 201 else None

    final = Client("final", c, random.Random(seed), t0, kinds)

    def read_everything():
        """The final reads from one leader, or None if a read failed or the leader
        changed meanwhile (the machine may stall a server past an election)."""
        leader = wait_until(settled, wait=60, step=0.5, what="a leader after the heal taking a write")
        finals = [final.read_cluster(name, leader, final=True) for name in CLUSTER_KEYS]
        finals += [final.read_desired(name, leader, final=True) for name in SERVICE_KEYS]
        if registry:
            finals += [final.read_tag(tag, leader, final=True) for tag in TAG_KEYS]
        if all(f.outcome == H.OK for f in finals) and c.leader() is leader:
            return leader, finals
        nemesis.log("final reads from :%d again: %r" % (leader.port, [f for f in finals if f.outcome != H.OK]))
        return None

    leader, finals = wait_until(read_everything, wait=120, step=0.5, what="final reads from a leader that stays")
    nemesis.log("final reads from :%d" % leader.port)
    check(nemesis.error is None, "the nemesis failed: %r" % nemesis.error)
    for s in servers:
        s.kill()
    return hist + finals, nemesis.events, sum(cl.read_headers for cl in clients)


def summary(hist):
    counts = {}
    for op in hist:
        k = (op.key.split("/")[0], op.kind)
        counts.setdefault(k, {H.OK: 0, H.FAIL: 0, H.INFO: 0})[op.outcome] += 1
    lines = []
    for (family, kind), n in sorted(counts.items()):
        lines.append("  %-8s %-7s ok %4d  fail %4d  info %4d" % (family, kind, n[H.OK], n[H.FAIL], n[H.INFO]))
    total = {o: sum(1 for op in hist if op.outcome == o) for o in (H.OK, H.FAIL, H.INFO)}
    lines.append("  total            ok %4d  fail %4d  info %4d" % (total[H.OK], total[H.FAIL], total[H.INFO]))
    why = {}
    for op in hist:
        if op.outcome != H.OK:
            # The last answer, without ports and details: "503 NoLeader", "not sent", ...
            last = re.sub(r" ?@:\d+| from :\d+| to :\d+", "", op.note.split("; ")[-1])
            last = re.sub(r" \(.*", "", last)[:60]
            why[(op.outcome, last)] = why.get((op.outcome, last), 0) + 1
    for (outcome, last), n in sorted(why.items()):
        lines.append("  %-4s %4d  %s" % (outcome, n, last))
    return "\n".join(lines)


def stale_reads(ops):
    """The reads allowed to be stale that were: held to linearizability one at a
    time, each would make the key's history fail. Information only (a follower
    may lag), but a count of them shows how far behind reads run."""
    out = []
    for r in ops:
        if r.kind == H.READ and r.outcome == H.OK and not r.linearizable:
            r.linearizable = True
            if H.check_key(ops, max_steps=100_000).valid is False:
                out.append(r)
            r.linearizable = False
    return out


def judge(hist, say=print):
    """Every check over the history; returns the list of violations (text)."""
    problems = []
    by_key = {}
    for op in hist:
        by_key.setdefault(op.key, []).append(op)
    for key, ops in sorted(by_key.items()):
        if not key.startswith("cluster/"):
            for r, why in H.check_reads_come_from_writes(ops):
                problems.append("%s: read %r: %s" % (key, r, why))
        res = H.check_key(ops)
        verdict = {True: "linearizable", False: "NOT linearizable", None: "unknown (search bounded)"}[res.valid]
        say("%s: %d ops (%d searched), %s in %d steps" % (key, len(ops), len(res.ops), verdict, res.steps))
        if res.valid is True:
            stale = stale_reads(ops)
            if stale:
                say("  %d of its reads allowed to be stale were (not asserted): e.g. %r" % (len(stale), stale[0]))
            continue
        if res.valid is None:
            problems.append("%s: the search ran out of steps (%d ops): no verdict" % (key, len(res.ops)))
            continue
        small = H.shrink(ops)
        text = "%s is not linearizable; a smallest failing slice (%d of %d ops):\n      %s" % (
            key, len(small), len(ops), "\n      ".join(repr(o) for o in small))
        # What the slice leaves out to be small: the writes of the values it reads
        # (refused ones included), and the changes just before it.
        shown = {o.result for o in small if o.kind == H.READ}
        writers = [o for o in ops if o.kind == H.WRITE and o.value in shown and o not in small]
        start = min(o.invoke for o in small)
        before = [o for o in ops if o.kind != H.READ and o not in small and o not in writers and o.invoke < start]
        context = writers + before[-3:]
        if context:
            context.sort(key=lambda o: o.invoke)
            text += "\n    around it:\n      %s" % "\n      ".join(repr(o) for o in context)
        final = [o for o in ops if o.kind == H.READ and "final" in o.note]
        if final and not key.startswith("cluster/"):
            lost = H.lost_acknowledged_writes(ops, final[0])
            if lost:
                text += "\n    acknowledged writes the final read does not show: %r" % lost
        refused = [o for o in ops if o.outcome == H.FAIL and o.kind != H.READ]
        if refused:
            text += "\n    refused changes on this key: %d (e.g. %r)" % (len(refused), refused[:3])
        problems.append(text)
    return problems


@timeout(300)
def test_history_of_clusters_services_and_tags_through_kills_and_freezes():
    seed = int(os.environ.get("BERTH_HISTORY_SEED") or random.randrange(1, 1 << 31))
    n_ops = int(os.environ.get("BERTH_HISTORY_OPS", "500"))
    registry = os.environ.get("BERTH_HISTORY_REGISTRY", "1") != "0"
    dump = os.environ.get("BERTH_HISTORY_DUMP")  # a path: the history there, the report in PATH.report
    report = []

    def say(text):
        print(text, flush=True)
        report.append(text)

    say("BERTH_HISTORY_SEED=%d BERTH_HISTORY_OPS=%d BERTH_HISTORY_REGISTRY=%d" % (seed, n_ops, registry))
    hist, events, headed = run_history(seed, n_ops, registry)
    say("faults:\n  " + "\n  ".join(events))
    say("operations (fail: definitely not applied; info: indeterminate):\n" + summary(hist))
    if headed == 0:
        say("note: no read was answered with Berth-Read, so only the final reads (from the leader, after a "
            "write of its term) are held to linearizability; the others only to coming from a write that "
            "did not fail and was not invoked after them")
    else:
        say("%d reads carried Berth-Read; those saying leader are held to linearizability" % headed)
    if dump:
        with open(dump, "w") as f:
            for op in sorted(hist, key=lambda o: o.invoke):
                f.write(repr(op) + "\n")
    problems = judge(hist, say)
    if dump:
        with open(dump + ".report", "w") as f:
            f.write("\n".join(report + problems) + "\n")
    check(not problems, "%d violation(s), seed %d:\n  %s" % (len(problems), seed, "\n  ".join(problems)))
