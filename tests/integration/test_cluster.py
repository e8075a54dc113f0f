"""A cluster of servers on loopback (issue 13, second part): servers join with a
server token (--join, --token) and become voters, or standbys past three; the
log is replicated over mutual TLS on the API port (GET /v1/raft, Upgrade:
berth-raft); followers serve reads and send changes to the leader (307); a
leader killed with SIGKILL is replaced by an election and nothing acknowledged
is lost; a restarted server catches up; `berth server rm` removes one; a
voter dead for --server-dead-after is replaced by a standby; every answer says
the applied index it was made at and whether a read is the leader's."""

import json
import os
import shutil
import signal
import time

from harness import (Server, check, cli, expect_error, expect_exit, expect_status, run_server_once, scratch_dir, timeout,
                     wait_until)


def server_token(leader):
    r = expect_status(leader.request("POST", "/v1/tokens", {"role": "server"}), 201, "a server token")
    return r.json()["token"]["secret"]


def join(at, token, data_dir=None, args=(), make=Server):
    """A new server joining the cluster through `at` (any member). `make(args=...)`
    starts it (a Server on loopback unless another host's is given); `args` come
    after --join and --token."""
    s = make(data_dir=data_dir, args=["--join", at.url, "--token", token] + list(args))
    s.token = at.token
    wait_until(lambda: any("joined the cluster" in l for l in s.stdout_lines), what="the join of a server")
    return s


def view(s):
    return expect_status(s.request("GET", "/v1/servers"), 200, "GET /v1/servers").json()


def leader_of(servers):
    """The server that leads and acts (it takes changes), or None."""
    for s in servers:
        if not s.alive():
            continue
        try:
            if view(s)["leader"] and s.metric("berth_raft_lease_held") == 1.0:
                return s
        except Exception:
            continue
    return None


def caught_up(leader, n):
    v = view(leader)
    return v["leader"] and len(v["servers"]) == n and all(x.get("lag") == 0 for x in v["servers"])


def three_servers(args=()):
    """Three servers on loopback, the first the leader and acting (it holds its
    lease), every one holding its admin token; the leader first."""
    s1 = Server(args=list(args))
    token = server_token(s1)
    servers = [s1]
    try:
        servers += [join(s1, token, args=args) for _ in range(2)]
        wait_until(lambda: caught_up(s1, 3), wait=30, what="three servers caught up")
        wait_until(lambda: s1.metric("berth_raft_lease_held") == 1.0, what="the leader acts")
    except BaseException:
        for s in servers:
            s.kill()
        raise
    return servers


def env_for(urls, token):
    return {"BERTH_SERVER": ",".join(urls), "BERTH_TOKEN": token}


