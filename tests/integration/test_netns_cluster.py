"""Three servers on three hosts (issue 13): each `berth server` runs in a network
namespace of its own on a bridge the test makes (netns.py), listening on its own
address at port 7070, so the servers reach one another as on separate machines,
and a test cuts links with iptables in one host's namespace while it still talks
to every server from the root namespace. The leader's kill -9 (in the middle of
a stream of changes) and SIGSTOP, as test_cluster.py does on loopback; what
loopback cannot do, a partition of the leader and of a follower; a disk replaced
by an empty one (the server rejoins by a snapshot); a rolling restart under
writes. After each, every change acknowledged (201) is on every server.

Waits are upper bounds on a slow machine, never claims that something was fast."""

import contextlib
import functools
import json
import os
import shutil
import signal
import threading

from harness import TestFailure, check, cli, expect_exit, expect_status, timeout, wait_until
from netns import Network
from test_cluster import caught_up, env_for, join, leader_of, server_token, view

# Elections, catching up and restarts on a loaded two-core machine: how long any
# of them may take before the test gives up.
SLOW = 90


@contextlib.contextmanager
def three_hosts(args=()):
    """Yields (net, servers): three servers, one per host of a new Network, formed
    into a cluster (the first bootstrapped it, the two others joined through it)
    and caught up. Afterwards every server is killed and the network taken down,
    whatever happened."""
    net = Network(3)
    servers = []
    try:
        servers.append(net.server(0, args=args))
        token = server_token(servers[0])
        for i in (1, 2):
            servers.append(join(servers[0], token, args=args, make=functools.partial(net.server, i)))
        wait_until(lambda: caught_up(servers[0], 3), wait=SLOW, what="three servers caught up")
        yield net, servers
    finally:
        for s in servers:
            s.kill()  # (a stopped one too)
        net.close()


def restart(s, admin):
    """Starts `s` again (same data directory, address and port); `admin`: the
    cluster's admin token, which Server.start finds only in the data directory of
    the first server, and only at its first start."""
    s.start()
    s.token = admin


