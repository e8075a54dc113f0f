"""Driver for bench/failover.sh (which says what it measures): one three-server
cluster, berth or etcd, on 127.0.0.1 (or, with --netns, three network namespaces
on a bridge, tests/integration/netns.py); one writer thread (one write at a time,
each a new name, --timeout s each; berth's 307 is followed with the same name,
anything else moves on to the next server); --cycles kills of the leader. Prints
a line per cycle and a summary, writes KEY=VALUE lines to --result. Exit 0; 1 when
an acked write is missing at the end; 2 when something broke (a server did not
start or died, no leader, no ack within 30 s of a kill, no catch-up in 60 s).
"""

import argparse, base64, http.client, json, os, random, signal, socket, ssl
import statistics, subprocess, sys, threading, time

T = time.monotonic
NETERR = (OSError, http.client.HTTPException, ValueError, KeyError, TypeError)
class Broke(Exception): pass

def free_ports(n):  # below the ephemeral range, so no client socket takes one meanwhile
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    ports = set()
    while len(ports) < n:
        p = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try: s.bind(("127.0.0.1", p)); ports.add(p)
            except OSError: pass
    return list(ports)

class Client:  # one keep-alive connection to one server, reopened after any error
    def __init__(self, host, port, ctx, timeout):
        self.host, self.port, self.ctx, self.timeout, self.conn = host, port, ctx, timeout, None
    def call(self, method, path, body=None, headers={}):
        if self.conn is None:
            kw = {"context": self.ctx} if self.ctx else {}
            cls = http.client.HTTPSConnection if self.ctx else http.client.HTTPConnection
            self.conn = cls(self.host, self.port, timeout=self.timeout, **kw)
        try:
            self.conn.request(method, path, body=None if body is None else json.dumps(body),
                              headers={"Content-Type": "application/json", **headers})
            r = self.conn.getresponse(); data = r.read()
        except (OSError, http.client.HTTPException):
            self.conn.close(); self.conn = None; raise
        if r.getheader("Connection", "").lower() == "close": self.conn.close(); self.conn = None
        return r.status, r.getheader("Location", ""), data

class Cluster:
    def __init__(self, a):
        self.a, self.procs, self.argv, self.ctx, self.hdr, self.changes = a, [None] * 3, [None] * 3, None, {}, 0
        self.hint = 0
        self.net = None
        if a.netns:  # a host each: its own namespace and address on a bridge, the usual ports
            sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
            import netns
            self.net = netns.Network(3)
            self.hosts = [self.net.address(i) for i in range(3)] * 2
            self.wrap = [["ip", "netns", "exec", self.net.ns(i)] for i in range(3)]
            self.ports = [7070 if a.name == "berth" else 2379] * 3 + [2380] * 3
        else:
            self.hosts, self.wrap = ["127.0.0.1"] * 6, [[]] * 3
            self.ports = free_ports(6)  # 0-2 client ports, 3-5 peer ports (etcd)
    def at(self, i): return f"{self.hosts[i]}:{self.ports[i]}"  # host:port of endpoint i
    def index_of(self, address):  # which server a host:port (as a server names it) is
        return [self.at(i) for i in range(3)].index(address)
    def start(self, i, extra=()):
        d = os.path.join(self.a.dir, f"s{i + 1}")
        os.makedirs(d, exist_ok=True)
        self.procs[i] = subprocess.Popen(self.wrap[i] + self.argv[i] + list(extra), stdin=subprocess.DEVNULL,
                                         stdout=open(d + "/stdout", "ab"), stderr=open(d + "/stderr", "ab"))
        self.save_pids()
    def kill9(self, i): self.procs[i].kill(); self.procs[i].wait(); self.save_pids()
    def save_pids(self):  # for the shell's EXIT trap, should this driver itself be killed
        with open(self.a.pidfile, "w") as f:
            f.write("".join(f"{p.pid}\n" for p in self.procs if p and p.poll() is None))
    def stop_all(self):
        for p in [p for p in self.procs if p and p.poll() is None]: p.terminate()
        for p in [p for p in self.procs if p]:
            try: p.wait(5)
            except subprocess.TimeoutExpired: p.kill(); p.wait()
        self.save_pids()
        if self.net: self.net.close()
    def clients(self, timeout): return [Client(self.hosts[i], self.ports[i], self.ctx, timeout) for i in range(3)]
    def wait_until(self, what, fn, secs):
        end = T() + secs
        while T() < end:
            for i, p in enumerate(self.procs):
                if p and p.poll() is not None:
                    raise Broke(f"server {i + 1} exited ({p.returncode}) while waiting for {what}")
            try:
                v = fn()
                if v is not None and v is not False and v != []: return v  # 0 is a server index
            except NETERR: pass
            time.sleep(0.05)
        raise Broke(f"no {what} within {secs} s")
    def leader(self, c, skip=None):  # (leader index or None, term) as the first live server asked sees them
        for i in range(3):
            if i != skip and self.procs[i].poll() is None:
                try: return self.view(c, i)
                except NETERR: pass
        return None, 0
    def stable_leader(self, c, secs):  # one that sees itself lead, the same in the same term for secs
        seen, since = [None], [T()]
        def check():
            L = self.leader(c)[0]
            v = self.view(c, L) if L is not None else (None, 0)
            if v[0] is None or v[0] != L: return None
            if v != seen[0]:
                self.changes += seen[0] is not None  # a new leader or term with no kill
                seen[0], since[0] = v, T()
            return v if T() - since[0] >= secs else None
        return self.wait_until("stable leader", check, 60)