@timeout(180)
def test_three_servers_replicate_redirect_and_survive_the_leaders_kill():
    s1 = Server()
    token = server_token(s1)
    s2 = join(s1, token)
    s3 = join(s2, token)  # through a follower: its 307 leads to the leader
    servers = [s1, s2, s3]
    try:
        wait_until(lambda: caught_up(s1, 3), what="three servers caught up")
        v = view(s1)
        check([x["role"] for x in v["servers"]] == ["voter"] * 3, "three voters: %r" % v["servers"])
        ids = {x["address"]: x["id"] for x in v["servers"]}
        check(ids["127.0.0.1:%d" % s2.port] == open(os.path.join(s2.data_dir, "server-id")).read().strip(),
              "the joined server is in the log by its id and address: %r" % ids)
        # The joined servers hold the cluster's CA and secrets key, not their own.
        for s in (s2, s3):
            check(open(s.ca_file).read() == open(s1.ca_file).read(), "the cluster's CA on " + s.data_dir)
            check(not os.path.exists(os.path.join(s.data_dir, "admin-token")), "no admin token of its own")

        # Changes on the leader reach every server; followers serve reads.
        for i in range(5):
            expect_status(s1.create_cluster("rep-%d" % i), 201, "create on the leader")
        for s in (s2, s3):
            wait_until(lambda: "rep-4" in s.cluster_names(), what="the clusters on a follower")

        # A follower sends changes to the leader.
        r = s3.create_cluster("via-follower")
        check(r.status == 307, "a change on a follower: %r" % r)
        check(r.header("location") == s1.url + "/v1/clusters", "Location: %r" % r.headers)
        check(json.loads(r.body)["error"]["code"] == "NotLeader", "the answer says why: %r" % r.body)
        # The CLI follows it, and skips a server that does not answer.
        dead = "https://127.0.0.1:1"
        p = expect_exit(cli(["cluster", "create", "via-cli"], env=env_for([dead, s3.url], s1.token)), 0,
                        "the CLI through a dead server and a follower")
        check("via-cli" in p.stdout, p.stdout)
        check("via-cli" in s1.cluster_names(), "made on the leader")
        # The same servers kept by `berth configure`, comma-separated.
        home = scratch_dir("home")
        expect_exit(cli(["configure", "--server", dead + "," + s3.url, "--token", s1.token], home=home), 0,
                    "configure with two servers")
        expect_exit(cli(["cluster", "create", "via-config"], home=home), 0, "the CLI configured with two servers")
        check("via-config" in s1.cluster_names(), "made on the leader through the configured servers")
        p = cli(["configure", "--server", s3.url + ",https://[bad"], home=home)
        check(p.returncode == 2 and "[bad" in p.stderr, "a bad server in the list is refused: %r" % p.stderr)

        # The leader dies: the two others elect one, which takes changes; nothing
        # acknowledged is lost.
        s1.kill()
        started = time.monotonic()
        survivors = [s2, s3]
        new = wait_until(lambda: leader_of(survivors), wait=30, what="a new leader")
        expect_status(new.create_cluster("after-kill"), 201, "a change on the new leader")
        print("failover: a change accepted %.2f s after the kill" % (time.monotonic() - started))
        names = new.cluster_names()
        for n in ["rep-%d" % i for i in range(5)] + ["via-cli", "after-kill"]:
            check(n in names, "%s survives the leader's death: %r" % (n, names))
        check("via-follower" not in names, "the change a follower refused was not made")
        # The CLI given every server finds the new leader.
        expect_exit(cli(["cluster", "create", "cli-after-kill"], env=env_for([s1.url, s2.url, s3.url], s1.token)),
                    0, "the CLI with every server's URL after the kill")

        # The old leader comes back as a follower and catches up.
        s1.start()
        wait_until(lambda: caught_up(new, 3), wait=30, what="the old leader caught up")
        wait_until(lambda: "cli-after-kill" in s1.cluster_names(), what="the restarted server has the new changes")
        check(not view(s1)["leader"], "the restarted server follows")
        r = s1.create_cluster("on-old-leader")
        check(r.status == 307 and r.header("location") == new.url + "/v1/clusters",
              "the old leader sends changes to the new one: %r %r" % (r, r.headers))
    finally:
        for s in servers:
            s.kill()


@timeout(180)
def test_membership_standby_promotion_and_removal():
    s1 = Server()
    token = server_token(s1)
    servers = [s1]
    try:
        for _ in range(3):
            servers.append(join(s1, token))
        wait_until(lambda: caught_up(s1, 4), wait=30, what="four servers caught up")
        roles = {x["address"]: x["role"] for x in view(s1)["servers"]}
        check(sorted(roles.values()) == ["standby", "voter", "voter", "voter"], "three voters, a standby: %r" % roles)
        standby = [s for s in servers if roles["127.0.0.1:%d" % s.port] == "standby"][0]
        voter = [s for s in servers[1:] if s is not standby][0]
        vid = [x["id"] for x in view(s1)["servers"] if x["address"] == "127.0.0.1:%d" % voter.port][0]

        # Removing a voter: the standby takes its place.
        ro = expect_status(s1.request("POST", "/v1/tokens", {"role": "read-only"}), 201, "token").json()
        expect_error(s1.request("DELETE", "/v1/servers/" + vid, token=ro["token"]["secret"]), 403, "Forbidden",
                     "a read-only token may not remove a server")
        p = expect_exit(cli(["server", "rm", vid], env=env_for([voter.url], s1.token)), 0, "berth server rm")
        check("removed server " + vid in p.stdout, p.stdout)
        wait_until(lambda: sorted(x["role"] for x in view(s1)["servers"]) == ["voter"] * 3, wait=30,
                   what="the standby promoted in the removed voter's place")
        check(vid not in [x["id"] for x in view(s1)["servers"]], "the removed server is gone from the log")
        expect_status(s1.create_cluster("after-rm"), 201, "a change with the three voters left")
        for s in servers:
            if s is not voter:
                wait_until(lambda: "after-rm" in s.cluster_names(), what="the change on every member")
        expect_error(s1.request("DELETE", "/v1/servers/12345"), 404, "ServerNotFound", "removing an unknown server")
        expect_error(s1.request("DELETE", "/v1/servers/abc"), 400, "InvalidParameter", "a bad id")
    finally:
        for s in servers:
            s.kill()