def error_code(r):
    try:
        return json.loads(r.body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def agreed_leader(servers):
    """The server that says it leads and that every one of `servers` names as the
    leader, or None (one does not answer, or they disagree)."""
    try:
        views = [view(s) for s in servers]
    except Exception:
        return None
    lid = views[0]["leaderId"]
    if any(v["leaderId"] != lid for v in views):
        return None
    return next((s for s, v in zip(servers, views) if v["id"] == lid and v["leader"]), None)


def settled(servers, wait=SLOW):
    """Waits until `servers` agree on a leader and it sees each of them with nothing
    left to send; returns the leader."""

    def leader_caught_up():
        leader = agreed_leader(servers)
        try:
            return leader if leader is not None and caught_up(leader, len(servers)) else None
        except Exception:
            return None

    return wait_until(leader_caught_up, wait=wait, step=0.2,
                      what="one leader that %d servers agree on, each caught up" % len(servers))


def write(servers, name, wait=SLOW):
    """Creates the cluster `name` through whichever of `servers` takes it, trying
    each in turn through elections; returns the one that took it. A 409 (a try that
    went through unanswered, as a timed-out one may) counts as taken."""

    def attempt():
        for s in servers:
            try:
                r = s.create_cluster(name)
            except Exception:
                continue  # not answering (yet)
            if r.status == 201 or (r.status == 409 and error_code(r) == "ClusterAlreadyExists"):
                return s
            check(r.status in (307, 503), "creating %s on %s: %r" % (name, s.url, r))
        return None

    return wait_until(attempt, wait=wait, step=0.2, what="the change %s taken by one of the servers" % name)


def expect_all(s, names, wait=SLOW):
    """Waits until server `s` lists every cluster of `names`."""

    def missing():
        try:
            return sorted(set(names) - set(s.cluster_names()))
        except Exception as e:
            return ["(no answer: %s)" % e]

    try:
        wait_until(lambda: not missing(), wait=wait, step=0.2, what="every change on " + s.url)
    except TestFailure:
        gone = missing()
        raise TestFailure("%s lacks %d of the %d changes acknowledged: %r" % (s.url, len(gone), len(names), gone[:20]))


def expect_none(s, names):
    """Server `s` lists no cluster of `names` (changes that were refused)."""
    made = sorted(set(names) & set(s.cluster_names()))
    check(not made, "changes that were refused are on %s: %r" % (s.url, made))


def expect_redirect_to(s, leader, name):
    """A change on follower `s` is answered 307 to `leader` (the change is not made:
    the test does not follow it)."""
    r = s.create_cluster(name)
    check(r.status == 307 and r.header("location") == leader.url + "/v1/clusters",
          "a change on the follower %s is sent to the leader %s: %r %r" % (s.url, leader.url, r, r.headers))


class Writer:
    """A thread creating clusters PREFIX-0, PREFIX-1, ... through whichever server
    takes them, one after another until stop(); `made` holds every one acknowledged
    (or found made when tried again), `unexpected` any answer but 201, 307, 503 or
    such a 409."""

    def __init__(self, servers, prefix):
        self.servers = servers
        self.prefix = prefix
        self.made = []
        self.unexpected = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        i = 0
        while not self._stop.is_set():
            name = "%s-%d" % (self.prefix, i)
            for s in self.servers:
                try:
                    r = s.request("POST", "/v1/clusters", {"clusterName": name}, wait=5)
                except Exception:
                    continue  # stopped, restarting, or the answer lost: the next server
                if r.status == 201 or (r.status == 409 and error_code(r) == "ClusterAlreadyExists"):
                    self.made.append(name)
                    i += 1
                    break
                if r.status not in (307, 503):
                    self.unexpected.append((name, s.url, r))
            else:
                self._stop.wait(0.1)  # no server took it: again, the same name

    def stop(self):
        self._stop.set()
        self._thread.join(30)
        check(not self._thread.is_alive(), "the writer did not stop")


@timeout(400)
def test_leader_killed_a_new_one_is_elected_and_the_old_one_rejoins_as_a_follower():
    with three_hosts() as (net, servers):
        old = leader_of(servers)
        admin = old.token
        names = ["before-kill-%d" % i for i in range(10)]
        for n in names:
            expect_status(old.create_cluster(n), 201, "a change on the leader")

        # Killed in the middle of a stream of changes, some in flight.
        writer = Writer(servers, "stream")
        try:
            wait_until(lambda: len(writer.made) >= 5, wait=SLOW, what="writes before the kill")
            old.kill()
            others = [s for s in servers if s is not old]
            new = wait_until(lambda: leader_of(others), wait=SLOW, what="a new leader among the other two")
            expect_all(new, names)
            for i in range(5):
                names.append("after-kill-%d" % i)
                write(others, names[-1])

            restart(old, admin)
            leader = settled(servers)
            check(leader is not old and not view(old)["leader"], "the restarted server follows %s" % leader.url)
            done = len(writer.made)
            wait_until(lambda: len(writer.made) >= done + 5, wait=SLOW, what="writes going on after the restart")
        finally:
            writer.stop()
        check(not writer.unexpected, "answers to the writer: %r" % writer.unexpected[:5])
        for s in servers:
            expect_all(s, names + writer.made)
        expect_redirect_to(old, leader, "on-the-restarted")


@timeout(400)
def test_leader_frozen_by_sigstop_a_new_one_is_elected_and_the_woken_one_takes_no_change():
    with three_hosts() as (net, servers):
        old = leader_of(servers)
        names = ["before-stop-%d" % i for i in range(10)]
        for n in names:
            expect_status(old.create_cluster(n), 201, "a change on the leader")

        old.signal(signal.SIGSTOP)
        others = [s for s in servers if s is not old]
        new = wait_until(lambda: leader_of(others), wait=SLOW, what="a new leader while the old one is frozen")
        for i in range(5):
            names.append("while-frozen-%d" % i)
            write(others, names[-1])

        # Woken, it refuses the change (503: NoLeader, or LeadershipLost for a
        # change it took in the moment before it read the new term, which cannot
        # commit: the others are past its term) or sends it to the new leader.
        old.signal(signal.SIGCONT)
        r = old.create_cluster("on-the-woken")
        check((r.status == 503 and error_code(r) in ("NoLeader", "NotLeader", "LeadershipLost"))
              or (r.status == 307 and r.header("location") == new.url + "/v1/clusters"),
              "the woken leader takes no change (503 or 307 to %s): %r %r" % (new.url, r, r.headers))
        leader = settled(servers)
        check(leader is not old and not view(old)["leader"], "the woken server follows %s" % leader.url)
        # (The gauges are refreshed once a second: this one may still show the
        # moment the server was frozen.)
        wait_until(lambda: old.metric("berth_raft_lease_held") == 0.0, what="the lease gauge of the woken server at 0")
        expect_redirect_to(old, leader, "after-wake")
        for s in servers:
            expect_all(s, names)
            expect_none(s, ["on-the-woken", "after-wake"])


@timeout(400)
def test_leader_partitioned_away_stops_taking_changes_and_follows_after_the_heal():
    with three_hosts() as (net, servers):
        old = leader_of(servers)
        others = [s for s in servers if s is not old]
        names = ["before-cut-%d" % i for i in range(10)]
        for n in names:
            expect_status(old.create_cluster(n), 201, "a change on the leader")

        # The leader hears from neither peer, nor they from it; the test still
        # reaches it. Once its lease lapses it refuses changes; until then a change
        # waits on a commit that cannot come, and must not be acknowledged.
        net.cut(net.host_of(old), [net.host_of(s) for s in others])
        refused = []

        def refuses():
            refused.append("cut-off-%d" % len(refused))
            try:
                r = old.create_cluster(refused[-1])
            except Exception:
                return False  # held until the client gave up
            check(r.status != 201, "a leader cut off from every peer acknowledged %s" % refused[-1])
            return r.status == 503 and error_code(r) == "NoLeader"

        wait_until(refuses, wait=SLOW, step=0.2, what="503 NoLeader from the leader cut off")
        wait_until(lambda: old.metric("berth_raft_lease_held") == 0.0, what="the cut off leader's lease gauge at 0")

        wait_until(lambda: leader_of(others), wait=SLOW, what="a new leader on the majority's side")
        for i in range(10):
            names.append("majority-%d" % i)
            write(others, names[-1])
        r = old.create_cluster("still-cut-off")
        check(r.status == 503 and error_code(r) == "NoLeader", "the old leader, still cut off: %r" % r)
        refused.append("still-cut-off")

        net.heal(net.host_of(old))
        leader = settled(servers)
        check(leader is not old and not view(old)["leader"], "after the heal the old leader follows %s" % leader.url)
        expect_redirect_to(old, leader, "after-heal")
        refused.append("after-heal")
        for s in servers:
            expect_all(s, names)
            expect_none(s, refused)


@timeout(400)
def test_follower_partitioned_away_the_leader_goes_on_and_the_follower_catches_up():
    with three_hosts() as (net, servers):
        leader = leader_of(servers)
        cut, other = [s for s in servers if s is not leader]
        names = ["before-cut-%d" % i for i in range(5)]
        for n in names:
            expect_status(leader.create_cluster(n), 201, "a change on the leader")
        expect_all(cut, names)

        net.cut(net.host_of(cut), [net.host_of(leader), net.host_of(other)])
        term = view(cut)["term"]
        during = ["during-cut-%d" % i for i in range(20)]
        for n in during:
            expect_status(leader.create_cluster(n), 201, "a change on the leader with one follower cut off")
        names += during
        expect_all(other, names)
        check(not set(during) & set(cut.cluster_names()), "the follower cut off got changes: the cut does not hold")
        target = view(leader)["appliedIndex"]
        # Cut off, it stands for election, but asks first whether it could win
        # (pre-vote), so its term stays and it cannot depose the leader once back.
        wait_until(lambda: view(cut)["leaderId"] == "0", wait=SLOW, what="the follower cut off without a leader")
        check(view(cut)["term"] == term, "the follower cut off stays in term %d: %r" % (term, view(cut)))
        # The leader's metrics say how far behind each peer is (refreshed each second).
        lag = 'berth_raft_peer_lag_entries{peer="%s"}' % view(cut)["id"]
        wait_until(lambda: (leader.metric(lag) or 0) >= len(during), wait=SLOW,
                   what="the leader's %s at %d or more" % (lag, len(during)))
        check(cut.metric(lag.replace(view(cut)["id"], view(leader)["id"])) == -1,
              "a follower does not know its peers' lag: %r" % cut.metric(lag.replace(view(cut)["id"], view(leader)["id"])))

        net.heal(net.host_of(cut))
        wait_until(lambda: view(cut)["appliedIndex"] >= target, wait=SLOW,
                   what="the follower's applied index at the leader's %d" % target)
        expect_all(cut, names)
        wait_until(lambda: leader.metric(lag) == 0, wait=SLOW, what="the leader's %s back at 0" % lag)


@timeout(400)
def test_server_with_its_disk_replaced_rejoins_by_a_snapshot():
    args = ["--snapshot-entries", "8"]
    with three_hosts(args) as (net, servers):
        leader = leader_of(servers)
        lost = [s for s in servers if s is not leader][-1]
        names = ["before-loss-%d" % i for i in range(40)]
        for n in names:
            expect_status(leader.create_cluster(n), 201, "a change on the leader")
        wait_until(lambda: leader.metric("berth_raft_snapshots_taken") >= 1, wait=SLOW,
                   what="a snapshot taken by the leader (its log truncated behind it)")
        lost_id = view(lost)["id"]

        lost.kill()
        shutil.rmtree(lost.data_dir)
        p = expect_exit(cli(["server", "rm", lost_id], env=env_for([leader.url], leader.token)), 0, "berth server rm")
        check("removed server " + lost_id in p.stdout, p.stdout)
        wait_until(lambda: lost_id not in [x["id"] for x in view(leader)["servers"]], wait=SLOW,
                   what="the server gone from the configuration")
        names.append("while-two")
        expect_status(leader.create_cluster(names[-1]), 201, "a change with two servers")

        # The same host and address, an empty data directory: it joins anew.
        os.makedirs(lost.data_dir)
        lost.args = ["--join", leader.url, "--token", server_token(leader)] + args + ["--no-agent"]
        restart(lost, leader.token)
        wait_until(lambda: any("joined the cluster" in l for l in lost.stdout_lines), wait=SLOW,
                   what="the join of the server with an empty disk")
        check(view(lost)["id"] != lost_id, "it joined under a new id")
        settled(servers)
        # (The gauges are refreshed once a second.)
        wait_until(lambda: lost.metric("berth_raft_snapshots_installed") >= 1, wait=SLOW,
                   what="berth_raft_snapshots_installed >= 1 on the server with an empty disk")
        names.append("after-rejoin")
        write(servers, names[-1])
        for s in servers:
            expect_all(s, names)


@timeout(600)
def test_rolling_restart_under_writes_loses_nothing():
    with three_hosts() as (net, servers):
        admin = servers[0].token
        writer = Writer(servers, "roll")
        try:
            wait_until(lambda: len(writer.made) >= 5, wait=SLOW, what="writes before the restarts")
            for s in servers:
                s.stop()
                restart(s, admin)
                settled(servers)
                done = len(writer.made)
                wait_until(lambda: len(writer.made) >= done + 5, wait=SLOW,
                           what="writes going on after %s restarted" % s.url)
        finally:
            writer.stop()
        check(not writer.unexpected, "answers to the writer: %r" % writer.unexpected[:5])
        settled(servers)
        for s in servers:
            expect_all(s, writer.made)
