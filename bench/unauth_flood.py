"""Load for bench/unauth.sh: unauthenticated abuse of one HTTPS server, measured
from a legitimate client's side, on 127.0.0.x addresses only.

One run against one server (berth or its nginx peer), in phases:
  baseline    the legitimate client alone (LEGIT_RATE requests/s, each a new TLS
              connection from 127.0.0.2: GET /v1/clusters with the right token);
  slowloris   attacker hosts 127.0.0.10.. each keep SLOTS connections open, a
              third each of: TCP only, silent (no TLS handshake); TLS, then
              nothing; TLS, then a request line and one header byte a second.
              A connection the server ends is opened again at once; one refused
              (429/503) after a second (its Retry-After). The legitimate client
              runs meanwhile;
  guessing    one address (127.0.0.3) sends wrong tokens on keep-alive connections
              as fast as it can while the legitimate client runs;
  bodies      1 MiB bodies without credentials from 127.0.0.4, each on a new
              connection, to an API route and to an open one, with Content-Length
              and chunked: what the server answers, when, and how much it read
              (the growth of its processes' rchar, less a request without a body);
              then a body without end: how long the server takes it after its
              answer, and how much it reads meanwhile.

Prints what it saw, then one line `NAME_key=value ...`. Never judges a timing.
"""

import argparse
import asyncio
import http.client
import multiprocessing
import os
import select
import signal
import socket
import ssl
import sys
import threading
import time

LEGIT_SRC = "127.0.0.2"
GUESS_SRC = "127.0.0.3"
BODY_SRC = "127.0.0.4"


def client_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False  # the CA is checked; the name is 127.0.0.1 either way
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # what both servers speak here
    return ctx


def percentile(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


def rchar(pids):
    total = 0
    for pid in pids:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                if line.startswith("rchar:"):
                    total += int(line.split()[1])
    return total


def open_fds(pids):
    n = 0
    for pid in pids:
        try:
            n += len(os.listdir("/proc/%d/fd" % pid))
        except OSError:
            pass
    return n


# --- the legitimate client ---------------------------------------------------


def legit_request(args, ctx):
    """One GET /v1/clusters with the right token on a new connection: (seconds, status or error name)."""
    start = time.monotonic()
    conn = http.client.HTTPSConnection(args.host, args.port, timeout=args.legit_timeout, context=ctx,
                                       source_address=(LEGIT_SRC, 0))
    try:
        conn.request("GET", "/v1/clusters", headers={"Authorization": "Bearer " + args.token})
        r = conn.getresponse()
        r.read()
        outcome = r.status
    except (OSError, http.client.HTTPException) as e:
        outcome = type(e).__name__
    finally:
        conn.close()
    return time.monotonic() - start, outcome


def legit_client(args, seconds, out):
    """Open loop: a request every 1/LEGIT_RATE s, each on its own thread, so a stuck
    one does not hold back the next. Puts [(seconds, outcome)] on `out`."""
    ctx = client_context(args.ca)
    results, lock, threads = [], threading.Lock(), []

    def run():
        r = legit_request(args, ctx)
        with lock:
            results.append(r)

    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)
        i += 1
        time.sleep(max(0.0, t0 + i / args.legit_rate - time.monotonic()))
    for t in threads:
        t.join(args.legit_timeout + 5)
    with lock:
        out.put(list(results))


def legit_summary(results):
    ok = [s for s, o in results if o == 200]
    failures = {}
    for _, o in results:
        if o != 200:
            failures[str(o)] = failures.get(str(o), 0) + 1
    n = len(results)
    return {
        "n": n,
        "ok_pct": 100.0 * len(ok) / n if n else float("nan"),
        "p50_ms": percentile(ok, 50) * 1000,
        "p99_ms": percentile(ok, 99) * 1000,
        "max_ms": max(ok) * 1000 if ok else float("nan"),
        "failures": failures,
    }


# --- slowloris ---------------------------------------------------------------