@timeout(120)
def test_joining_is_refused_clearly():
    with Server() as s1:
        # Not a server token: the gate says who may.
        deploy = expect_status(s1.request("POST", "/v1/tokens", {"role": "deploy"}), 201, "token").json()["token"]
        p = run_server_once(["--data", os.path.join(os.path.dirname(s1.data_dir), "j1"), "--listen", "127.0.0.1:0",
                             "--no-agent", "--join", s1.url, "--token", deploy["secret"]])
        check(p.returncode == 1 and "403" in p.stderr and "only server and admin tokens may" in p.stderr,
              "a deploy token cannot join: %r" % p.stderr)
        token = server_token(s1)
        bare = token.split("::", 1)[1]
        p = run_server_once(["--data", os.path.join(os.path.dirname(s1.data_dir), "j2"), "--listen", "127.0.0.1:0",
                             "--no-agent", "--join", s1.url, "--token", bare])
        check(p.returncode == 1 and "pinned token" in p.stderr, "a token without the CA's pin: %r" % p.stderr)
        p = run_server_once(["--data", os.path.join(os.path.dirname(s1.data_dir), "j3"), "--join", s1.url])
        check(p.returncode == 2 and "--join and --token go together" in p.stderr, p.stderr)
        p = run_server_once(["--data", os.path.join(os.path.dirname(s1.data_dir), "j4"), "--no-tls", "--join", s1.url,
                             "--token", token])
        check(p.returncode == 2 and "--join needs TLS" in p.stderr, p.stderr)
        # Another cluster's data directory is not taken over, whether it holds a
        # log or only that cluster's CA.
        with Server() as other:
            other.stop()
            p = run_server_once(["--data", other.data_dir, "--listen", "127.0.0.1:0", "--no-agent", "--join", s1.url,
                                 "--token", token])
            check(p.returncode == 1 and "another cluster" in p.stderr, p.stderr)
            shutil.rmtree(os.path.join(other.data_dir, "raft"))
            p = run_server_once(["--data", other.data_dir, "--listen", "127.0.0.1:0", "--no-agent", "--join", s1.url,
                                 "--token", token])
            check(p.returncode == 1 and "CA of another cluster" in p.stderr, p.stderr)
        # The raft route takes only a server's peer certificate.
        r = s1.request("GET", "/v1/raft", headers={"Connection": "Upgrade", "Upgrade": "berth-raft",
                                                   "Berth-Raft-Id": "1"})
        expect_error(r, 401, "Unauthorized", "an admin token on the raft route")
        check("peer certificate" in r.body.decode(), r.body)
        expect_error(s1.request("POST", "/v1/servers", {"id": "7", "address": "0.0.0.0:1"}), 400, "InvalidParameter",
                     "an address others cannot reach")
        expect_error(s1.request("POST", "/v1/servers", {"id": "x", "address": "127.0.0.1:1"}), 400, "InvalidParameter",
                     "an id that is not a number")


