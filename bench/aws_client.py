#!/usr/bin/env python3
"""Load for bench/aws.sh: the same calls through berth's AWS front end (JSON 1.1,
SigV4) and through its native API, side by side, on one kept-alive TLS connection.

    python3 bench/aws_client.py --url https://127.0.0.1:PORT --ca DATA/ca.crt [--server-pid PID]
    python3 bench/aws_client.py --selftest

Credentials come from the environment, not the command line (where `ps` shows
them): BERTH_TOKEN (native, `Authorization: Bearer`), AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (the AWS front end).

The calls, each measured from the first byte sent to the last byte of the answer:
  describe  AWS: POST / X-Amz-Target AmazonEC2ContainerServiceV20141113.DescribeServices
                 {"cluster":"bench","services":["web"]}
            native: GET /v1/services/web?cluster=bench
  update    AWS: UpdateService {"cluster":"bench","service":"web","desiredCount":N}
            native: PATCH /v1/services/web?cluster=bench {"desiredCount":N}
--describes (1000) and --updates (200) of each for each front end, in --rounds
(20) rounds; within a round each kind runs as a batch per front end, the front
end that goes first alternating from round to round, so that what else the
machine does hits both. desiredCount alternates 0 and 1. A few calls of each
warm up first (not counted). Every answer must be 200 and name the service, or
the run fails (exit 1).

With --server-pid, the server's CPU time (all threads, /proc) over each batch
is summed per front end and kind: CPU microseconds per call, steadier than
latency on a shared machine.

Prints a line per front end and kind, then one line of name=value figures:
  aws_describe_p50_ms native_describe_p50_ms aws_update_p50_ms native_update_p50_ms
  aws_vs_native_latency (total AWS latency over all its calls / total native latency)
  aws_vs_native_describe_p50 aws_vs_native_update_p50 [aws_describe_cpu_us ...]

--selftest checks the signer against AWS's documented SigV4 example
(get-vanilla) and against botocore's SigV4Auth for a POST with a body
(Debian's awscli vendors it as awscli.botocore; a plain botocore is tried too).

Python 3 standard library only (botocore only for --selftest).
"""

import argparse
import datetime
import hashlib
import hmac
import http.client
import json
import os
import ssl
import subprocess
import sys
import time

ECS_TARGET = "AmazonEC2ContainerServiceV20141113"
CONTENT_TYPE = "application/x-amz-json-1.1"


# --- AWS Signature Version 4 ---


def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret, date, region, service):
    """kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")."""
    k_date = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return _hmac(k_service, "aws4_request")


def sign(method, path, headers, body, access_key, secret, region, service, amz_date, key=None):
    """The Authorization header value for a request with no query string.

    `headers` ({name: value}) are all signed and must hold X-Amz-Date = amz_date
    and Host; `body` is bytes. `key`, if given, is signing_key(...) for the date
    (it changes once a day; the bench computes it once)."""
    date = amz_date[:8]
    canon = sorted((k.lower(), " ".join(str(v).split())) for k, v in headers.items())
    signed = ";".join(k for k, _ in canon)
    canonical_request = "\n".join([
        method,
        path,
        "",  # the canonical query string: none
        "".join("%s:%s\n" % kv for kv in canon),
        signed,
        hashlib.sha256(body).hexdigest(),
    ])
    scope = "%s/%s/%s/aws4_request" % (date, region, service)
    string_to_sign = "\n".join([
        "AWS4-HMAC-SHA256", amz_date, scope,
        hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()])
    if key is None:
        key = signing_key(secret, date, region, service)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    return "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        access_key, scope, signed, signature)


def amz_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# --- self-test ---

EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
EXAMPLE_KEY_ID = "AKIDEXAMPLE"
EXAMPLE_DATE = "20150830T123600Z"


