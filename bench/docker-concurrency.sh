#!/usr/bin/env bash
# How many Engine API calls the agent should have in flight (`--docker-concurrency`).
#
# On this host's Docker engine, N containers (busybox `sleep`, the test image)
# are created and started, then stopped and removed, through the Engine API on
# its Unix socket, with C calls in flight at most, for C in 1 2 4 8 16 32 and
# "all at once" (C = N: what the agent did before the limit). For each C:
#   up_s    from the first create until all N run;
#   down_s  from the first stop until all N are gone;
#   p99_ms  the 99th percentile of one call's latency (what a stop queued behind
#           the others waits for, inside the engine, when C is high).
# The chosen C is the smallest whose up_s and down_s are both within 10% of the
# best seen: past it, more calls in flight only queue inside the engine.
#
# Last line: chosen=<C> chosen_up_s=<s> chosen_down_s=<s> chosen_p99_ms=<ms>
#            all_up_s=<s> all_down_s=<s> all_p99_ms=<ms> p99_vs_all=<chosen/all> up_vs_all=<chosen/all> c<C>_up_s=...
source "$(dirname "$0")/common.bash"

N=${N:-100}
LEVELS=${LEVELS:-"1 2 4 8 16 32"}

ensure_tools python3:python3 docker:docker.io
IMAGE=$(python3 tests/integration/dockerd.py)   # starts dockerd if needed; builds the busybox image

cleanup() {
  local ids
  ids=$(docker ps -aq --filter label=bench.concurrency=1)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
}
trap 'cleanup; bench_cleanup' EXIT
cleanup

machine_note
echo "engine: $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})'), image $IMAGE, $N containers"

python3 - "$IMAGE" "$N" $LEVELS <<'EOF'
import http.client, json, socket, sys, threading, time

image, n, levels = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3:]]
SOCK = "/var/run/docker.sock"

class Conn(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=300)
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(300)
        self.sock.connect(SOCK)

def call(conn, method, path, body=None):
    t = time.monotonic()
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = conn.getresponse()
    out = r.read()
    if r.status >= 300 and r.status != 304:
        raise RuntimeError(f"{method} {path}: {r.status} {out[:200]!r}")
    return time.monotonic() - t, out

def run(c, jobs):
    """Runs every job (a function of a connection returning latencies) on c workers."""
    lat, lock, it, errors = [], threading.Lock(), iter(jobs), []
    def worker():
        conn = Conn()
        while True:
            with lock:
                job = next(it, None)
            if job is None:
                return
            try:
                ls = job(conn)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(str(e))
                conn = Conn()
                continue
            with lock:
                lat.extend(ls)
    t = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(min(c, n))]
    for th in threads: th.start()
    for th in threads: th.join()
    if errors:
        sys.exit(f"bench: {len(errors)} calls failed at concurrency {c}: {errors[0]}")
    return time.monotonic() - t, lat

def up(i):
    def job(conn):
        name = f"bench-conc-{i}"
        body = {"Image": image, "Cmd": ["sleep", "3600"], "Labels": {"bench.concurrency": "1"},
                "HostConfig": {"Memory": 32 << 20}}
        a, out = call(conn, "POST", f"/containers/create?name={name}", body)
        cid = json.loads(out)["Id"]
        b, _ = call(conn, "POST", f"/containers/{cid}/start")
        return [a, b]
    return job

def down(i):
    def job(conn):
        name = f"bench-conc-{i}"
        a, _ = call(conn, "POST", f"/containers/{name}/stop?t=0")
        b, _ = call(conn, "DELETE", f"/containers/{name}?v=1&force=1")
        return [a, b]
    return job

def p99(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * 0.99))] * 1000

results = {}
for c in levels + [n]:
    up_s, up_lat = run(c, [up(i) for i in range(n)])
    down_s, down_lat = run(c, [down(i) for i in range(n)])
    results[c] = (up_s, down_s, p99(up_lat + down_lat))
    label = "all" if c == n else str(c)
    print(f"concurrency {label:>4}: up {up_s:6.2f} s  down {down_s:6.2f} s  call p99 {results[c][2]:7.1f} ms", flush=True)

best_up = min(r[0] for r in results.values())
best_down = min(r[1] for r in results.values())
chosen = next(c for c in levels if results[c][0] <= best_up * 1.10 and results[c][1] <= best_down * 1.10) \
    if any(results[c][0] <= best_up * 1.10 and results[c][1] <= best_down * 1.10 for c in levels) else levels[-1]
ch, al = results[chosen], results[n]
figs = [f"chosen={chosen}", f"chosen_up_s={ch[0]:.2f}", f"chosen_down_s={ch[1]:.2f}", f"chosen_p99_ms={ch[2]:.0f}",
        f"all_up_s={al[0]:.2f}", f"all_down_s={al[1]:.2f}", f"all_p99_ms={al[2]:.0f}",
        f"p99_vs_all={ch[2] / al[2]:.2f}", f"up_vs_all={ch[0] / al[0]:.2f}"]
figs += [f"c{c}_up_s={results[c][0]:.2f}" for c in levels]
print(" ".join(figs))
EOF