@timeout(180)
def test_a_cluster_restarted_whole_after_sigkill_keeps_everything():
    servers = three_servers()
    s1 = servers[0]
    try:
        for i in range(20):
            expect_status(s1.create_cluster("whole-%d" % i), 201, "create")
        for s in servers:
            s.kill()
        for s in servers:
            s.start()
            s.token = s1.token  # (a joined server has no admin-token file of its own)
        leader = wait_until(lambda: leader_of(servers), wait=30, what="a leader after the whole cluster restarted")
        expect_status(leader.create_cluster("whole-after"), 201, "a change after the restart")
        for s in servers:
            wait_until(lambda: "whole-after" in s.cluster_names() and "whole-19" in s.cluster_names(),
                       what="everything on " + s.data_dir)
    finally:
        for s in servers:
            s.kill()


@timeout(180)
def test_the_lease_a_leader_cut_off_stops_acting_and_a_frozen_one_wakes_as_follower():
    servers = three_servers()
    s1 = servers[0]
    try:
        for s in servers[1:]:
            check(s.metric("berth_raft_lease_held") == 0.0, "a follower holds no lease")

        # Both followers frozen: the leader hears from no majority, so it stops
        # acting within the lease, and refuses changes at once instead of holding them.
        for s in servers[1:]:
            s.signal(signal.SIGSTOP)
        wait_until(lambda: s1.metric("berth_raft_lease_held") == 0.0, what="the lease lapses")
        r = s1.create_cluster("cut-off")
        check(r.status == 503 and json.loads(r.body)["error"]["code"] == "NoLeader" and r.header("retry-after"),
              "a change on a leader cut off: %r" % r)
        for s in servers[1:]:
            s.signal(signal.SIGCONT)
        leader = wait_until(lambda: leader_of(servers), wait=30, what="a leader once the followers woke")
        wait_until(lambda: leader.create_cluster("healed").status == 201, what="a change after the heal")

        # The leader frozen: the others elect one; woken, the old one follows and
        # sends changes to the new leader.
        old = leader
        others = [s for s in servers if s is not old]
        old.signal(signal.SIGSTOP)
        new = wait_until(lambda: leader_of(others), wait=30, what="a new leader while the old one is frozen")
        expect_status(new.create_cluster("while-frozen"), 201, "a change on the new leader")
        old.signal(signal.SIGCONT)
        r = old.create_cluster("on-the-woken")
        check(r.status in (307, 503), "the woken leader takes no change: %r" % r)
        wait_until(lambda: "while-frozen" in old.cluster_names(), what="the woken server catches up")
        check(old.metric("berth_raft_lease_held") == 0.0, "the woken server holds no lease")
        r = old.create_cluster("after-wake")
        check(r.status == 307 and r.header("location") == new.url + "/v1/clusters", "%r %r" % (r, r.headers))
    finally:
        for s in servers:
            s.signal(signal.SIGCONT)
            s.kill()


def applied(r):
    return int(r.header("berth-applied-index"))


@timeout(180)
def test_answers_say_the_applied_index_and_whether_the_read_is_the_leaders():
    servers = three_servers()
    s1 = servers[0]
    try:
        r = expect_status(s1.create_cluster("fresh"), 201, "a change on the leader")
        made_at = applied(r)
        check(made_at > 0 and r.header("berth-read") is None, "a change says its index, not a read: %r" % r.headers)
        for path in ("/v1/clusters", "/v1/servers", "/v1/version", "/healthz"):
            r = expect_status(s1.request("GET", path), 200, "GET " + path + " on the leader")
            check(r.header("berth-read") == "leader", "the leader's read of %s: %r" % (path, r.headers))
            check(applied(r) >= made_at, "the leader's index covers the change: %r" % r.headers)
        r = s1.request("GET", "/v1/clusters/nonexistent")
        check(r.status == 404 and r.header("berth-read") == "leader" and applied(r) >= made_at,
              "an error answer carries them too: %r" % r.headers)
        for s in servers[1:]:
            for path in ("/v1/clusters", "/healthz"):
                r = expect_status(s.request("GET", path), 200, "GET " + path + " on a follower")
                on_leader = applied(s1.request("GET", "/healthz"))
                check(r.header("berth-read") == "stale", "a follower's read of %s: %r" % (path, r.headers))
                check(applied(r) <= on_leader, "a follower's index %d is at most the leader's %d" %
                      (applied(r), on_leader))
            # Once its index reaches the change's, the follower's read holds it.
            r = wait_until(lambda: (lambda r: r if applied(r) >= made_at else None)(s.request("GET", "/v1/clusters")),
                           what="the follower applies the change")
            check("fresh" in [c["clusterName"] for c in r.json()["clusters"]], "the change in the read: %r" % r.body)
    finally:
        for s in servers:
            s.kill()