# Run by each Python that has a botocore (Debian's awscli v2 vendors one as
# awscli.botocore and, once awscli is imported, answers `import botocore` with it):
# botocore's SigV4Auth signs the request read from stdin with its clock set to the
# request's X-Amz-Date; prints {"botocore": where, "authorization": ...}.
BOTOCORE_SIGNER = r"""
import json, sys
try:
    import awscli  # noqa: F401 - makes `botocore` Debian's awscli.botocore, where it is
except ImportError:
    pass
import botocore.auth, botocore.awsrequest, botocore.credentials
r = json.load(sys.stdin)
req = botocore.awsrequest.AWSRequest(method=r["method"], url=r["url"], headers=r["headers"],
                                     data=r["body"].encode())
req.context["timestamp"] = r["headers"]["X-Amz-Date"]
auth = botocore.auth.SigV4Auth(botocore.credentials.Credentials(r["key_id"], r["secret"]), r["service"],
                               r["region"])
signature = auth.signature(auth.string_to_sign(req, auth.canonical_request(req)), req)
value = "AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s" % (
    auth.scope(req), auth.signed_headers(auth.headers_to_sign(req)), signature)
print(json.dumps({"botocore": botocore.__file__, "authorization": value}))
"""


def botocore_authorizations(request):
    """[(interpreter, botocore's __init__.py or None, Authorization or the error)] from every
    python3 at hand (this one and Debian's) that can import a botocore."""
    pythons = []
    for exe in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(exe) and os.path.realpath(exe) not in [os.path.realpath(p) for p in pythons]:
            pythons.append(exe)
    found = []
    for exe in pythons:
        p = subprocess.run([exe, "-c", BOTOCORE_SIGNER], input=json.dumps(request), capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0:
            found.append((exe, None, (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]))
        else:
            answer = json.loads(p.stdout)
            found.append((exe, answer["botocore"], answer["authorization"]))
    return found


def selftest():
    failures = 0
    # AWS's documented example (the SigV4 test suite's get-vanilla).
    got = sign("GET", "/", {"Host": "example.amazonaws.com", "X-Amz-Date": EXAMPLE_DATE}, b"",
               EXAMPLE_KEY_ID, EXAMPLE_SECRET, "us-east-1", "service", EXAMPLE_DATE)
    want = ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    ok = got == want
    failures += not ok
    print("selftest: get-vanilla (AWS's documented example): %s" % ("ok" if ok else "FAILED\n  got  %s\n  want %s"
                                                                      % (got, want)))

    # A POST with a body, as the bench sends it, against botocore's signer.
    host = "127.0.0.1:7070"
    body = json.dumps({"cluster": "bench", "services": ["web"]})
    headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": ECS_TARGET + ".DescribeServices",
               "X-Amz-Date": EXAMPLE_DATE}
    ours = sign("POST", "/", dict(headers, Host=host), body.encode(), EXAMPLE_KEY_ID, EXAMPLE_SECRET, "eu-west-3",
                "ecs", EXAMPLE_DATE)
    request = {"method": "POST", "url": "https://%s/" % host, "headers": headers, "body": body,
               "key_id": EXAMPLE_KEY_ID, "secret": EXAMPLE_SECRET, "region": "eu-west-3", "service": "ecs"}
    checked = 0
    for exe, where, theirs in botocore_authorizations(request):
        if where is None:
            print("selftest: %s has no usable botocore (%s)" % (exe, theirs))
            continue
        checked += 1
        ok = theirs == ours
        failures += not ok
        print("selftest: POST with a body against %s's botocore (%s): %s" % (
            exe, os.path.dirname(where), "ok" if ok else "FAILED\n  ours     %s\n  botocore %s" % (ours, theirs)))
    if not checked:
        print("selftest: no botocore to cross-check with: FAILED (apt-get install awscli)")
        failures += 1
    print("selftest: %s" % ("ok" if not failures else "%d FAILED" % failures))
    return 1 if failures else 0


# --- the bench ---