class Berth(Cluster):
    def boot(self):
        a, d = self.a, [os.path.join(self.a.dir, f"s{i + 1}") for i in range(3)]
        self.argv = [[a.bin, "server", "--data", d[i] + "/data", "--listen", self.at(i),
                      "--no-agent", "--log-level", a.log_level] for i in range(3)]
        self.start(0)
        tok = self.wait_until("admin token", lambda: open(d[0] + "/data/admin-token").read().strip() or None, 20)
        self.hdr = {"Authorization": "Bearer " + tok.split("::", 1)[1]}
        self.ctx = ssl.create_default_context(cafile=d[0] + "/data/ca.crt")
        c = self.clients(5)
        st, _, body = self.wait_until("answer from server 1", lambda: c[0].call("POST", "/v1/tokens", {"role": "server"}, self.hdr), 20)
        if st != 201: raise Broke(f"POST /v1/tokens: {st} {body[:200]!r}")
        join = ["--join", f"https://{self.at(0)}", "--token", json.loads(body)["token"]["secret"]]
        for i in (1, 2):  # one at a time; a restart later goes without --join (a member already)
            self.start(i, join)
            self.wait_until(f"join of server {i + 1}", lambda: b"joined the cluster" in open(d[i] + "/stdout", "rb").read(), 30)
    def servers(self, c, i):
        st, _, body = c[i].call("GET", "/v1/servers", headers=self.hdr)
        if st != 200: raise ValueError(st)
        return json.loads(body)
    def view(self, c, i):
        s = self.servers(c, i)
        for m in s["servers"]:
            if m["id"] == s.get("leaderId"): return self.index_of(m["address"]), s["term"]
        return None, s["term"]
    def caught_up(self, c):
        L = self.leader(c)[0]
        s = self.servers(c, L) if L is not None else None
        return s and s["leader"] and len(s["servers"]) == 3 and all(
            m["role"] == "voter" and (m["self"] or (m.get("recentContact") and m.get("lag", 1e9) <= self.a.lag_ok)) for m in s["servers"])
    def put(self, cl, name):
        st, loc, _ = cl.call("POST", "/v1/clusters", {"clusterName": name}, self.hdr)
        if st == 307 and loc: return "redirect", st, self.index_of(loc.split("/")[2])
        return ("ok" if st == 201 else "fail"), st, None
    def names(self, c, L):
        st, _, body = c[L].call("GET", "/v1/clusters", headers=self.hdr)
        if st != 200: raise ValueError(st)
        return {x["clusterName"] for x in json.loads(body)["clusters"]}

def b64(s): return base64.b64encode(s.encode()).decode()

class Etcd(Cluster):
    def boot(self):
        a, p = self.a, self.ports
        peers = ",".join(f"e{i + 1}=http://{self.at(3 + i)}" for i in range(3))
        self.argv = [[a.bin, "--name", f"e{i + 1}", "--data-dir", os.path.join(a.dir, f"s{i + 1}", "data"),
                      "--listen-client-urls", f"http://{self.at(i)}", "--advertise-client-urls", f"http://{self.at(i)}",
                      "--listen-peer-urls", f"http://{self.at(3 + i)}", "--initial-advertise-peer-urls", f"http://{self.at(3 + i)}",
                      "--initial-cluster", peers, "--initial-cluster-state", "new", "--initial-cluster-token", "failover-bench",
                      "--logger", "zap", "--log-outputs", "stderr"] for i in range(3)]
        self.hdr = {"Grpc-Metadata-hasleader": "true"}  # a follower that knows it has no leader says so at once
        for i in range(3): self.start(i)
        c = self.clients(5)
        self.ids = [self.wait_until(f"status of member {i + 1}", lambda: self.status(c, i)["header"]["member_id"], 30) for i in range(3)]
    def status(self, c, i):
        st, _, body = c[i].call("POST", "/v3/maintenance/status", {})
        if st != 200: raise ValueError(st)
        return json.loads(body)
    def view(self, c, i):
        s = self.status(c, i)
        return (self.ids.index(s["leader"]) if s.get("leader") in self.ids else None), int(s["raftTerm"])
    def caught_up(self, c):
        s = [self.status(c, i) for i in range(3)]
        top = max(int(x["raftIndex"]) for x in s)
        return len({x["leader"] for x in s}) == 1 and all(top - int(x.get("raftAppliedIndex", 0)) <= self.a.lag_ok for x in s)
    def put(self, cl, name):
        st, _, body = cl.call("POST", "/v3/kv/put", {"key": b64(name), "value": b64("1")}, self.hdr)
        return ("ok" if st == 200 and b"error" not in body else "fail"), st, None
    def names(self, c, L):
        pre = self.a.prefix
        st, _, body = c[L].call("POST", "/v3/kv/range", {"key": b64(pre), "range_end": b64(pre[:-1] + chr(ord(pre[-1]) + 1)), "keys_only": True})
        if st != 200: raise ValueError(st)
        return {base64.b64decode(k["key"]).decode() for k in json.loads(body).get("kvs", [])}

