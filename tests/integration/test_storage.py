"""The store on a full disk (issue 10, item 7): the server's data directory on a
small filesystem the test makes (a tmpfs of 32 MiB, as root: the raft log keeps
three 4 MiB segments made ahead), filled up while
a simulated node runs a service. Writes are refused with a clear error, reads
keep answering and match what is on disk, nothing is half-applied, writes work
again once there is room, and a restart shows exactly what was acknowledged."""

import json
import os
import subprocess

from harness import Agent, Server, check, expect_status, scratch_dir, timeout, wait_until

SERVER_ARGS = ["--node-lost-after", "3s", "--heartbeat-interval", "500ms"]


class SmallDisk:
    def __init__(self, mib):
        self.path = scratch_dir("small-disk")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0700" % mib, "tmpfs", self.path],
                           capture_output=True, text=True)
        check(r.returncode == 0, "cannot mount a tmpfs (the test needs root): %s" % r.stderr.strip())
        self.filler = os.path.join(self.path, "filler")

    def fill(self):
        """Writes zeroes until the filesystem refuses; returns the bytes written."""
        written = 0
        with open(self.filler, "ab") as f:
            chunk = b"\0" * 65536
            while True:
                try:
                    n = os.write(f.fileno(), chunk)
                except OSError:
                    break
                if n <= 0:
                    break
                written += n
        return written

    def free(self):
        os.remove(self.filler)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        subprocess.run(["umount", "-l", self.path], capture_output=True)


def big_task_definition(family):
    # Larger than the WAL the server has written so far, so the commit must grow
    # it (SQLite reuses a WAL's space once checkpointed: a small write could fit).
    env = [{"name": "V%d" % i, "value": "x" * 1000} for i in range(400)]
    return {"family": family, "containerDefinitions": [{"name": "main", "image": "busybox", "memory": 16,
                                                        "cpu": 64, "environment": env}]}


def snapshot(s):
    """What the API shows: clusters, services (counts), tasks, task definitions."""
    out = {}
    out["clusters"] = sorted(c["clusterName"] for c in
                             expect_status(s.request("GET", "/v1/clusters"), 200, "clusters").json()["clusters"])
    out["tasks"] = sorted((t["taskArn"], t["desiredStatus"]) for t in
                          expect_status(s.request("GET", "/v1/tasks?maxResults=10000"), 200, "tasks").json()["tasks"])
    out["taskdefs"] = sorted(json.dumps(d, sort_keys=True) for d in expect_status(
        s.request("GET", "/v1/taskdefinitions?status=ALL"), 200, "taskdefs").json()["taskDefinitions"])
    svc = expect_status(s.request("GET", "/v1/services/web"), 200, "service").json()["service"]
    out["service"] = (svc["desiredCount"], svc["taskDefinition"])
    return out


@timeout(120)
def test_full_disk_refuses_writes_clearly_and_loses_nothing_acknowledged():
    with SmallDisk(32) as disk:
        data = os.path.join(disk.path, "data")
        with Server(data_dir=data, args=SERVER_ARGS) as s:
            token = expect_status(s.request("POST", "/v1/tokens", {"role": "agent"}), 201, "token").json()
            with Agent(s, 2, token["token"]["secret"], args=["--start-delay-ms", "20"]):
                wait_until(lambda: sum(n["agentConnected"] for n in expect_status(
                    s.request("GET", "/v1/nodes"), 200, "nodes").json()["containerInstances"]) == 2,
                    what="two connected nodes")
                small = {"family": "web", "containerDefinitions": [
                    {"name": "main", "image": "busybox", "memory": 16, "cpu": 64}]}
                expect_status(s.request("POST", "/v1/taskdefinitions", small), 201, "register web")
                expect_status(s.request("POST", "/v1/services", {"serviceName": "web", "taskDefinition": "web",
                                                                 "desiredCount": 3}), 201, "create web")
                wait_until(lambda: expect_status(s.request("GET", "/v1/services/web"), 200, "web")
                           .json()["service"]["runningCount"] == 3, what="3 running tasks")

                check(disk.fill() > 0, "nothing could be written to fill the disk")
                before = snapshot(s)
                r = s.request("POST", "/v1/taskdefinitions", big_task_definition("big"))
                check(r.status == 507, "a write on a full disk: %d %s" % (r.status, r.body[:300]))
                err = r.json()["error"]
                check(err["code"] == "StorageFull" and "could not be stored" in err["message"]
                      and "full" in err["message"], "the error says what happened: %r" % err)
                # Reads answer, and show nothing of the refused write.
                check(snapshot(s) == before, "state changed by a refused write")
                expect_status(s.request("GET", "/healthz"), 200, "healthz on a full disk")
                # The nodes stay connected and their tasks run: the failed commit
                # did not make the server forget its agents.
                wait_until(lambda: expect_status(s.request("GET", "/v1/services/web"), 200, "web")
                           .json()["service"]["runningCount"] == 3, what="3 running tasks after the refusal")
                for n in expect_status(s.request("GET", "/v1/nodes"), 200, "nodes").json()["containerInstances"]:
                    check(n["agentConnected"], "node %s lost its agent after a refused write" % n["nodeId"])

                disk.free()
                r = expect_status(s.request("POST", "/v1/taskdefinitions", big_task_definition("big")), 201,
                                  "the same write once there is room")
                check(r.json()["taskDefinition"]["revision"] == 1, "revision %r" % r.json())
                acknowledged = snapshot(s)
        # A restart shows exactly what was acknowledged.
        with Server(data_dir=data, args=SERVER_ARGS) as s2:
            after = snapshot(s2)
            check(after["clusters"] == acknowledged["clusters"] and after["taskdefs"] == acknowledged["taskdefs"]
                  and after["service"] == acknowledged["service"],
                  "after a restart: %r\nacknowledged: %r" % (after, acknowledged))
            check(sorted(a for a, _ in after["tasks"]) == sorted(a for a, _ in acknowledged["tasks"]),
                  "tasks after restart differ")
