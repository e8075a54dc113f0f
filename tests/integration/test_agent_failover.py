"""An agent follows the cluster's leader: given only a follower's URL it is sent
to the leader (307) and registers there, learning every server; when the leader
is killed it finds the new one; a server that joins later reaches it on its
stream; restarted with only a dead server's URL, it finds
the cluster through the servers it kept in its state directory.

The real agent (`berth agent`, not --simulate) on this host's Docker engine: the
leader-following is its code. A service's two containers run throughout: the
leader's death and the agent's move replace or restart none of them."""

import os
import types

import dockerd
from harness import DockerAgent, Server, check, expect_status, scratch_dir, timeout, wait_until
from test_cluster import caught_up, join, leader_of, server_token, view
from test_docker import box, containers, create_service, register, remove_node_containers, running, wait_running


def agent_token(leader):
    r = expect_status(leader.request("POST", "/v1/tokens", {"role": "agent"}), 201, "an agent token")
    return r.json()["token"]["secret"]


def connected(s, node):
    try:
        r = s.request("GET", "/v1/nodes/" + node)
    except Exception:
        return False
    return r.status == 200 and r.json()["containerInstance"]["agentConnected"]


def registered_on(agent, server):
    """Whether the agent's log has its registration on `server`."""
    return any("msg=registered" in l and "server=%s " % server.url in l + " " for l in agent.logs().splitlines())


def urls(servers):
    """What DockerAgent passes as --server: the URLs of `servers`, comma-separated."""
    return types.SimpleNamespace(url=",".join(s.url for s in servers))


@timeout(240)
def test_agent_follows_the_leader_through_a_follower_a_kill_and_a_restart():
    dockerd.test_image()
    s1 = Server()
    tok = server_token(s1)
    s2 = join(s1, tok)
    s3 = join(s1, tok)
    wait_until(lambda: caught_up(s1, 3), wait=30, what="three servers caught up")
    agent = DockerAgent(urls([s2]), agent_token(s1), args=["--docker-certs-dir", scratch_dir("certs.d")])
    extra = []
    node = None
    try:
        # Sent by the follower to the leader, where the node registers and streams.
        node = agent.node_id(wait=60)
        wait_until(lambda: connected(s1, node), wait=60, what="the node connected on the leader")
        check("following the leader" in agent.logs(), "the agent says it followed the 307:\n" + agent.logs()[-3000:])
        kept = os.path.join(agent.state_dir, "servers")
        wait_until(lambda: os.path.exists(kept), what="the agent's list of servers")
        with open(kept) as f:
            listed = f.read().split()
        check(sorted(listed) == sorted(s.url for s in (s1, s2, s3)), "the servers kept: %r" % listed)
        register(s1, "ha-box", [box("main", "sleep 3600", memory=16, stopTimeout=2)])
        create_service(s1, "ha-box", "ha-box", 2)
        before = sorted(t["taskId"] for t in wait_running(s1, 2, "the service's 2 tasks running", service="ha-box"))
        started = {c["Id"]: c["State"]["StartedAt"] for c in containers(node)}
        check(len(started) == 2, "two containers: %r" % started)

        def same_containers(when):
            now = {c["Id"]: c["State"]["StartedAt"] for c in containers(node)}
            check(now == started, "%s, the containers are not those started before: %r, were %r" % (when, now, started))

        # The leader dies: the agent goes to the one elected after it.
        s1.kill()
        new = wait_until(lambda: leader_of([s2, s3]), wait=60, what="a new leader")
        wait_until(lambda: connected(new, node), wait=60, what="the node connected on the new leader")
        check(registered_on(agent, new),
              "the agent says it registered on the new leader %s:\n%s" % (new.url, agent.logs()[-3000:]))
        check(len(new.request("GET", "/v1/nodes").json()["containerInstances"]) == 1, "one node only")
        # The workload ran on through it all: the same tasks, the same containers.
        wait_until(lambda: sorted(t["taskId"] for t in running(new, service="ha-box")) == before, wait=30,
                   what="the new leader sees the same two tasks running")
        same_containers("after the leader's death")
        # Fencing: the agent keeps the highest leader term its desired-state lines
        # carried, the new leader's, and would refuse the old leader's from now on.
        term_file = os.path.join(agent.state_dir, "term")
        wait_until(lambda: os.path.exists(term_file) and int(open(term_file).read()) == view(new)["term"],
                   what="the agent keeps the new leader's term")
        # A server that joins later reaches the agent on its stream (a ping line at the latest).
        s4 = join(new, tok)
        extra.append(s4)
        wait_until(lambda: s4.url in open(kept).read().split(), wait=60, what="the new server in the agent's list")

        # Restarted with only the dead server's URL, it finds the cluster by the list it kept.
        agent.kill()
        wait_until(lambda: not connected(new, node), what="the node disconnected when its agent was killed")
        agent.server = urls([s1])
        agent._start()  # a new log file
        wait_until(lambda: connected(new, node), wait=60, what="the restarted agent connected on the leader")
        check(agent.node_id() == node, "the same node after the restart")
        check(registered_on(agent, new), "registered on the leader:\n" + agent.logs()[-3000:])
        wait_until(lambda: sorted(t["taskId"] for t in running(new, service="ha-box")) == before, wait=30,
                   what="the same two tasks running after the agent's restart")
        same_containers("after the agent's restart")
    finally:
        agent.kill()
        for s in [s1, s2, s3] + extra:
            s.kill()
        if node:
            remove_node_containers(node)
