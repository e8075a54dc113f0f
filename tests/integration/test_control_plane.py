"""The control plane end to end: a real server, `berth agent --simulate` processes
playing the nodes over the agent protocol, tasks, services at scale, node loss,
draining, rolling updates and deletion.

Waits are deadlines for a slow machine, never claims about speed.
"""

import http.client
import json
import threading
import time

from harness import Agent, Server, check, expect_error, expect_status, timeout, wait_until

SERVER_ARGS = ["--node-lost-after", "2s", "--heartbeat-interval", "500ms"]
AGENT_ARGS = ["--start-delay-ms", "50"]
LONG = 60.0  # deadline for things that involve a thousand tasks


def agent_token(s):
    r = expect_status(s.request("POST", "/v1/tokens", {"role": "agent"}), 201, "create an agent token")
    return r.json()["token"]["secret"]


def register_task_definition(s, family, cpu=128, memory=64):
    body = {"family": family,
            "containerDefinitions": [{"name": "main", "image": "busybox:latest", "cpu": cpu, "memory": memory}]}
    r = expect_status(s.request("POST", "/v1/taskdefinitions", body), 201, "register " + family)
    return r.json()["taskDefinition"]["revision"]


def nodes(s):
    return expect_status(s.request("GET", "/v1/nodes"), 200, "list nodes").json()["containerInstances"]


def tasks(s, **query):
    """Every task matching `query` (the /v1/tasks filters), following nextToken."""
    out, token = [], None
    while True:
        q = dict(query, maxResults="10000")
        if token:
            q["nextToken"] = token
        path = "/v1/tasks?" + "&".join("%s=%s" % kv for kv in sorted(q.items()))
        doc = expect_status(s.request("GET", path), 200, "list tasks").json()
        out += doc["tasks"]
        token = doc.get("nextToken")
        if not token:
            return out


def service(s, name):
    return expect_status(s.request("GET", "/v1/services/" + name), 200, "describe " + name).json()["service"]


def steady_events(svc):
    return sum(1 for e in svc["events"] if "has reached a steady state" in e["message"])


def connected_nodes(s, prefix=""):
    return [n for n in nodes(s) if n["nodeId"].startswith(prefix) and n["agentConnected"]]


def wait_nodes(s, count, prefix="", wait=LONG):
    wait_until(lambda: len(connected_nodes(s, prefix)) == count, wait=wait, step=0.2,
               what="%d connected nodes%s" % (count, " named " + prefix + "*" if prefix else ""))


def at_count(s, name, count, steady_seen=1):
    """The service runs exactly `count` tasks, nothing pending, one COMPLETED
    deployment, and has said it is steady at least `steady_seen` times."""
    svc = service(s, name)
    deps = svc["deployments"]
    return (svc["runningCount"] == count and svc["pendingCount"] == 0 and len(deps) == 1
            and deps[0]["rolloutState"] == "COMPLETED" and steady_events(svc) >= steady_seen)


def live(ts):
    return [t for t in ts if t["lastStatus"] != "STOPPED"]