@timeout(240)
def test_a_dead_voter_is_replaced_by_the_standby_and_stays_a_standby_when_back():
    p = run_server_once(["--data", "/nonexistent", "--server-dead-after", "1s"])
    check(p.returncode == 2 and "from 2s to 1h" in p.stderr, "too short: %r" % p.stderr)
    dead_after = ["--server-dead-after", "2s"]
    s1 = Server(args=dead_after)
    token = server_token(s1)
    servers = [s1]
    try:
        for _ in range(3):
            servers.append(join(s1, token, args=dead_after))
        wait_until(lambda: caught_up(s1, 4), wait=30, what="four servers caught up")
        by_address = {"127.0.0.1:%d" % s.port: s for s in servers}
        roles = {x["address"]: x["role"] for x in view(s1)["servers"]}
        check(sorted(roles.values()) == ["standby", "voter", "voter", "voter"], "three voters, a standby: %r" % roles)
        standby = [s for s in servers if roles["127.0.0.1:%d" % s.port] == "standby"][0]
        victim = [s for s in servers[1:] if s is not standby][0]
        check(roles["127.0.0.1:%d" % victim.port] == "voter", "the victim is a voter")

        victim.kill()
        live = [s for s in servers if s is not victim]

        def replaced():
            leader = leader_of(live)
            if not leader:
                return None
            r = {by_address[x["address"]]: x["role"] for x in view(leader)["servers"]}
            return leader if r[standby] == "voter" and r[victim] == "standby" else None
        leader = wait_until(replaced, wait=60, what="the standby a voter, the dead voter a standby")
        v = view(leader)
        check(sorted(x["role"] for x in v["servers"]) == ["standby", "voter", "voter", "voter"],
              "three voters still: %r" % v["servers"])
        check(leader.metric("berth_raft_voters_replaced_total") == 1.0, "counted once")
        expect_status(leader.create_cluster("after-replacement"), 201, "a change with the dead voter replaced")

        # Back, the old voter catches up as a standby and is not made a voter again.
        victim.start()
        victim.token = s1.token
        wait_until(lambda: "after-replacement" in victim.cluster_names(), wait=30, what="the old voter catches up")
        time.sleep(3)  # longer than --server-dead-after: nothing changes back
        r = {by_address[x["address"]]: x["role"] for x in view(leader)["servers"]}
        check(r[victim] == "standby" and r[standby] == "voter", "back, it stays a standby: %r" % r)
        expect_status(leader.create_cluster("after-return"), 201, "a change once it is back")
    finally:
        for s in servers:
            s.kill()


@timeout(180)
def test_server_ls_shows_last_contact_on_the_leader_and_names_it_on_a_follower():
    servers = three_servers()
    s1 = servers[0]
    try:
        v = view(s1)
        for x in v["servers"]:
            check(0 <= x["heardMsAgo"] < 5000, "the leader heard from every server lately: %r" % x)
        p = expect_exit(cli(["server", "ls"], env=env_for([s1.url], s1.token)), 0, "server ls on the leader")
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        check(lines[0].startswith("term ") and "LAST HEARD" in lines[1], "the table: %r" % lines)
        check(all(" ms ago" in l for l in lines[2:]), "every row says when it was heard: %r" % lines)
        check("known only to the leader" not in p.stdout, p.stdout)

        follower = servers[1]
        check("heardMsAgo" not in view(follower)["servers"][0], "a follower knows no last contact")
        p = expect_exit(cli(["server", "ls"], env=env_for([follower.url], s1.token)), 0, "server ls on a follower")
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        check(lines[0].startswith("term "), "term, commit and applied first: %r" % lines)
        check("known only to the leader" in lines[1] and "127.0.0.1:%d" % s1.port in lines[1],
              "a follower names the leader: %r" % lines)
    finally:
        for s in servers:
            s.kill()
