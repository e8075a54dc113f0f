"""The replicated command log on one server (issue 13, first part): the log is
Raft's, in DATA/raft; snapshots are taken every --snapshot-entries entries and
the log behind them is truncated; a restart after kill -9 replays what state.db
lacks; a state.db that is gone is rebuilt from the last snapshot and the log
after it. `berth server ls` and /metrics show the log."""

import json
import os
import re

from harness import Server, check, cli, expect_exit, expect_status, timeout, wait_until


def env_for(s):
    return {"BERTH_SERVER": s.url, "BERTH_TOKEN": s.token}


def segments(data_dir):
    """The raft directory's closed segments as (first, last) index pairs, and its snapshots' indexes."""
    closed, snapshots = [], []
    for name in os.listdir(os.path.join(data_dir, "raft")):
        m = re.fullmatch(r"(\d{16})-(\d{16})", name)
        if m:
            closed.append((int(m.group(1)), int(m.group(2))))
        m = re.fullmatch(r"snapshot-(\d+)-(\d+)-\d+", name)
        if m:
            snapshots.append(int(m.group(2)))
    return sorted(closed), sorted(snapshots)


@timeout(60)
def test_server_ls_shows_a_cluster_of_one():
    with Server() as s:
        expect_status(s.create_cluster("ls-one"), 201, "a change")
        p = expect_exit(cli(["server", "ls", "--json"], env=env_for(s)), 0, "server ls --json")
        v = json.loads(p.stdout)
        check(v["leader"] is True and v["term"] >= 1, "this server leads: %r" % v)
        check(v["appliedIndex"] == v["commitIndex"] == v["lastIndex"] >= 3, "indexes: %r" % v)
        check(len(v["servers"]) == 1, "one server: %r" % v["servers"])
        me = v["servers"][0]
        check(me["self"] and me["leader"] and me["role"] == "voter" and me["id"] == v["id"], "the server: %r" % me)
        check(me["lag"] == 0 and me["matchIndex"] == v["lastIndex"], "no lag: %r" % me)
        with open(os.path.join(s.data_dir, "server-id")) as f:
            check(f.read().strip() == v["id"], "the id is the one in DATA/server-id")
        p = expect_exit(cli(["server", "ls"], env=env_for(s)), 0, "server ls")
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        check(lines[0].startswith("term ") and lines[1].split()[:4] == ["ID", "ADDRESS", "ROLE", "LEADER"],
              "the table: %r" % lines)
        row = lines[2].split()
        check(row[0] == v["id"] and "(this)" in lines[2] and "voter" in row and "yes" in row, "the row: %r" % row)
        # A read-only token may look; the route is on the index of the API.
        ro = expect_status(s.request("POST", "/v1/tokens", {"role": "read-only"}), 201, "token").json()
        r = s.request("GET", "/v1/servers", token=ro["token"]["secret"])
        expect_status(r, 200, "read-only GET /v1/servers")
        wait_until(lambda: s.metric("berth_raft_leader") == 1.0 and s.metric("berth_raft_term") >= 1,
                   what="the raft gauges in /metrics")


@timeout(120)
def test_snapshots_truncate_the_log_and_rebuild_a_lost_state_db():
    with Server(args=["--snapshot-entries", "16"]) as s:
        # One create at a time: one entry each.
        for i in range(120):
            expect_status(s.create_cluster("snap-%03d" % i), 201, "create %d" % i)
        wait_until(lambda: (s.metric("berth_raft_snapshots_taken") or 0) >= 3, what="snapshots taken")
        closed, snapshots = segments(s.data_dir)
        check(snapshots, "no snapshot file in DATA/raft: %r" % os.listdir(os.path.join(s.data_dir, "raft")))
        # The log behind the last snapshot is gone (16 entries kept behind it).
        check(not closed or closed[0][0] > 1, "the log still starts at entry 1: %r" % closed)
        want = set(s.cluster_names())
        check({"snap-%03d" % i for i in range(120)} <= want, "clusters missing before the crash")

        s.kill()  # kill -9
        s.start()
        check(set(s.cluster_names()) == want, "after kill -9 and a restart the clusters differ")
        check((s.metric("berth_raft_snapshots_installed") or 0) == 0, "state.db held it all: nothing to install")
        s.kill()

        # state.db lost: the last snapshot and the log after it bring it all back.
        for f in os.listdir(s.data_dir):
            if f.startswith("state.db"):
                os.remove(os.path.join(s.data_dir, f))
        s.start()
        check(set(s.cluster_names()) == want, "rebuilt from the snapshot and the log, the clusters differ")
        wait_until(lambda: s.metric("berth_raft_snapshots_installed") == 1.0, what="one snapshot installed")
        expect_status(s.create_cluster("after-rebuild"), 201, "a change after the rebuild")
        s.stop()
        s.start()
        check(set(s.cluster_names()) == want | {"after-rebuild"}, "after a clean restart the clusters differ")


@timeout(60)
def test_bad_snapshot_entries_flag_is_a_usage_error():
    for bad in ("0", "3", "x", "2000000"):
        p = cli(["server", "--data", "/nonexistent/never-made", "--snapshot-entries", bad])
        check(p.returncode == 2 and "--snapshot-entries: must be a whole number from 4 to 1000000" in p.stderr,
              "--snapshot-entries %s: %r" % (bad, p.stderr))