@timeout(40)
def test_control_plane_nodes_register_and_tasks_run():
    with Server(args=SERVER_ARGS) as s:
        token = agent_token(s)
        with Agent(s, 3, token, id_prefix="n", args=AGENT_ARGS):
            wait_nodes(s, 3)
            got = sorted(n["nodeId"] for n in nodes(s))
            check(got == ["n-00000", "n-00001", "n-00002"], "node ids: %r" % got)
            for n in nodes(s):
                check(n["status"] == "ACTIVE", "node %s is %s" % (n["nodeId"], n["status"]))
                check("lastHeartbeatAt" in n, "node %s has no heartbeat" % n["nodeId"])

            # An agent token may speak the agent protocol only.
            r = s.request("GET", "/v1/nodes", token=token)
            expect_error(r, 403, "Forbidden", "agent token on /v1/nodes")

            register_task_definition(s, "web")
            r = expect_status(s.request("POST", "/v1/tasks", {"taskDefinition": "web", "count": 6}), 200, "run 6")
            doc = r.json()
            check(len(doc["tasks"]) == 6 and doc["failures"] == [], "run answer: %r" % doc)
            ids = {t["taskId"] for t in doc["tasks"]}
            wait_until(lambda: all(t["lastStatus"] == "RUNNING" for t in tasks(s, family="web")) and
                       len(tasks(s, family="web")) == 6, wait=30, step=0.1, what="6 tasks RUNNING")
            check({t["taskId"] for t in tasks(s, family="web")} == ids, "task ids changed")
            by_node = {t["nodeId"] for t in tasks(s, family="web")}
            check(by_node <= {"n-00000", "n-00001", "n-00002"}, "tasks on unknown nodes: %r" % by_node)
            running = sum(n["runningTasksCount"] for n in nodes(s))
            check(running == 6, "nodes' runningTasksCount add up to %d" % running)

            # A family of 255 characters runs with its default group ("family:" + it);
            # a group given must still be 1-255 characters.
            long_family = "f" * 255
            register_task_definition(s, long_family, cpu=1, memory=8)
            r = expect_status(s.request("POST", "/v1/tasks", {"taskDefinition": long_family}), 200, "long family")
            long_task = r.json()["tasks"][0]
            check(long_task["group"] == "family:" + long_family, "default group: %r" % long_task)
            r = s.request("POST", "/v1/tasks", {"taskDefinition": long_family, "group": "g" * 256})
            expect_error(r, 400, "InvalidParameter", "a group of 256 characters")
            expect_status(s.request("POST", "/v1/tasks/%s/stop" % long_task["taskId"], {"reason": "test"}), 200,
                          "stop the long family's task")

            # Stopping one: the agent is told, stops it, and reports it.
            victim = sorted(ids)[0]
            expect_status(s.request("POST", "/v1/tasks/%s/stop" % victim, {"reason": "done with it"}), 200, "stop")

            def stopped():
                t = expect_status(s.request("GET", "/v1/tasks/" + victim), 200).json()["task"]
                return t if t["lastStatus"] == "STOPPED" else None

            t = wait_until(stopped, wait=30, step=0.1, what="the stopped task to be STOPPED")
            check(t["stopCode"] == "UserInitiated", "stopCode %r" % t.get("stopCode"))
            check(t["stoppedReason"] == "done with it", "stoppedReason %r" % t.get("stoppedReason"))