class Client:
    """One kept-alive HTTPS connection; each call returns (seconds, status, parsed body)."""

    def __init__(self, url, ca, token, key_id, secret, region):
        scheme, rest = url.split("://", 1)
        self.host = rest.rstrip("/")
        hostname, port = self.host.rsplit(":", 1)
        if scheme == "https":
            ctx = ssl.create_default_context(cafile=ca)
            self.conn = http.client.HTTPSConnection(hostname, int(port), context=ctx, timeout=30)
        else:
            self.conn = http.client.HTTPConnection(hostname, int(port), timeout=30)
        self.token, self.key_id, self.secret, self.region = token, key_id, secret, region
        self.key_date, self.key = None, None
        self.reconnects = 0

    def _call(self, method, path, body, headers):
        t0 = time.perf_counter()
        self.conn.request(method, path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        took = time.perf_counter() - t0
        if resp.will_close:  # the server ended the connection: open another before the next call (not timed)
            self.conn.close()
            self.reconnects += 1
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data[:200]
        return took, resp.status, parsed

    def aws(self, operation, payload):
        body = json.dumps(payload).encode()
        amz_date = amz_now()
        if self.key_date != amz_date[:8]:
            self.key_date, self.key = amz_date[:8], signing_key(self.secret, amz_date[:8], self.region, "ecs")
        headers = {"Host": self.host, "Content-Type": CONTENT_TYPE, "X-Amz-Date": amz_date,
                   "X-Amz-Target": "%s.%s" % (ECS_TARGET, operation)}
        headers["Authorization"] = sign("POST", "/", headers, body, self.key_id, self.secret, self.region, "ecs",
                                        amz_date, key=self.key)
        return self._call("POST", "/", body, headers)

    def native(self, method, path, payload=None):
        body = json.dumps(payload).encode() if payload is not None else None
        headers = {"Host": self.host, "Authorization": "Bearer " + self.token}
        if body is not None:
            headers["Content-Type"] = "application/json"
        return self._call(method, path, body, headers)


def server_cpu_s(pid):
    """User + system CPU seconds of the process, all its threads; 0 without a pid."""
    if not pid:
        return 0.0
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[i]


def run(a):
    token = os.environ.get("BERTH_TOKEN", "")
    key_id = os.environ.get("AWS_ACCESS_KEY_ID", "")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not token or ("aws" in a.fronts and not (key_id and secret)):
        print("aws_client: BERTH_TOKEN, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set", file=sys.stderr)
        return 2
    c = Client(a.url, a.ca, token, key_id, secret, a.region)
    native_path = "/v1/services/%s?cluster=%s" % (a.service, a.cluster)
    count = [0]

    def describe(front):
        if front == "aws":
            took, status, body = c.aws("DescribeServices", {"cluster": a.cluster, "services": [a.service]})
            ok = status == 200 and isinstance(body, dict) and [s.get("serviceName") for s in body.get("services", [])] \
                == [a.service]
        else:
            took, status, body = c.native("GET", native_path)
            ok = status == 200 and isinstance(body, dict) and body.get("service", {}).get("serviceName") == a.service
        return took, ok, status, body

    def update(front):
        n = count[0] % 2  # 0, 1, 0, ...: always valid, and each call a change
        count[0] += 1
        if front == "aws":
            took, status, body = c.aws("UpdateService", {"cluster": a.cluster, "service": a.service, "desiredCount": n})
        else:
            took, status, body = c.native("PATCH", native_path, {"desiredCount": n})
        ok = status == 200 and isinstance(body, dict) and body.get("service", {}).get("desiredCount") == n
        return took, ok, status, body

    calls = {"describe": describe, "update": update}
    totals = {"describe": a.describes, "update": a.updates}
    fronts = a.fronts.split(",")
    lat = {(f, k): [] for f in fronts for k in calls}
    cpu = {key: 0.0 for key in lat}
    bad = []

    for kind, fn in calls.items():  # warm-up: connection, caches, both paths
        for front in fronts:
            for _ in range(a.warmup):
                _, ok, status, body = fn(front)
                if not ok:
                    bad.append("warm-up %s %s: %s %s" % (front, kind, status, str(body)[:300]))
    if bad:
        print("aws_client: %s" % bad[0], file=sys.stderr)
        return 1

    for r in range(a.rounds):
        order = fronts if r % 2 == 0 else fronts[::-1]
        for kind, fn in calls.items():
            # This round's share of the kind's calls (the remainder spread over the first rounds).
            n = totals[kind] // a.rounds + (1 if r < totals[kind] % a.rounds else 0)
            for front in order:
                c0 = server_cpu_s(a.server_pid)
                for _ in range(n):
                    took, ok, status, body = fn(front)
                    lat[(front, kind)].append(took)
                    if not ok and len(bad) < 5:
                        bad.append("%s %s: %s %s" % (front, kind, status, str(body)[:300]))
                    elif not ok:
                        bad.append(None)
                cpu[(front, kind)] += server_cpu_s(a.server_pid) - c0

    if bad:
        print("aws_client: %d calls failed; first: %s" % (len(bad), "; ".join(b for b in bad if b)), file=sys.stderr)
        return 1
    figures = {}
    print("%-7s %-8s %6s %9s %9s %9s %9s %10s%s" % ("front", "call", "n", "p50 ms", "p90 ms", "p99 ms", "max ms",
                                                    "total ms", "  server CPU us/call" if a.server_pid else ""))
    for (front, kind), v in lat.items():
        s = sorted(v)
        p50, p90, p99 = (percentile(s, p) * 1000 for p in (50, 90, 99))
        figures["%s_%s_p50_ms" % (front, kind)] = p50
        figures["%s_%s_p99_ms" % (front, kind)] = p99
        line = "%-7s %-8s %6d %9.3f %9.3f %9.3f %9.3f %10.1f" % (front, kind, len(v), p50, p90, p99, s[-1] * 1000,
                                                                 sum(v) * 1000)
        if a.server_pid:
            us = cpu[(front, kind)] / len(v) * 1e6
            figures["%s_%s_cpu_us" % (front, kind)] = us
            line += "  %9.0f" % us
        print(line)
    aws_total = sum(sum(v) for (f, _), v in lat.items() if f == "aws")
    native_total = sum(sum(v) for (f, _), v in lat.items() if f == "native")
    print("total latency over all calls: AWS %.1f ms, native %.1f ms; connection reopened %d times"
          % (aws_total * 1000, native_total * 1000, c.reconnects))
    if fronts != ["aws", "native"]:
        return 0  # a trial of one front end: no comparison

    keys = ["aws_describe_p50_ms", "native_describe_p50_ms", "aws_update_p50_ms", "native_update_p50_ms"]
    out = ["%s=%.3f" % (k, figures[k]) for k in keys]
    out.append("aws_vs_native_latency=%.2f" % (aws_total / native_total))
    out.append("aws_vs_native_describe_p50=%.2f" % (figures["aws_describe_p50_ms"] / figures["native_describe_p50_ms"]))
    out.append("aws_vs_native_update_p50=%.2f" % (figures["aws_update_p50_ms"] / figures["native_update_p50_ms"]))
    out += ["%s=%.3f" % (k, figures[k]) for k in
            ("aws_describe_p99_ms", "native_describe_p99_ms", "aws_update_p99_ms", "native_update_p99_ms")]
    if a.server_pid:
        out += ["%s=%.0f" % (k, figures[k]) for k in
                ("aws_describe_cpu_us", "native_describe_cpu_us", "aws_update_cpu_us", "native_update_cpu_us")]
    print(" ".join(out))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--selftest", action="store_true", help="check the signer and exit")
    ap.add_argument("--url", help="https://127.0.0.1:PORT")
    ap.add_argument("--ca", help="the cluster CA file to trust the server by")
    ap.add_argument("--server-pid", type=int, default=0, help="the server's pid, to measure its CPU per call")
    ap.add_argument("--cluster", default="bench")
    ap.add_argument("--service", default="web")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--describes", type=int, default=1000, help="DescribeServices calls per front end")
    ap.add_argument("--updates", type=int, default=200, help="UpdateService calls per front end")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--fronts", default="aws,native", choices=["aws,native", "aws", "native"],
                    metavar="aws,native|aws|native",
                    help="one front end alone, to try the client (no last line of figures)")
    ap.add_argument("--warmup", type=int, default=20, help="uncounted calls of each kind per front end first")
    a = ap.parse_args()
    if a.selftest:
        return selftest()
    if not a.url:
        ap.error("--url is needed (or --selftest)")
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