def writer(cl, stop, acks, codes, prefix):
    c, target, seq, misses, hint = cl.clients(cl.a.timeout), 0, 0, 0, None
    while not stop.is_set():
        if cl.hint != hint: target = hint = cl.hint  # the leader, as the main thread last found it
        seq += 1; name, i, hops, t_sent = f"{prefix}{seq}", target, 0, T()
        while True:
            try: kind, code, nxt = cl.put(c[i], name)
            except NETERR as e: kind, code = "fail", type(e).__name__
            codes[code] = codes.get(code, 0) + 1
            if kind != "redirect" or hops == 3: break
            i, hops = nxt, hops + 1
        if kind == "ok": acks.append((t_sent, T(), i, name)); target, misses = i, 0
        else:
            target, misses = (i + 1) % 3, misses + 1
            if misses % 3 == 0: time.sleep(0.01)  # every server refused: do not spin

def run(a, cl):
    cl.boot()
    c = cl.clients(2)
    cl.wait_until("leader with the other two caught up", lambda: cl.caught_up(c), 60)
    acks, codes, stop = [], {}, threading.Event()
    w = threading.Thread(target=writer, args=(cl, stop, acks, codes, a.prefix), daemon=True); w.start()
    cl.wait_until("first acked write", lambda: acks, 30)
    fo, el = [], []
    for n in range(1, a.cycles + 1):
        L, term = cl.stable_leader(c, a.settle)
        cl.hint = L
        seen, t_kill = len(acks), T()
        cl.kill9(L)
        t_el = t_ack = by = None
        while T() < t_kill + 30 and t_ack is None:
            if t_el is None:
                nl, nterm = cl.leader(c, skip=L)
                if nl not in (None, L): t_el = T()
            for t0, t, i, _ in acks[seen:]:  # sent after the kill: not one the old leader committed
                if t0 > t_kill and i != L: t_ack, by = t, i; break
            time.sleep(0.02)
        if t_ack is None: raise Broke(f"cycle {n}: no write acked within 30 s of killing server {L + 1}")
        t_el = min(t_el or t_ack, t_ack)  # the ack itself shows a new leader, if the poll missed it
        t_up = T(); cl.start(L)
        cl.wait_until(f"catch-up of server {L + 1} (cycle {n})", lambda: cl.caught_up(c), 60)
        fo.append(t_ack - t_kill); el.append(t_el - t_kill)
        print(f"{a.name} cycle {n}: killed server {L + 1} (term {term}); new leader seen {el[-1]:.3f} s" +
              (f" (term {nterm})" if nl not in (None, L) else "") + f", first ack {fo[-1]:.3f} s (server {by + 1});"
              f" restarted server caught up in {T() - t_up:.2f} s; acked so far {len(acks)}", flush=True)
    stop.set(); w.join(5)
    L = cl.stable_leader(c, 0)[0]
    held = cl.wait_until("final list", lambda: cl.names(cl.clients(30), L), 60)
    lost = sorted({x[3] for x in acks} - held)
    print(f"{a.name}: {len(acks)} acked writes, {len(lost)} of them missing from the leader's list{': ' + ' '.join(lost[:10]) if lost else ''};"
          f" answers seen by the writer: {dict(sorted(codes.items(), key=str))}; leader changes with no kill: {cl.changes}", flush=True)
    print(f"{a.name}: failover p50 {statistics.median(fo):.3f} s, max {max(fo):.3f} s; new leader seen p50 {statistics.median(el):.3f} s, max {max(el):.3f} s", flush=True)
    with open(a.result, "w") as f:
        f.write(f"p50={statistics.median(fo):.2f}\nmax={max(fo):.2f}\nlost={len(lost)}\ncycles={a.cycles}\nacked={len(acks)}\n"
                f"elect_p50={statistics.median(el):.2f}\nall={','.join(f'{x:.2f}' for x in fo)}\n")
    return 1 if lost else 0

def main():
    p = argparse.ArgumentParser()
    for k, d in (("name", None), ("bin", None), ("dir", None), ("pidfile", None), ("result", None),
                 ("log-level", "info"), ("prefix", "fo-")):
        p.add_argument("--" + k, default=d, required=d is None)
    for k, typ, d in (("cycles", int, 10), ("timeout", float, 1.0), ("settle", float, 1.0), ("lag-ok", int, 10)):
        p.add_argument("--" + k, type=typ, default=d)
    p.add_argument("--netns", action="store_true", help="each server in a network namespace of its own")
    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cl = (Etcd if a.name == "etcd" else Berth)(a)
    try: return run(a, cl)
    except Broke as e:
        print(f"{a.name}: broke: {e}", file=sys.stderr, flush=True); return 2
    finally: cl.stop_all()

if __name__ == "__main__":
    sys.exit(main())