@timeout(85)
def test_control_plane_thousand_tasks_node_loss_and_drain():
    with Server(args=SERVER_ARGS) as s:
        token = agent_token(s)
        with Agent(s, 95, token, id_prefix="a", args=AGENT_ARGS) as a, \
                Agent(s, 5, token, id_prefix="b", args=AGENT_ARGS) as b:
            wait_nodes(s, 100)
            register_task_definition(s, "big")
            r = s.request("POST", "/v1/services", {"serviceName": "big", "taskDefinition": "big", "desiredCount": 1000})
            expect_status(r, 201, "create the service")
            wait_until(lambda: at_count(s, "big", 1000), wait=LONG, step=0.5, what="1000 tasks RUNNING and steady")
            all_tasks = tasks(s, service="big")
            check(len(all_tasks) == 1000, "%d tasks for 1000 desired" % len(all_tasks))
            check(all(t["lastStatus"] == "RUNNING" for t in all_tasks), "not every task is RUNNING")
            per_node = {}
            for t in all_tasks:
                per_node[t["nodeId"]] = per_node.get(t["nodeId"], 0) + 1
            check(len(per_node) == 100, "tasks on %d nodes of 100" % len(per_node))

            # Losing 5 nodes at once: their tasks stop with NodeLost and are replaced.
            on_b = {t["taskId"] for t in all_tasks if t["nodeId"].startswith("b-")}
            check(on_b, "no tasks on the b nodes")
            b.kill()
            check(a.alive(), "the other simulator died; log:\n" + a.logs()[-2000:])

            def b_lost():
                ts = [t for t in tasks(s, service="big") if t["taskId"] in on_b]
                return len(ts) == len(on_b) and all(t["lastStatus"] == "STOPPED" for t in ts) and ts

            lost = wait_until(b_lost, wait=30, step=0.3, what="the b nodes' tasks STOPPED")
            bad = [t for t in lost if t.get("stopCode") != "NodeLost"]
            check(not bad, "%d lost tasks without stopCode NodeLost, e.g. %r" % (len(bad), bad[:1]))
            wait_until(lambda: at_count(s, "big", 1000, steady_seen=2), wait=LONG, step=0.5,
                       what="1000 tasks RUNNING again")
            now = live(tasks(s, service="big"))
            check(len(now) == 1000, "%d live tasks" % len(now))
            check(not [t for t in now if t["nodeId"].startswith("b-")], "live tasks on lost nodes")
            check(not connected_nodes(s, "b-"), "b nodes still shown connected")

            # Draining one node: its tasks move elsewhere, none remain on it.
            drained = "a-00007"
            check(live(tasks(s, node=drained)), "no tasks on %s before draining" % drained)
            r = expect_status(s.request("POST", "/v1/nodes/%s/drain" % drained), 200, "drain")
            check(r.json()["containerInstance"]["status"] == "DRAINING", "drain answer: %r" % r.body[:300])
            wait_until(lambda: not live(tasks(s, node=drained)) and at_count(s, "big", 1000, steady_seen=3),
                       wait=LONG, step=0.5, what="the drained node empty and 1000 tasks RUNNING")
            check(len(live(tasks(s, service="big"))) == 1000, "live task count after draining")

            # A rolling update of all 1000 (minimumHealthyPercent 100, maximumPercent 200).
            rev2 = register_task_definition(s, "big", cpu=64)
            expect_status(s.request("PATCH", "/v1/services/big", {"taskDefinition": "big:%d" % rev2}), 200, "update")
            peak = [0]

            def rolled():
                ts = live(tasks(s, service="big"))
                peak[0] = max(peak[0], len(ts))
                return len(ts) == 1000 and all(t["taskDefinitionArn"].endswith("/big:%d" % rev2) for t in ts) and \
                    at_count(s, "big", 1000, steady_seen=4)

            wait_until(rolled, wait=LONG, step=0.5, what="the rolling update of 1000 tasks to complete")
            check(peak[0] <= 2000, "%d live tasks seen at once; maximumPercent 200 allows 2000" % peak[0])
            check(not live(tasks(s, node=drained)), "tasks placed on the drained node")
            check(a.alive(), "the simulator died; log:\n" + a.logs()[-2000:])


