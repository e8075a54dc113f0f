#!/usr/bin/env python3
"""API latency probe for bench/e2e-sim.sh (issue 18): is the server answering
while it works?

Two clients, a thread each, poll the server every 100 ms until the probe is
told to stop (SIGTERM or SIGINT): each tick, `GET /healthz` then
`GET /v1/services/<name>`, one after the other.

  keepalive  one connection kept alive across requests (reopened after an error);
             a latency runs from sending the request to having read the whole answer.
  newconn    a new connection (TCP + TLS handshake) for every request; its latency
             runs from starting to connect to having read the whole answer, which is
             what a CLI or a load balancer's health check waits.

A tick that starts late (the previous one's requests took longer than 100 ms)
starts at once; ticks are not made up. A request that fails (connection error,
timeout, or a status other than 200) is not counted in the latencies; it is
counted in the client's `errors`. On stop, a request in flight gets up to
STOP_GRACE_S to finish; one that does not is neither a latency nor an error.

Usage: api_probe.py URL SERVICE [CA_FILE]; the bearer token is read from
$BERTH_TOKEN. Writes "api probe: started" to stderr once a SIGTERM would be a
clean stop. On stop, prints one line per client, then

  api_requests=<n> api_p50_ms=<ms> api_p99_ms=<ms> api_max_ms=<ms> api_errors=<n>

over both clients' requests (nearest-rank percentiles; `-` when none succeeded).
With $API_PROBE_SAMPLES set to a path, every request is also written there as
`<unix time at its start> <client> <path> <ms or error>`, to line a slow answer up
with the server's logs. Standard library only.
"""

import http.client
import math
import os
import signal
import ssl
import sys
import threading
import time
import urllib.parse

INTERVAL_S = 0.1
TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


class Client:
    def __init__(self, name, keepalive, url, paths, headers, ssl_context, stop):
        self.name = name
        self.keepalive = keepalive
        self.paths = paths
        self.headers = headers
        self.stop = stop
        self.latencies_ms = []
        self.errors = 0
        self.lock = threading.Lock()
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.https = u.scheme == "https"
        self.ssl_context = ssl_context
        self.conn = None
        self.samples = []  # (unix time at the start, path, ms or None for an error)

    def _connect(self):
        if self.https:
            c = http.client.HTTPSConnection(self.host, self.port, timeout=TIMEOUT_S, context=self.ssl_context)
        else:
            c = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
        c.connect()
        return c

    def _close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, path):
        """One GET; records its latency in ms, or an error."""
        started = time.time()
        try:
            t0 = time.perf_counter()
            if self.keepalive:
                if self.conn is None:
                    self.conn = self._connect()
                    t0 = time.perf_counter()  # the keepalive client's latency excludes the connect
            else:
                self.conn = self._connect()
            self.conn.request("GET", path, headers=self.headers)
            resp = self.conn.getresponse()
            resp.read()
            t1 = time.perf_counter()
            if not self.keepalive or resp.will_close:
                self._close()
            if resp.status != 200:
                raise RuntimeError(f"status {resp.status}")
        except Exception:  # noqa: BLE001 -- any failure is an error of this request
            self._close()
            with self.lock:
                self.errors += 1
                self.samples.append((started, path, None))
            return
        with self.lock:
            self.latencies_ms.append((t1 - t0) * 1000.0)
            self.samples.append((started, path, (t1 - t0) * 1000.0))

    def run(self):
        next_tick = time.monotonic()
        while not self.stop.is_set():
            for path in self.paths:
                self.request(path)
            next_tick = max(next_tick + INTERVAL_S, time.monotonic())
            self.stop.wait(max(0.0, next_tick - time.monotonic()))
        self._close()


def percentile(sorted_values, p):
    """Nearest-rank percentile of a sorted, non-empty list."""
    k = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[k - 1]


def figures(latencies):
    if not latencies:
        return "-", "-", "-"
    v = sorted(latencies)
    return f"{percentile(v, 50):.1f}", f"{percentile(v, 99):.1f}", f"{v[-1]:.1f}"


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    url, service = sys.argv[1], sys.argv[2]
    ca = sys.argv[3] if len(sys.argv) > 3 else None
    ctx = ssl.create_default_context(cafile=ca) if url.startswith("https") else None
    headers = {"Authorization": "Bearer " + os.environ.get("BERTH_TOKEN", "")}
    paths = ["/healthz", "/v1/services/" + urllib.parse.quote(service)]

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("api probe: started", file=sys.stderr, flush=True)  # from here a SIGTERM is a clean stop
    clients = [
        Client("keepalive", True, url, paths, headers, ctx, stop),
        Client("newconn", False, url, paths, headers, ctx, stop),
    ]
    threads = [threading.Thread(target=c.run, name=c.name, daemon=True) for c in clients]
    for t in threads:
        t.start()
    while not stop.wait(1.0):
        pass
    deadline = time.monotonic() + STOP_GRACE_S
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))

    everything, errors = [], 0
    for c in clients:
        with c.lock:
            lat, err = list(c.latencies_ms), c.errors
        everything += lat
        errors += err
        p50, p99, mx = figures(lat)
        print(f"api probe {c.name}: requests={len(lat)} p50_ms={p50} p99_ms={p99} max_ms={mx} errors={err}")
    if os.environ.get("API_PROBE_SAMPLES"):
        with open(os.environ["API_PROBE_SAMPLES"], "w") as f:
            for c in clients:
                with c.lock:
                    for started, path, ms in c.samples:
                        f.write(f"{started:.3f} {c.name} {path} {'error' if ms is None else f'{ms:.1f}'}\n")
    p50, p99, mx = figures(everything)
    print(f"api_requests={len(everything)} api_p50_ms={p50} api_p99_ms={p99} api_max_ms={mx} api_errors={errors}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