class Attack:
    def __init__(self, args):
        self.args = args
        self.ctx = client_context(args.ca)
        # (kind, outcome, seconds from connect to its end, seconds from the end of
        # the TLS handshake (or the TCP connect) to its end, or None if not so far)
        self.records = []
        self.open_now = 0
        self.peak_open = 0
        self.transports = set()

    async def connection(self, src, kind, established):
        """One attacker connection, until the server ends it: its outcome. Sets
        established[0] to the loop time its handshake (or TCP connect) completed."""
        a = self.args
        ssl_args = {} if kind == "silent" else {"ssl": self.ctx, "server_hostname": a.host,
                                                "ssl_handshake_timeout": 30}
        try:
            reader, writer = await asyncio.open_connection(a.host, a.port, local_addr=(src, 0), **ssl_args)
        except ssl.SSLError:
            return "handshake_failed"
        except (ConnectionError, asyncio.TimeoutError, OSError) as e:
            if kind != "silent" and isinstance(e, (ConnectionResetError, asyncio.TimeoutError)):
                return "handshake_failed"
            return "connect_failed"
        established[0] = asyncio.get_running_loop().time()
        self.transports.add(writer.transport)
        self.open_now += 1
        self.peak_open = max(self.peak_open, self.open_now)
        trickle = None
        try:
            if kind == "trickle":
                async def drip():
                    writer.write(b"GET /v1/clusters HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                    while True:
                        await asyncio.sleep(a.trickle_interval)
                        writer.write(b"a")
                trickle = asyncio.ensure_future(drip())
            try:
                data = await reader.read(64)
            except (ConnectionError, OSError, ssl.SSLError):
                data = b""
            if data.startswith(b"HTTP/1.1 ") and len(data) >= 12:
                return "http_" + data[9:12].decode("ascii", "replace")
            return "closed"
        finally:
            if trickle:
                trickle.cancel()
            self.open_now -= 1
            self.transports.discard(writer.transport)
            writer.transport.abort()

    async def slot(self, src, kind, end):
        loop = asyncio.get_running_loop()
        while loop.time() < end:
            t0 = loop.time()
            established = [None]
            try:
                outcome = await asyncio.wait_for(self.connection(src, kind, established), timeout=end - t0)
            except asyncio.TimeoutError:
                outcome = "open_at_end"
            t1 = loop.time()
            self.records.append((kind, outcome, t1 - t0, t1 - established[0] if established[0] else None))
            if outcome in ("http_429", "http_503"):
                await asyncio.sleep(1.0)
            elif outcome == "connect_failed":
                await asyncio.sleep(0.2)

    async def run(self, seconds):
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        kinds = ("silent", "idle", "trickle")
        slots = [self.slot(src, kinds[i % 3], end) for src in self.args.attackers for i in range(self.args.slots)]
        await asyncio.gather(*slots)
        for t in list(self.transports):
            t.abort()


def attacker(args, seconds, out):
    a = Attack(args)
    asyncio.run(a.run(seconds))
    out.put({"records": a.records, "peak_open": a.peak_open})


def attack_summary(res):
    recs = res["records"]
    by = {}
    for kind, outcome, life, _ in recs:
        by.setdefault((kind, outcome), []).append(life)
    tls = [(k, o, l, e) for k, o, l, e in recs if k != "silent"]
    refused = sum(1 for _, o, _, _ in tls if o in ("http_429", "http_503"))
    refused_429 = sum(1 for _, o, _, _ in tls if o == "http_429")
    # Accepted: a TLS connection the server took in (it was not refused) and
    # that the server itself ended: how long it held a slot after its handshake
    # (what the timeouts bound), and the handshake's wait before.
    ended = [e for _, o, _, e in tls if o in ("http_408", "closed") and e is not None]
    handshake = [l - e for _, o, l, e in tls if e is not None]
    held_at_end = sum(1 for _, o, _, _ in tls if o == "open_at_end")
    silent_ended = [l for k, o, l, _ in recs if k == "silent" and o == "closed"]
    return {
        "attempts": len(recs),
        "tls_attempts": len(tls),
        "refused": refused,
        "refused_429": refused_429,
        "accepted": len(ended) + held_at_end,
        "handshake_p50_s": percentile(handshake, 50),
        "handshake_p99_s": percentile(handshake, 99),
        "held_p50_s": percentile(ended, 50),
        "held_max_s": max(ended) if ended else float("nan"),
        "open_at_end": held_at_end,
        "silent_ended": len(silent_ended),
        "silent_p50_s": percentile(silent_ended, 50),
        "silent_max_s": max(silent_ended) if silent_ended else float("nan"),
        "peak_open": res["peak_open"],
        "by": {"%s/%s" % k: (len(v), percentile(v, 50)) for k, v in sorted(by.items())},
    }


# --- credential guessing -----------------------------------------------------


def guesser(args, seconds, out):
    """GUESS_THREADS keep-alive connections sending wrong tokens back to back."""
    ctx = client_context(args.ca)
    end = time.monotonic() + seconds
    lock = threading.Lock()
    statuses = []  # (time, status)
    retry_after = []

    def run(n):
        conn = None
        i = 0
        while time.monotonic() < end:
            if conn is None:
                conn = http.client.HTTPSConnection(args.host, args.port, timeout=10, context=ctx,
                                                   source_address=(GUESS_SRC, 0))
            i += 1
            try:
                conn.request("GET", "/v1/clusters", headers={"Authorization": "Bearer guess-%d-%d" % (n, i)})
                r = conn.getresponse()
                r.read()
                with lock:
                    statuses.append((time.monotonic(), r.status))
                    if r.status == 429 and r.getheader("Retry-After"):
                        retry_after.append(r.getheader("Retry-After"))
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    statuses.append((time.monotonic(), type(e).__name__))
                conn.close()
                conn = None
        if conn:
            conn.close()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(args.guess_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 15)
    out.put({"statuses": sorted(statuses, key=lambda s: s[0]), "retry_after": retry_after})


def guess_summary(res, seconds):
    st = [s for _, s in res["statuses"]]
    first_429 = st.index(429) if 429 in st else len(st)
    counts = {}
    for s in st:
        counts[str(s)] = counts.get(str(s), 0) + 1
    ra = sorted(set(res["retry_after"]), key=lambda v: int(v) if v.isdigit() else 0)
    return {
        "n": len(st),
        "per_s": len(st) / seconds,
        "401": counts.get("401", 0),
        "429": counts.get("429", 0),
        "401_before_429": sum(1 for s in st[:first_429] if s == 401),
        "other": {k: v for k, v in counts.items() if k not in ("401", "429")},
        "retry_after": ",".join(ra[:1] + ra[-1:]) if ra else "-",
    }


# --- large bodies ------------------------------------------------------------


def body_request(args, ctx, method, path, size, chunked, max_seconds=10.0):
    """Sends up to `size` bytes of body (for at most max_seconds) without credentials on
    a new connection, reading the answer meanwhile, and goes on sending after the
    answer and after the server's end of stream, as a client that does not listen
    would. One thread drives the TLS session both ways (non-blocking). Returns
    (status, seconds to the answer, seconds until all was sent or the server would
    take no more, whether all was sent)."""
    sock = socket.socket()
    sock.bind((BODY_SRC, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(10)
    sock.connect((args.host, args.port))
    s = ctx.wrap_socket(sock, server_hostname=args.host)
    s.setblocking(False)
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" % (method, path)
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else "Content-Length: %d\r\n\r\n" % size
    piece = (b"4000\r\n" + b"a" * 16384 + b"\r\n") if chunked else b"a" * 16384
    out, queued, trailer = head.encode(), 0, not chunked
    status, t_answer, t_send, eof = "none", float("nan"), None, False
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_seconds:
        if not out and queued < size:
            out, queued = piece, queued + 16384
        elif not out and not trailer:
            out, trailer = b"0\r\n\r\n", True
        if t_send is None and not out:
            t_send = time.monotonic() - t0
        if not out and (eof or status != "none"):
            break
        readable, writable, _ = select.select([] if eof else [s], [s] if out else [], [], 0.2)
        if readable or (not eof and s.pending()):
            try:
                data = s.recv(65536)
                if not data:
                    eof = True
                elif status == "none" and data.startswith(b"HTTP/1.1 "):
                    status, t_answer = data[9:12].decode(), time.monotonic() - t0
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except OSError:
                eof = True
        if writable and out:
            try:
                out = out[s.send(out):]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except OSError:
                break  # the server closed: it takes no more
    complete = not out and queued >= size
    if t_send is None or not complete:
        t_send = time.monotonic() - t0
    # Read what else came before closing: unread data would make the close a reset,
    # which throws away what the server has not read yet.
    quiet_since = time.monotonic()
    while not eof and time.monotonic() - quiet_since < 0.2:
        if select.select([s], [], [], 0.05)[0] or s.pending():
            try:
                if not s.recv(65536):
                    break
                quiet_since = time.monotonic()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
            except OSError:
                break
    s.close()
    return status, t_answer, t_send, complete


def bodies(args):
    ctx = client_context(args.ca)
    pids = args.pids
    out = {}

    def run(*a, **kw):
        return body_request(args, ctx, *a, **kw)

    # What a request without a body makes the server read (TLS handshake, headers).
    r0 = rchar(pids)
    for _ in range(5):
        run("GET", "/healthz", 0, False)
    time.sleep(0.3)
    base = (rchar(pids) - r0) / 5
    cases = [("api_cl", "POST", "/v1/clusters", False), ("api_chunked", "POST", "/v1/clusters", True),
             ("open_cl", "GET", "/healthz", False), ("open_chunked", "GET", "/healthz", True)]
    for name, method, path, chunked in cases:
        rows = []
        r0 = rchar(pids)
        for _ in range(args.body_count):
            rows.append(run(method, path, args.body_kib * 1024, chunked))
        time.sleep(2.5)  # the server may drain what was sent for a moment after its answer
        read_kib = ((rchar(pids) - r0) / args.body_count - base) / 1024
        out[name] = {
            "status": "/".join(sorted(set(r[0] for r in rows))),
            "answer_ms": percentile([r[1] for r in rows if r[1] == r[1]], 50) * 1000,
            "complete": sum(1 for r in rows if r[3]),
            "read_kib": read_kib,
        }
    # A body without end to an open route: how long the server keeps reading after
    # refusing it, and how much it reads meanwhile.
    r0 = rchar(pids)
    st, t_answer, t_end, _ = run("GET", "/healthz", 1 << 40, True, max_seconds=args.stream_seconds)
    time.sleep(2.5)
    out["stream"] = {"status": st, "answer_ms": t_answer * 1000, "read_s": t_end,
                     "read_mib": (rchar(pids) - r0 - base) / (1 << 20)}
    return out


# --- the run -----------------------------------------------------------------


def metrics(args):
    """berth's counters of interest, or {} for a server without them."""
    if not args.metrics:
        return {}
    conn = http.client.HTTPSConnection(args.host, args.port, timeout=10, context=client_context(args.ca))
    conn.request("GET", "/metrics", headers={"Authorization": "Bearer " + args.token})
    text = conn.getresponse().read().decode()
    conn.close()
    want = ("berth_http_unauthenticated_rejected_total", "berth_http_auth_throttled_total",
            "berth_http_rejected_connections_total", "berth_http_timeouts_total")
    m = {}
    for line in text.splitlines():
        for w in want:
            if line.startswith(w):
                m[w] = m.get(w, 0) + float(line.split()[-1])
    return m


def metric_delta(a, b):
    return " ".join("%s+%d" % (k.replace("berth_http_", ""), b[k] - a.get(k, 0)) for k in sorted(b))


def start(mp, target, args, seconds):
    q = mp.Queue()
    p = mp.Process(target=target, args=(args, seconds, q), daemon=True)
    p.start()
    return p, q


def collect(p, q, timeout):
    res = q.get(timeout=timeout)
    p.join(10)
    return res


def fmt(v, digits=1):
    return ("%%.%df" % digits) % v if isinstance(v, float) else str(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--pids", required=True, help="the server's processes, space-separated")
    ap.add_argument("--metrics", action="store_true", help="read berth's /metrics counters")
    ap.add_argument("--attackers", type=int, default=8)
    ap.add_argument("--slots", type=int, default=80, help="connections each attacker host keeps trying to hold")
    ap.add_argument("--attack-seconds", type=float, default=23)
    ap.add_argument("--trickle-interval", type=float, default=1.0)
    ap.add_argument("--legit-rate", type=float, default=10)
    ap.add_argument("--legit-timeout", type=float, default=10)
    ap.add_argument("--baseline-seconds", type=float, default=4)
    ap.add_argument("--guess-seconds", type=float, default=10)
    ap.add_argument("--guess-threads", type=int, default=2)
    ap.add_argument("--body-count", type=int, default=5)
    ap.add_argument("--body-kib", type=int, default=1024)
    ap.add_argument("--stream-seconds", type=float, default=4)
    args = ap.parse_args()
    args.pids = [int(p) for p in args.pids.split()]
    args.attackers = ["127.0.0.%d" % (10 + i) for i in range(args.attackers)]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    mp = multiprocessing.get_context("fork")
    name = args.name
    fig = {}

    # --- baseline
    p, q = start(mp, legit_client, args, args.baseline_seconds)
    base = legit_summary(collect(p, q, args.baseline_seconds + args.legit_timeout + 30))
    print("%-6s baseline: legitimate client %d requests, %.1f%% ok, p50 %.1f ms, p99 %.1f ms" %
          (name, base["n"], base["ok_pct"], base["p50_ms"], base["p99_ms"]))
    fig["base_p50_ms"], fig["base_p99_ms"] = base["p50_ms"], base["p99_ms"]

    # --- slowloris
    m0 = metrics(args)
    fd0 = open_fds(args.pids)
    c0, t0 = cpu_ticks(args.pids), time.monotonic()
    ap_, aq = start(mp, attacker, args, args.attack_seconds)
    time.sleep(3)  # the attackers fill their slots first
    legit_seconds = args.attack_seconds - 5
    lp, lq = start(mp, legit_client, args, legit_seconds)
    peak_fds = fd0
    while ap_.is_alive() and aq.empty():
        peak_fds = max(peak_fds, open_fds(args.pids))
        time.sleep(0.5)
    att = attack_summary(collect(ap_, aq, 60))
    cpu = (cpu_ticks(args.pids) - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0) * 100
    leg = legit_summary(collect(lp, lq, legit_seconds + args.legit_timeout + 30))
    time.sleep(1)
    m1 = metrics(args)
    print("%-6s slowloris: %d attacker hosts x %d connections for %.0f s (a third each: TCP only; TLS then silent;"
          " TLS then a header byte every %.1f s)" % (name, len(args.attackers), args.slots, args.attack_seconds,
                                                     args.trickle_interval))
    print("%-6s   attacker: %d TLS connections tried (handshake p50 %.2f s, p99 %.2f s), %d refused (%d with 429),"
          " %d accepted; accepted and ended by the server p50 %.1f s, max %.1f s after their handshake; %d still open"
          " at the end; %d TCP-only connections ended after p50 %.1f s, max %.1f s; at most %d attacker connections"
          " open at once" %
          (name, att["tls_attempts"], att["handshake_p50_s"], att["handshake_p99_s"], att["refused"],
           att["refused_429"], att["accepted"], att["held_p50_s"], att["held_max_s"], att["open_at_end"],
           att["silent_ended"], att["silent_p50_s"], att["silent_max_s"], att["peak_open"]))
    print("%-6s   attacker outcomes (kind/outcome: count, p50 life s): %s" %
          (name, ", ".join("%s: %d, %.1f" % (k, n, l) for k, (n, l) in att["by"].items())))
    print("%-6s   server: peak %d open fds (%d before), CPU %.0f%% of one core%s" %
          (name, peak_fds, fd0, cpu, ("; " + metric_delta(m0, m1)) if m1 else ""))
    print("%-6s   legitimate client meanwhile: %d requests, %.1f%% ok, p50 %.1f ms, p99 %.1f ms, max %.1f ms,"
          " failures %s" % (name, leg["n"], leg["ok_pct"], leg["p50_ms"], leg["p99_ms"], leg["max_ms"],
                            leg["failures"] or "none"))
    fig.update({"legit_ok_pct": leg["ok_pct"], "legit_p50_ms": leg["p50_ms"], "legit_p99_ms": leg["p99_ms"],
                "attacker_refused": att["refused"], "attacker_accepted": att["accepted"],
                "attacker_handshake_p99_s": att["handshake_p99_s"], "attacker_held_p50_s": att["held_p50_s"], "attacker_held_max_s": att["held_max_s"],
                "silent_held_max_s": att["silent_max_s"], "peak_fds": peak_fds, "attack_cpu_pct": cpu})

    # --- credential guessing
    m0 = metrics(args)
    gp, gq = start(mp, guesser, args, args.guess_seconds)
    lp, lq = start(mp, legit_client, args, args.guess_seconds)
    g = guess_summary(collect(gp, gq, args.guess_seconds + 40), args.guess_seconds)
    leg = legit_summary(collect(lp, lq, args.guess_seconds + args.legit_timeout + 30))
    m1 = metrics(args)
    print("%-6s guessing: %d wrong tokens from %s in %.0f s (%.0f/s, %d keep-alive connections): %d answered 401"
          " (%d before the first 429), %d answered 429 (Retry-After %s), other %s%s" %
          (name, g["n"], GUESS_SRC, args.guess_seconds, g["per_s"], args.guess_threads, g["401"],
           g["401_before_429"], g["429"], g["retry_after"], g["other"] or "none",
           ("; " + metric_delta(m0, m1)) if m1 else ""))
    print("%-6s   legitimate client meanwhile: %d requests, %.1f%% ok, p50 %.1f ms, p99 %.1f ms, failures %s" %
          (name, leg["n"], leg["ok_pct"], leg["p50_ms"], leg["p99_ms"], leg["failures"] or "none"))
    fig.update({"guess_401": g["401"], "guess_429": g["429"], "guess_per_s": g["per_s"],
                "guess_legit_ok_pct": leg["ok_pct"], "guess_legit_p99_ms": leg["p99_ms"]})

    # --- large bodies
    b = bodies(args)
    for k in ("api_cl", "api_chunked", "open_cl", "open_chunked"):
        r = b[k]
        print("%-6s body %-12s %d KiB without credentials (%s, %s): answered %s after %.1f ms (p50); the server"
              " read %.0f KiB of each; %d of %d bodies went in whole" %
              (name, k, args.body_kib, "POST /v1/clusters" if k.startswith("api") else "GET /healthz",
               "chunked" if k.endswith("chunked") else "Content-Length", r["status"], r["answer_ms"], r["read_kib"],
               r["complete"], args.body_count))
        fig["body_%s_status" % k] = r["status"]
        fig["body_%s_read_kib" % k] = r["read_kib"]
    r = b["stream"]
    print("%-6s body without end (chunked, sent as fast as the client can for up to %.0f s) to GET /healthz: answered"
          " %s after %.1f ms; the server took the body for %.2f s, %.1f MiB" %
          (name, args.stream_seconds, r["status"], r["answer_ms"], r["read_s"], r["read_mib"]))
    fig.update({"stream_read_s": r["read_s"], "stream_read_mib": r["read_mib"]})

    print(" ".join("%s_%s=%s" % (name, k, fmt(v)) for k, v in fig.items()))


if __name__ == "__main__":
    main()