@timeout(60)
def test_control_plane_rolling_update_and_force_delete():
    with Server(args=SERVER_ARGS) as s:
        token = agent_token(s)
        with Agent(s, 10, token, id_prefix="r", args=AGENT_ARGS):
            wait_nodes(s, 10)
            rev1 = register_task_definition(s, "web")
            body = {"serviceName": "web", "taskDefinition": "web:%d" % rev1, "desiredCount": 50,
                    "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 150}}
            expect_status(s.request("POST", "/v1/services", body), 201, "create the service")
            wait_until(lambda: at_count(s, "web", 50), wait=30, step=0.2, what="50 tasks RUNNING")
            first = service(s, "web")["deployments"][0]["id"]

            rev2 = register_task_definition(s, "web", cpu=256)
            r = s.request("PATCH", "/v1/services/web", {"taskDefinition": "web:%d" % rev2})
            deps = expect_status(r, 200, "update").json()["service"]["deployments"]
            check(len(deps) == 2 and deps[0]["status"] == "PRIMARY" and deps[0]["rolloutState"] == "IN_PROGRESS",
                  "deployments right after the update: %r" % deps)
            peak = [0]

            def rolled():
                ts = live(tasks(s, service="web"))
                peak[0] = max(peak[0], len(ts))
                return at_count(s, "web", 50, steady_seen=2) and \
                    all(t["taskDefinitionArn"].endswith("/web:%d" % rev2) for t in ts) and len(ts) == 50

            wait_until(rolled, wait=30, step=0.1, what="the rolling update to complete")
            svc = service(s, "web")
            check(svc["deployments"][0]["id"] != first, "no new deployment")
            check(svc["taskDefinition"].endswith("/web:%d" % rev2), "taskDefinition %r" % svc["taskDefinition"])
            check(peak[0] <= 75, "%d live tasks seen at once; maximumPercent 150 allows 75" % peak[0])

            # Deleting a service that still runs tasks needs force.
            expect_error(s.request("DELETE", "/v1/services/web"), 409, "ServiceNotScaledDown", "delete without force")
            r = expect_status(s.request("DELETE", "/v1/services/web?force=true"), 200, "delete with force")
            check(r.json()["service"]["status"] == "DRAINING", "status after delete: %r" % r.body[:300])
            wait_until(lambda: s.request("GET", "/v1/services/web").status == 404, wait=30, step=0.1,
                       what="the service to be removed")
            left = live(tasks(s, service="web"))
            check(not left, "%d tasks of the deleted service still live" % len(left))
            time.sleep(0.1)
            clusters = expect_status(s.request("GET", "/v1/clusters/default"), 200).json()["cluster"]
            check(clusters["activeServicesCount"] == 0, "activeServicesCount %r" % clusters["activeServicesCount"])


class DesiredStream:
    """A node's desired-state stream read line by line, as an agent reads it."""

    def __init__(self, s, node, token, changes):
        self.conn = s.http_connection(15)
        self.conn.request("GET", "/v1/agent/nodes/%s/desired%s" % (node, "?changes=1" if changes else ""),
                          headers={"Authorization": "Bearer " + token})
        self.resp = self.conn.getresponse()
        check(self.resp.status == 200, "desired stream: HTTP %d" % self.resp.status)

    def line(self):
        while True:
            raw = self.resp.readline()
            check(raw, "the desired stream ended")
            msg = json.loads(raw)
            if msg["type"] != "ping":
                return msg

    def close(self):
        self.conn.close()


@timeout(60)
def test_control_plane_changes_lines_carry_only_what_changed():
    with Server(args=["--heartbeat-interval", "2s"]) as s:
        token = agent_token(s)
        node = "delta-1"
        expect_status(s.request("POST", "/v1/agent/register", {"nodeId": node, "cpu": 4096, "memory": 8192},
                                token=token), 200, "register")
        beating = threading.Event()

        def heartbeat():  # the node must report to keep its stream
            while not beating.wait(0.5):
                s.request("POST", "/v1/agent/nodes/%s/report" % node, {"tasks": []}, token=token)

        threading.Thread(target=heartbeat, daemon=True).start()
        try:
            register_task_definition(s, "delta")
            st = DesiredStream(s, node, token, changes=True)
            first = st.line()
            check(first["type"] == "desired" and first["tasks"] == [], "first line: %r" % first)

            ran = expect_status(s.request("POST", "/v1/tasks", {"taskDefinition": "delta", "count": 2}), 200).json()
            ids = [t["taskId"] for t in ran["tasks"]]
            got, defs_seen, version = {}, [], first["version"]
            while len(got) < 2:
                m = st.line()
                check(m["type"] == "changes" and m["since"] == version, "line after %d: %r" % (version, m))
                version = m["version"]
                got.update({t["taskId"]: t for t in m["tasks"]})
                defs_seen += list(m["taskDefinitions"])
            check(sorted(got) == sorted(ids), "changes carried %r, ran %r" % (sorted(got), sorted(ids)))
            check(defs_seen == ["delta:1"], "the task definition is carried once per stream: %r" % defs_seen)

            # A third task: only it, and no task definition (this stream has it).
            third = expect_status(s.request("POST", "/v1/tasks", {"taskDefinition": "delta", "count": 1}),
                                  200).json()["tasks"][0]["taskId"]
            m = st.line()
            check([t["taskId"] for t in m["tasks"]] == [third] and m["taskDefinitions"] == {} and
                  m["removed"] == [] and m["since"] == version, "line for the third task: %r" % m)
            version = m["version"]

            # Stopping one: it comes again, to be stopped; once reported STOPPED it is removed.
            expect_status(s.request("POST", "/v1/tasks/%s/stop" % ids[0], {"reason": "test"}), 200, "stop")
            m = st.line()
            check([(t["taskId"], t["desiredStatus"]) for t in m["tasks"]] == [(ids[0], "STOPPED")],
                  "line for the stop: %r" % m)
            expect_status(s.request("POST", "/v1/agent/nodes/%s/report" % node,
                                    {"tasks": [{"taskId": ids[0], "lastStatus": "STOPPED"}]}, token=token), 200)
            m = st.line()
            check(m["tasks"] == [] and m["removed"] == [ids[0]], "line after the STOPPED report: %r" % m)
            st.close()

            # A stream that did not ask for changes gets whole sets, definitions included.
            full = DesiredStream(s, node, token, changes=False)
            m = full.line()
            check(m["type"] == "desired" and sorted(t["taskId"] for t in m["tasks"]) == sorted([ids[1], third])
                  and list(m["taskDefinitions"]) == ["delta:1"], "whole set: %r" % m)
            expect_status(s.request("POST", "/v1/tasks/%s/stop" % third, {"reason": "test"}), 200, "stop")
            m = full.line()
            check(m["type"] == "desired" and len(m["tasks"]) == 2 and "removed" not in m, "whole set again: %r" % m)
            full.close()
        finally:
            beating.set()


@timeout(90)
def test_control_plane_heartbeat_interval_grows_with_the_number_of_agents():
    # At most 1 heartbeat a second over all agents: 4 connected agents are told
    # to report every 4 s (not the 1 s minimum), and a silent one keeps its stream
    # for three of the intervals it was told.
    with Server(args=["--heartbeat-interval", "1s", "--max-heartbeats-per-second", "1",
                      "--node-lost-after", "60s"]) as s:
        token = agent_token(s)
        names = ["beat-%d" % i for i in range(4)]

        def report(node):
            r = expect_status(s.request("POST", "/v1/agent/nodes/%s/report" % node, {"tasks": []}, token=token),
                              200, "report of " + node)
            return r.json()["heartbeatIntervalMs"]

        streams = []
        for i, node in enumerate(names):
            r = expect_status(s.request("POST", "/v1/agent/register", {"nodeId": node, "cpu": 1024, "memory": 1024},
                                        token=token), 200, "register " + node)
            check(r.json()["heartbeatIntervalMs"] == max(1000, 1000 * i),
                  "registration with %d agents connected: %r" % (i, r.json()))
            streams.append(DesiredStream(s, node, token, changes=True))
            streams[-1].line()
        wait_nodes(s, 4, prefix="beat-", wait=10)
        check(report(names[0]) == 4000, "4 agents at 1 heartbeat/s: report every 4 s")

        beating = threading.Event()
        told = []

        def heartbeat():  # the other three keep reporting
            while not beating.wait(0.5):
                for node in names[1:]:
                    told.append(report(node))

        threading.Thread(target=heartbeat, daemon=True).start()
        try:
            # Twice the old 3 × 1 s deadline: beat-0 was told 4 s, so it is still here.
            time.sleep(6.5)
            check(any(n["nodeId"] == names[0] for n in connected_nodes(s, "beat-")),
                  "a node told to report every 4 s lost its stream after 6.5 s of silence")
            wait_until(lambda: len(connected_nodes(s, "beat-")) == 3, wait=30, step=0.25,
                       what="the silent node's stream closed after three told intervals")
            wait_until(lambda: told and told[-1] == 3000, wait=10, step=0.25,
                       what="three agents told to report every 3 s")
            check(set(told) <= {4000, 3000}, "intervals told: %r" % sorted(set(told)))
        finally:
            beating.set()
            for st in streams:
                st.close()
